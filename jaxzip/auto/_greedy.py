"""The default search strategy: :class:`Greedy` (sensitivity ladder, bisection, refinement)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import numpy as np

from jaxzip.auto._common import est_bytes
from jaxzip.auto._polish import polish
from jaxzip.auto._sensitivity import Sensitivity
from jaxzip.auto._space import SearchSpace
from jaxzip.auto._trials import Trials
from jaxzip.paths import leaves_with_paths

__all__ = ["Greedy"]


@dataclasses.dataclass(frozen=True)
class Greedy:
    """Sensitivity curves, then the most aggressive feasible rung of a trade-off ladder.

    Each layer alone is pruned / shared (no fine-tuning); a setting's solo drop
    is the largest drop of it and every milder setting. For a trade-off lambda
    each layer takes the settings minimizing its estimated bytes + lambda * solo
    drop (lambda = 0: the most aggressive; infinite: the mildest of least drop);
    lambda is bisected for the most aggressive feasible candidate. Without a
    budget, single layers are then pushed one notch further (with
    ``space.refine``), largest layers first, keeping feasible moves. With a
    budget (time or trials), the ladder above that rung is bisected again at the
    longest fine-tuning of ``space.finetune_rounds`` for which about four trials
    fit in the time left (longer training makes more aggressive rungs feasible);
    with hooks that take a ``distill`` keyword, that bisection's first rung is
    first built with and without distillation and the rest of the search trains
    the more accurate way (:func:`_choose_distill`). The rest is spent by :func:`jaxzip.auto._polish.polish`: neighbours of
    the best per-layer settings, one notch away (the refinement's moves among
    them), at each fine-tuning length from the best's up, until the budget ends
    or none is feasible and smaller. Deterministic: it uses no randomness.

    Example:
      >>> Greedy().name
      'greedy'
    """

    name: ClassVar[str] = "greedy"
    """The strategy's name in results and journals."""

    def run(
        self, trials: Trials, space: SearchSpace, *, key: jax.Array, max_trials: int | None
    ) -> str | None:
        """Runs the search through ``trials`` (which enforce the budgets).

        Returns ``"exhausted"`` when the budget-spending refinement ran out of
        moves, else None.
        """
        budget = trials.budget_s is not None or trials.max_trials is not None
        # with a budget, the one-notch refinement is left to polish, after the longer ladder
        current, ladder, lo = _greedy(trials, space, refine=space.refine and not budget)
        if not budget:
            return None
        # the ladder again, at the longest fine-tuning whose bisection (about 4 trials) fits
        fitting = [r for r in space.finetune_rounds if trials.fits(r, 4)]
        longest = fitting[-1] if fitting else 1
        if trials.can_choose_distill:
            if current is None:  # the mildest rung, at the longest fine-tuning _greedy tried
                rung, rounds = 0, space.finetune_rounds[-1]
            elif longest > current.get("rounds", 1):  # the second bisection's first rung
                rung, rounds = (lo + len(ladder)) // 2, longest
            else:
                rung, rounds = min(lo + 1, len(ladder) - 1), current.get("rounds", 1)
            current = _choose_distill(trials, ladder[rung], rounds, current)
        if current is None:
            return None
        if longest > current.get("rounds", 1):
            top = _bisect(trials, ladder, lo, len(ladder), longest)
            if top > lo:
                rec = trials.candidate(*ladder[top], longest)
                if trials.is_feasible(rec) and rec["bytes"] < current["bytes"]:
                    current = rec
        return polish(trials, space, current)


def _choose_distill(trials: Trials, rung: tuple, rounds: int, current: dict | None) -> dict | None:
    """With or without distillation from the dense model, for the rest of the search.

    ``rung`` is built at ``rounds`` both ways (the first rung the longer
    ladder would try: where the way of training matters most); the search goes
    on with the more accurate way (distilling on a tie) and returns the better
    of ``current`` and the labels' build if that is feasible. Distilling helps
    when the dense model is a good teacher and holds the candidates back when
    longer training on the labels beats it (an undertrained baseline).
    """
    distilled = trials.candidate(*rung, rounds)
    trials.distill = False
    labels = trials.candidate(*rung, rounds)
    if labels["accuracy"] <= distilled["accuracy"]:
        trials.distill = True
        return current
    if trials.is_feasible(labels) and (current is None or labels["bytes"] < current["bytes"]):
        return labels
    return current


def _sensitivity(trials: Trials, space: SearchSpace) -> Sensitivity:
    probes = space.probes
    s_acc = [[trials.probe(p, sparsity=s) for s in probes] for p in trials.layers]
    b_acc = [[trials.probe(p, bits=b) for b in space.bits] for p in trials.layers]
    return Sensitivity(
        layers=trials.layers,
        sparsities=probes,
        bits=space.bits,
        baseline=trials.baseline,
        sparsity_accuracy=np.array(s_acc),
        bits_accuracy=np.array(b_acc),
    )


def _envelope(drops: np.ndarray) -> np.ndarray:
    """Running maximum along the aggressiveness axis: a setting is allowed only if all milder are."""
    return np.maximum.accumulate(drops, axis=1)


def _ladder(sens: Sensitivity, space: SearchSpace, sizes: dict[str, int]) -> list[tuple]:
    """Candidates from least to most aggressive, one per trade-off lambda, deduplicated.

    Each layer takes the (sparsity, bits) minimizing ``est_bytes + lambda * solo_drop``,
    with the solo drops of pruning and of sharing added; large layers thus go further
    than small ones for the same accuracy cost.
    """
    base = sens.baseline
    # drops on the space's sparsity grid: interpolate the probes (0 at sparsity 0)
    xs = np.concatenate([[0.0], np.asarray(sens.sparsities)])
    s_drop = np.stack(
        [
            np.interp(space.sparsities, xs, np.concatenate([[0.0], base - row]))
            for row in sens.sparsity_accuracy
        ]
    )
    s_env = _envelope(np.maximum(s_drop, 0.0))
    b_env = _envelope(np.maximum(base - sens.bits_accuracy, 0.0))
    total = sum(4 * n for n in sizes.values())
    lambdas = [np.inf, *np.geomspace(total * 1e3, total * 1e-3, 61), 0.0]
    out: list[tuple[dict, dict]] = []
    for lam in lambdas:
        sp, bt = {}, {}
        for i, layer in enumerate(sens.layers):
            best = None
            for j, sv in enumerate(space.sparsities):
                for k, bv in enumerate(space.bits):
                    drop = s_env[i, j] + b_env[i, k]
                    est = est_bytes(sizes[layer], sv, bv)
                    cost = (drop, est) if lam == np.inf else (est + lam * drop, drop)
                    if best is None or cost < best[0]:
                        best = (cost, sv, bv)
            sp[layer], bt[layer] = best[1], best[2]
        if not out or out[-1] != (sp, bt):
            out.append((sp, bt))
    return out


def _bisect(trials: Trials, ladder: list[tuple], lo: int, hi: int, rounds: int = 1) -> int:
    """The most aggressive feasible rung in ``(lo, hi)`` at ``rounds``, by bisection (rung ``lo``
    taken as feasible, ``hi`` as not); ``lo`` if none."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trials.is_feasible(trials.candidate(*ladder[mid], rounds)):
            lo = mid
        else:
            hi = mid
    return lo


def _greedy(
    trials: Trials, space: SearchSpace, refine: bool
) -> tuple[dict | None, list[tuple], int]:
    """The ladder and its refinement: ``(record, ladder, rung)``. The record is the best
    feasible one, or the mildest rung at longer fine-tuning when that is feasible, or None;
    ``rung`` is the most aggressive rung feasible at one round (-1: none)."""
    sens = _sensitivity(trials, space)
    trials.sensitivity = sens
    sizes = {p: int(np.size(x)) for p, x in leaves_with_paths(trials.params) if p in trials.layers}
    ladder = _ladder(sens, space, sizes)
    lo = _bisect(trials, ladder, -1, len(ladder))
    if lo < 0:  # nothing feasible: longer fine-tuning of the mildest rung, within budgets
        if trials.budget_s is None and trials.max_trials is None:
            return None, ladder, lo
        for r in space.finetune_rounds[1:]:
            rec = trials.candidate(*ladder[0], r)
            if trials.is_feasible(rec):
                return rec, ladder, lo
        return None, ladder, lo
    sp, bt = dict(ladder[lo][0]), dict(ladder[lo][1])
    current = trials.candidate(sp, bt)
    if not refine:
        return current, ladder, lo
    improved = True
    while improved:
        improved = False
        order = sorted(trials.layers, key=lambda p: -current["layer_bytes"].get(p, 0))
        for layer in order:
            moves = []
            i = space.sparsities.index(sp[layer])
            if i + 1 < len(space.sparsities):
                moves.append(({**sp, layer: space.sparsities[i + 1]}, bt))
            k = space.bits.index(bt[layer])
            if k + 1 < len(space.bits):
                moves.append((sp, {**bt, layer: space.bits[k + 1]}))
            for msp, mbt in moves:
                rec = trials.candidate(msp, mbt)
                if trials.is_feasible(rec) and rec["bytes"] < current["bytes"]:
                    sp, bt, current, improved = dict(msp), dict(mbt), rec, True
                    break
            if improved:
                break
    return current, ladder, lo
