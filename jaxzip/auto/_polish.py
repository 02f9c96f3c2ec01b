"""Spending a budget: neighbours of the best per-layer settings, with longer fine-tuning."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxzip.auto._common import est_bytes
from jaxzip.auto._space import SearchSpace
from jaxzip.auto._trials import Trials
from jaxzip.paths import leaves_with_paths

__all__ = ["neighbours", "polish"]

Settings = tuple[dict[str, float], dict[str, int]]


def _moves(
    sp: dict[str, float], bt: dict[str, int], layer: str, space: SearchSpace, step: int
) -> list[Settings]:
    """``layer`` one notch more aggressive (``step=1``) or milder (``-1``): sparsity or bits."""
    out = []
    i = space.sparsities.index(sp[layer]) + step
    if 0 <= i < len(space.sparsities):
        out.append(({**sp, layer: space.sparsities[i]}, dict(bt)))
    k = space.bits.index(bt[layer]) + step
    if 0 <= k < len(space.bits):
        out.append((dict(sp), {**bt, layer: space.bits[k]}))
    return out


def neighbours(
    sp: dict[str, float], bt: dict[str, int], space: SearchSpace, sizes: dict[str, int]
) -> list[Settings]:
    """The settings one notch from ``(sp, bt)`` whose estimated file is smaller, best first.

    Singles (one layer one notch more aggressive: sparsity up or bits down)
    come first, then trades (one layer one notch more aggressive, another one
    notch milder); each group ordered by estimated bytes (the greedy ladder's
    estimate), smallest first.

    Example:
      >>> s = SearchSpace(sparsities=(0.0, 0.5), bits=(4, 2))
      >>> [m for m, _ in neighbours({"a": 0.0}, {"a": 4}, s, {"a": 1000})]  # 2 bits, then 50%
      [{'a': 0.0}, {'a': 0.5}]
    """
    return [m for group in _groups(sp, bt, space, sizes) for m in group]


def _groups(
    sp: dict[str, float], bt: dict[str, int], space: SearchSpace, sizes: dict[str, int]
) -> tuple[list[Settings], list[Settings]]:
    def est(s: Settings) -> float:
        return sum(est_bytes(sizes[p], s[0][p], s[1][p]) for p in sizes)

    here = est((sp, bt))
    singles = [m for p in sizes for m in _moves(sp, bt, p, space, 1)]
    trades = [
        t
        for p in sizes
        for m in _moves(sp, bt, p, space, 1)
        for q in sizes
        if q != p
        for t in _moves(m[0], m[1], q, space, -1)
    ]
    seen: list[Settings] = []
    out: tuple[list[Settings], list[Settings]] = ([], [])
    for group, kept in zip((singles, trades), out, strict=True):
        for m in sorted(group, key=est):
            if est(m) < here and m not in seen:
                seen.append(m)
                kept.append(m)
    return out


def polish(trials: Trials, space: SearchSpace, current: dict[str, Any]) -> str:
    """Improves ``current`` (a feasible candidate record) until the budget ends or nothing helps.

    The neighbours of the current best (:func:`neighbours`) are tried at every
    fine-tuning length of ``space.finetune_rounds`` from the current one up:
    the singles at each length, then the trades at each length. The first that
    is feasible and smaller becomes the current best and the scan starts again
    from it. A length longer than one round whose trial is not expected to
    end within the time left (:meth:`Trials.fits`) is left out. Trials already
    measured are replayed, so a resumed search repeats none. The budgets raise
    :class:`jaxzip.auto._trials.BudgetExhausted` between trials.

    Returns:
      ``"exhausted"``: every neighbour at every allowed length was tried and
      none beats the current best; ``"time_budget"``: the same, but some
      lengths were left out for lack of time.
    """
    sizes = {p: int(np.size(x)) for p, x in leaves_with_paths(trials.params) if p in trials.layers}
    left_out: list[int] = []  # lengths whose trial was not expected to end in time

    def fits(r: int) -> bool:  # asked before each trial: the time left shrinks
        ok = r == 1 or trials.fits(r)
        if not ok:
            left_out.append(r)
        return ok

    while True:
        groups = _groups(dict(current["sparsity"]), dict(current["bits"]), space, sizes)
        allowed = [r for r in space.finetune_rounds if r >= current.get("rounds", 1)]
        left_out.clear()
        tried = (
            trials.candidate(msp, mbt, r)  # lazily: stops at the first that helps
            for group in groups
            for r in allowed
            for msp, mbt in group
            if fits(r)
        )
        best = current["bytes"]
        found = next(
            (rec for rec in tried if trials.is_feasible(rec) and rec["bytes"] < best), None
        )
        if found is None:
            return "time_budget" if left_out else "exhausted"
        current = found
