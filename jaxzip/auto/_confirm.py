"""The honest bound: the chosen candidate is confirmed on a split the search never ranked with."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxzip._errors import JaxzipError
from jaxzip.auto._common import check_count, check_number, check_score
from jaxzip.auto._drops import PAIRED_SE_METHOD, SE_METHOD, drop_se, paired_drop_se
from jaxzip.auto._trials import Trials

__all__ = [
    "BudgetTooSmall",
    "NoisyBoundWarning",
    "check_confirm_size",
    "check_resolution",
    "confirm",
    "min_confirm_size",
]


class BudgetTooSmall(JaxzipError, ValueError):
    """The time budget ended before the baseline was measured on the confirmation split."""


class NoisyBoundWarning(UserWarning):
    """The bound is under one standard error of a drop on the ranking split: noise decides."""


def check_resolution(baseline: float, max_drop: float, n: int) -> float:
    """The standard error of a drop right at the bound on ``n`` ranking examples; warns if the
    bound is smaller (:class:`NoisyBoundWarning`).

    Near such a bound, which candidates are feasible on the ranking split is decided by
    which examples they happen to get right; the result is still confirmed on the other
    split, but the search cannot tell its candidates apart. More validation examples do.

    Example:
      >>> round(check_resolution(0.99, 0.006, 3000), 4)  # 0.6 points, SE 0.29: resolved
      0.0029
      >>> import warnings
      >>> with warnings.catch_warnings(record=True) as w:
      ...     warnings.simplefilter("always")
      ...     _ = check_resolution(0.915, 0.0034, 6000)
      >>> print(w[0].message)
      max_drop 0.0034 (0.34 points) is under one standard error (0.0051, 0.51 points) of a drop at the bound measured on the 6000 ranking examples: near the bound, which candidates are feasible is decided by noise (more validation examples resolve it)

    Raises:
      ValueError: ``baseline`` not a finite number, ``max_drop`` not a finite number
        >= 0, or ``n`` not an int >= 1 (the message names the argument).
    """
    baseline = check_score(baseline, "check_resolution: baseline")
    max_drop = check_number("check_resolution: max_drop", max_drop, positive=False)
    n = check_count("check_resolution: n", n, optional=False)
    se = drop_se(baseline, max(baseline - max_drop, 0.0), n)
    if max_drop < se:
        warnings.warn(
            f"max_drop {max_drop:g} ({100 * max_drop:.3g} points) is under one standard error "
            f"({se:.2g}, {100 * se:.2g} points) of a drop at the bound measured on the {n} "
            "ranking examples: near the bound, which candidates are feasible is decided by "
            "noise (more validation examples resolve it)",
            NoisyBoundWarning,
            stacklevel=3,
        )
    return se


def min_confirm_size(max_drop: float) -> int:
    """The fewest examples on which the bound ``max_drop`` allows at least one more error.

    One error on ``n`` examples moves accuracy by ``1 / n``; the bound is
    resolved when ``n * max_drop >= 1``, i.e. ``n >= ceil(1 / max_drop)`` (with
    ``max_drop = 0`` any non-empty split resolves "no more errors than the baseline").

    Example:
      >>> min_confirm_size(0.001), min_confirm_size(0.006), min_confirm_size(0.0)
      (1000, 167, 1)
    """
    if max_drop <= 0:
        return 1
    return max(1, math.ceil(1.0 / max_drop - 1e-9))


def check_confirm_size(n: Any, max_drop: float, *, what: str = "confirm_n") -> int:
    """Returns ``n`` if the confirmation split can resolve ``max_drop``; else a ValueError.

    The message names the split's size, the bound, what one error costs and the
    size needed (:func:`min_confirm_size`).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what}: expected the confirmation split's size, an int >= 1, got {n!r}")
    need = min_confirm_size(max_drop)
    if n < need:
        raise ValueError(
            f"{what}: a confirmation split of {int(n)} examples cannot resolve max_drop "
            f"{max_drop:g}: one error there moves accuracy by 1/{int(n)} = {1 / n:.3g} > "
            f"{max_drop:g}; it needs at least {need} examples (n * max_drop >= 1)"
        )
    return int(n)


def confirm(
    trials: Trials,
    ranked: Sequence[dict[str, Any]],
    *,
    max_confirmations: int,
    confirm_n: int | None,
    val_n: int | None,
    confidence: float = 0.0,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Confirms ``ranked`` candidates (smallest first) until one passes; at most ``max_confirmations``.

    A candidate passes iff its confirmation drop (the baseline's confirmation
    accuracy minus its own) plus ``confidence`` standard errors of that drop is
    at most ``trials.max_drop``: with ``confidence = 0``, the validation rule on
    the other split; with ``confidence = 1.645``, the bound holds at the one-sided
    95% upper confidence limit of the drop. The standard error is the paired one
    (:func:`paired_drop_se`) when ``confirm_fn`` gave each example's correctness,
    else :func:`drop_se`. The first attempt goes to the first candidate. After a failure:

    - candidates no more accurate on validation than one that failed are skipped
      (they are no safer);
    - of the others, the next attempt goes to the first that is more accurate on
      validation than each failed one by at least the points that one missed the
      bound by on confirmation (a candidate with less margin would likely miss it
      too, so an attempt is not spent on it); only if there is none, to the first
      of the others.

    Each confirmation is journaled like a trial.

    Returns:
      ``(chosen, confirmation)``: the first candidate that passed (or None) and
      the summary stored in :attr:`SearchResult.confirmation` (``skipped``: the
      candidates ranked before the last attempt that were not confirmed).

    Example:
      After ``A`` misses the bound (0.02) by 0.04 on confirmation, ``B`` and ``C``
      (less than 0.04 more accurate than ``A`` on validation) are passed over for ``D``:

      >>> class Fake:  # what confirm() reads of a Trials
      ...     max_drop, baseline = 0.02, 0.96
      ...     confirm_baseline = lambda self: 0.96
      ...     confirm = lambda self, rec: {"accuracy": {"A": 0.90, "D": 0.95}[rec["key"]]}
      >>> ranked = [{"key": k, "bytes": b, "ratio": 1 / b, "accuracy": a}
      ...           for k, b, a in (("A", 1, 0.95), ("B", 2, 0.96), ("C", 3, 0.97), ("D", 4, 0.99))]
      >>> chosen, summary = confirm(Fake(), ranked, max_confirmations=3, confirm_n=None, val_n=None)
      >>> chosen["key"], [a["key"] for a in summary["attempts"]], summary["skipped"]
      ('D', ['A', 'D'], 2)
    """
    base = trials.confirm_baseline()
    attempts: list[dict[str, Any]] = []
    chosen, floor, margin, last = None, None, None, -1
    remaining = list(enumerate(ranked))
    while remaining and len(attempts) < max_confirmations:
        safer = [(i, r) for i, r in remaining if floor is None or r["accuracy"] > floor]
        if not safer:  # every other candidate is skipped
            last = len(ranked) - 1
            break
        clear = [(i, r) for i, r in safer if margin is None or r["accuracy"] >= margin - 1e-12]
        last, rec = (clear or safer)[0]
        remaining = [(i, r) for i, r in remaining if i > last]
        res = trials.confirm(rec)
        acc, pair = res["accuracy"], res.get("discordant")
        se = None
        if confirm_n is not None:
            se = drop_se(base, acc, confirm_n) if pair is None else paired_drop_se(*pair, confirm_n)
        threshold = base - trials.max_drop + (confidence * se if confidence else 0.0)
        passed = bool(acc >= threshold)
        attempt = {
            "key": rec["key"],
            "bytes": rec["bytes"],
            "ratio": rec["ratio"],
            "val_accuracy": rec["accuracy"],
            "val_drop": trials.baseline - rec["accuracy"],
            "accuracy": acc,
            "drop": base - acc,
            "passed": passed,
        }
        if confirm_n is not None:
            attempt["drop_se"] = drop_se(base, acc, confirm_n)
        if pair is not None:
            attempt["discordant"] = list(pair)
            attempt["paired_se"] = se
        if val_n is not None:
            attempt["val_drop_se"] = drop_se(trials.baseline, rec["accuracy"], val_n)
        attempts.append(attempt)
        if passed:
            chosen = rec
            break
        shortfall = threshold - acc  # > 0: how far it missed the bound
        floor = rec["accuracy"] if floor is None else max(floor, rec["accuracy"])
        need = rec["accuracy"] + shortfall
        margin = need if margin is None else max(margin, need)
    skipped = last + 1 - len(attempts)
    summary = {
        "n": confirm_n,
        "val_n": val_n,
        "baseline": base,
        "max_drop": trials.max_drop,
        "max_confirmations": max_confirmations,
        "confidence": confidence,
        "ranked": len(ranked),
        "skipped": skipped,
        "attempts": attempts,
        "confirmed": None if chosen is None else chosen["key"],
        "se_method": SE_METHOD,
        "paired_se_method": PAIRED_SE_METHOD,
    }
    return chosen, summary
