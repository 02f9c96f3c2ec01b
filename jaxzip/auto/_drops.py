"""An accuracy drop between two models measured on the same examples, and its standard
error: unpaired (from the two accuracies) or paired (from each example's result)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxzip.auto._common import check_score

__all__ = [
    "PAIRED_SE_METHOD",
    "SE_METHOD",
    "discordant",
    "drop_se",
    "drop_summary",
    "paired_drop_se",
    "read_score",
    "result_drops",
]

SE_METHOD = (
    "unpaired binomial standard error of the accuracy difference on the same n examples, "
    "sqrt(a0 (1 - a0) / n + a1 (1 - a1) / n) (a0: baseline, a1: candidate); conservative, "
    "since both are measured on the same examples and their errors are positively correlated"
)


PAIRED_SE_METHOD = (
    "paired standard error of the accuracy difference on the same n examples, from the "
    "discordant pairs: b examples the baseline gets right and the candidate wrong, c the "
    "reverse; drop = (b - c) / n, se = sqrt((b + c - (b - c)^2 / n) / (n - 1)) / sqrt(n)"
)


def drop_se(baseline: float, accuracy: float, n: int) -> float:
    """Standard error of ``baseline - accuracy``, both measured on the same ``n`` examples.

    See :data:`SE_METHOD`.

    Example:
      >>> round(drop_se(0.99, 0.98, 10_000), 5)  # sqrt(.99 * .01 / 1e4 + .98 * .02 / 1e4)
      0.00172
    """
    if n < 1:
        raise ValueError(f"drop_se: n must be >= 1, got {n!r}")
    var = baseline * (1 - baseline) / n + accuracy * (1 - accuracy) / n
    return float(math.sqrt(max(var, 0.0)))


def discordant(baseline_correct: Any, correct: Any) -> tuple[int, int]:
    """``(b, c)``: examples the baseline gets right and the candidate wrong, and the reverse.

    Example:
      >>> discordant([True, True, False, True], [True, False, True, False])
      (2, 1)

    Raises:
      ValueError: the two are not 1-D arrays of the same length.
    """
    base, cand = np.asarray(baseline_correct, bool), np.asarray(correct, bool)
    if base.ndim != 1 or base.shape != cand.shape:
        raise ValueError(
            f"discordant: expected two per-example correctness vectors of one length, got "
            f"shapes {base.shape} and {cand.shape}"
        )
    return int(np.sum(base & ~cand)), int(np.sum(~base & cand))


def paired_drop_se(b: int, c: int, n: int) -> float:
    """Standard error of an accuracy drop measured on the same ``n`` examples, from the
    discordant pairs ``b`` (baseline right, candidate wrong) and ``c`` (the reverse).

    The drop is the mean of per-example differences in {-1, 0, 1}; its standard error is
    their sample standard deviation over ``sqrt(n)`` (:data:`PAIRED_SE_METHOD`). Two models
    that agree on most examples have a far smaller one than :func:`jaxzip.auto.drop_se`,
    which treats the two accuracies as independent.

    Example:
      >>> round(paired_drop_se(30, 10, 6000), 6)  # 40 of 6,000 examples disagree
      0.001053

      (Treated as independent, the same two accuracies, 99.5% and 99.17%, would give
      0.001444.)
    """
    if n < 2 or b < 0 or c < 0 or b + c > n:
        raise ValueError(f"paired_drop_se: expected 0 <= b + c <= n and n >= 2, got {b}, {c}, {n}")
    var = (b + c - (b - c) ** 2 / n) / (n - 1)
    return float(math.sqrt(max(var, 0.0) / n))


def read_score(value: Any, n: int | None, what: str) -> tuple[float, np.ndarray | None]:
    """``(accuracy, correct)`` of what an ``eval_fn`` or ``confirm_fn`` returned: an accuracy
    (``correct`` None), or each example's correctness (a 1-D bool array, of ``n`` values
    when ``n`` is given; its mean is the accuracy).

    Raises:
      ValueError: neither (the message names ``what``), or a vector of another length.
    """
    arr = np.asarray(value) if isinstance(value, np.ndarray | jax.Array) else None
    if arr is None or arr.ndim == 0:
        return check_score(value, what), None
    if arr.ndim != 1 or arr.dtype != np.bool_ or (n is not None and arr.size != n):
        count = "each example's" if n is None else f"each of the {n} examples'"
        raise ValueError(
            f"{what}: expected an accuracy or a 1-D bool array of {count} correctness, got "
            f"shape {arr.shape}, dtype {arr.dtype}"
        )
    return float(arr.mean()), arr


def drop_summary(
    baseline: float, accuracy: float, n: int, pairs: Sequence[int] | None = None
) -> dict[str, Any]:
    """A drop on ``n`` examples as ``jaxzip auto``'s ``auto.json`` reports it: in points, with
    its standard error (:func:`jaxzip.auto.drop_se`) and, given the discordant ``pairs``
    ``(b, c)`` of each example's result (:func:`discordant`), the paired one
    (:func:`paired_drop_se`).

    Example:
      >>> d = drop_summary(0.995, 0.9925, 2000, (7, 2))
      >>> round(d["drop_pp"], 3), round(d["se_pp"], 3), round(d["paired_se_pp"], 3)
      (0.25, 0.249, 0.15)
    """
    out = {
        "baseline_accuracy": baseline,
        "accuracy": accuracy,
        "drop_pp": 100 * (baseline - accuracy),
        "se_pp": 100 * drop_se(baseline, accuracy, n),
        "n": n,
    }
    if pairs is not None:
        out["discordant"] = list(pairs)
        out["paired_se_pp"] = 100 * paired_drop_se(*pairs, n)
    return out


def result_drops(result: Any, *, val_n: int, test: Sequence[Any]) -> dict[str, Any]:
    """The chosen candidate's drop on each split, as ``jaxzip auto``'s ``auto.json`` reports
    them (each a :func:`drop_summary`).

    Args:
      result: a :class:`jaxzip.auto.SearchResult`.
      val_n: the ranking split's size.
      test: each test example's correctness for the baseline and for the chosen candidate
        (two 1-D bool arrays, e.g. ``jaxzip.train.evaluate(..., per_example=True)["correct"]``).

    Returns:
      ``{"validation", "confirmation", "test", "se_method", "paired_se_method"}``;
      ``"confirmation"`` is None when the chosen candidate was not confirmed (no
      ``confirm_fn``). The validation and confirmation drops have a paired standard
      error where the search journaled the candidate's discordant pairs (its ``eval_fn``
      / ``confirm_fn`` gave each example's result); the test drop always has one.

    Example:
      On 4 test examples the baseline gets 3 right, the candidate 2 (one lost):

      >>> from types import SimpleNamespace
      >>> r = SimpleNamespace(baseline=0.9, confirmation=None,
      ...                     best={"key": "k", "accuracy": 0.85})
      >>> d = result_drops(r, val_n=100, test=[[1, 1, 1, 0], [1, 1, 0, 0]])
      >>> round(d["test"]["drop_pp"], 6), d["test"]["discordant"], d["confirmation"]
      (25.0, [1, 0], None)
      >>> round(d["validation"]["drop_pp"], 6), "paired_se_pp" in d["validation"]
      (5.0, False)
    """
    base_hits, best_hits = (np.asarray(h, bool) for h in test)
    best = result.best
    c = result.confirmation
    tried = [a for a in (c or {}).get("attempts", []) if a["key"] == best["key"]]
    conf = None
    if tried:
        conf = drop_summary(
            c["baseline"], tried[0]["accuracy"], int(c["n"]), tried[0].get("discordant")
        )
    return {
        "se_method": SE_METHOD,
        "paired_se_method": PAIRED_SE_METHOD,
        "validation": drop_summary(
            result.baseline, best["accuracy"], val_n, best.get("discordant")
        ),
        "confirmation": conf,
        "test": drop_summary(
            float(base_hits.mean()),
            float(best_hits.mean()),
            base_hits.size,
            discordant(base_hits, best_hits),
        ),
    }
