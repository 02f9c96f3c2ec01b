"""The honest bound: the chosen candidate is confirmed on a split the search never ranked with."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxzip._errors import JaxzipError
from jaxzip.auto._trials import Trials

__all__ = [
    "SE_METHOD",
    "BudgetTooSmall",
    "check_confirm_size",
    "confirm",
    "drop_se",
    "min_confirm_size",
]

SE_METHOD = (
    "unpaired binomial standard error of the accuracy difference on the same n examples, "
    "sqrt(a0 (1 - a0) / n + a1 (1 - a1) / n) (a0: baseline, a1: candidate); conservative, "
    "since both are measured on the same examples and their errors are positively correlated"
)


class BudgetTooSmall(JaxzipError, ValueError):
    """The time budget ended before the baseline was measured on the confirmation split."""


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
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Confirms ``ranked`` candidates in order until one passes; at most ``max_confirmations``.

    A candidate passes iff its confirmation accuracy is at least the baseline's
    confirmation accuracy minus ``trials.max_drop`` (the validation rule on the
    other split). After a failure, candidates no more accurate on validation
    than one that failed are skipped (they are no safer), so each attempt goes
    to the next by the ranking that has a larger validation margin. Each
    confirmation is journaled like a trial.

    Returns:
      ``(chosen, confirmation)``: the first candidate that passed (or None) and
      the summary stored in :attr:`SearchResult.confirmation`.
    """
    base = trials.confirm_baseline()
    attempts: list[dict[str, Any]] = []
    chosen, floor, skipped = None, None, 0
    for rec in ranked:
        if len(attempts) >= max_confirmations:
            break
        if floor is not None and rec["accuracy"] <= floor:
            skipped += 1
            continue
        acc = trials.confirm(rec)
        passed = bool(acc >= base - trials.max_drop)
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
        if val_n is not None:
            attempt["val_drop_se"] = drop_se(trials.baseline, rec["accuracy"], val_n)
        attempts.append(attempt)
        if passed:
            chosen = rec
            break
        floor = rec["accuracy"] if floor is None else max(floor, rec["accuracy"])
    summary = {
        "n": confirm_n,
        "val_n": val_n,
        "baseline": base,
        "max_drop": trials.max_drop,
        "max_confirmations": max_confirmations,
        "ranked": len(ranked),
        "skipped": skipped,
        "attempts": attempts,
        "confirmed": None if chosen is None else chosen["key"],
        "se_method": SE_METHOD,
    }
    return chosen, summary
