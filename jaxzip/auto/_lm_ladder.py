"""The decisions of :func:`jaxzip.auto.search_lm`: which configuration to build next.

From each kernel's solo (bytes, increase) at every choice, :class:`Ladder`
orders every step down every kernel's lower convex hull by increase per byte
saved. A configuration is a set of steps taken (``moves``); the prefixes of
that order are the ladder's rungs. :meth:`Ladder.next_step` bisects the rungs
(a safeguarded secant on the predicted increase), :meth:`Ladder.next_fill`
then adds later steps to the smallest feasible candidate while they still fit
by its own measured / predicted ratio. Nothing here builds or evaluates a
model: the caller does, and hands back the records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jaxzip.auto._lm_build import Choice

__all__ = ["Ladder", "hull_moves"]

Moves = tuple[int, ...]
Records = Mapping[Moves, Mapping[str, Any]]


def hull_moves(points: Sequence[tuple[int, float]]) -> list[tuple[float, int, int]]:
    """Steps down one kernel's lower convex hull of (bytes, increase): ``(slope, from, to)``
    indices into ``points``, from the least increase to the fewest bytes.

    Example:
      >>> moves = hull_moves([(100, 0.0), (60, 0.1), (50, 0.5), (40, 0.4)])
      >>> [(round(slope, 6), frm, to) for slope, frm, to in moves]  # (50, 0.5) is above the hull
      [(0.0025, 0, 1), (0.015, 1, 3)]
    """
    cur = min(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    moves = []
    while True:
        b0, i0 = points[cur]
        nxt = [
            ((points[j][1] - i0) / (b0 - points[j][0]), points[j][0], j)
            for j in range(len(points))
            if points[j][0] < b0
        ]
        if not nxt:
            return moves
        slope, _, j = min(nxt)
        moves.append((slope, cur, j))
        cur = j


def _clipped(measured: float, predicted: float) -> float:
    """measured / predicted, kept in [0.25, 4] (1 when either is not positive)."""
    return min(max(measured / predicted, 0.25), 4.0) if predicted > 0 < measured else 1.0


class Ladder:
    """The hull steps of every kernel, sorted by increase per byte saved, and the search's
    choice of the next rung or fill.

    Args:
      kernels: the searched kernels' paths.
      choices: the ``(bits, sparsity)`` choices, in the order of ``points``.
      points: per kernel, its ``(bytes, solo increase)`` at each choice.
      fixed_increase: the increase that every configuration carries (the embedding tables).
      base: the float model's bits per token on the probe windows (increases are
        relative to it).
      max_increase: the bound on the relative increase.

    Example:
      >>> pts = {"a": [(100, 0.0), (40, 0.2)], "b": [(100, 0.0), (60, 0.1)]}
      >>> lad = Ladder(["a", "b"], [(8, 0.0), (4, 0.0)], pts, 0.0, 1.0, 0.15)
      >>> lad.config((0,)), round(lad.predicted((0, 1)), 3)
      ({'a': (8, 0.0), 'b': (4, 0.0)}, 0.3)
    """

    def __init__(
        self,
        kernels: Sequence[str],
        choices: Sequence[Choice],
        points: Mapping[str, Sequence[tuple[int, float]]],
        fixed_increase: float,
        base: float,
        max_increase: float,
    ) -> None:
        self.kernels, self.choices, self.points = list(kernels), list(choices), points
        self.fixed, self.base, self.max_increase = fixed_increase, base, max_increase
        self.steps = sorted(
            (slope, ki, si, frm, to)
            for ki, p in enumerate(self.kernels)
            for si, (slope, frm, to) in enumerate(hull_moves(points[p]))
        )
        self.first = {
            p: min(range(len(choices)), key=lambda i, p=p: (points[p][i][1], -points[p][i][0]))
            for p in self.kernels
        }
        self.blocked: set[int] = set()  # single fill steps found over the bound
        self.limit: int | None = None  # at most this many extra steps in the next fill
        self.extras: Moves = ()  # the extra steps of the last fill

    def __len__(self) -> int:
        return len(self.steps)

    def _at(self, moves: Sequence[int]) -> dict[str, int]:
        at = dict(self.first)
        for i in sorted(moves):
            at[self.kernels[self.steps[i][1]]] = self.steps[i][4]
        return at

    def config(self, moves: Sequence[int]) -> dict[str, Choice]:
        """Each kernel's choice after taking ``moves``."""
        return {p: self.choices[i] for p, i in self._at(moves).items()}

    def predicted(self, moves: Sequence[int]) -> float:
        """The predicted relative increase: the fixed one plus each kernel's solo one."""
        at = self._at(moves)
        return (self.fixed + sum(self.points[p][at[p]][1] for p in self.kernels)) / self.base

    def next_step(self, cands: Records, good: Callable[[Moves], bool]) -> int | None:
        """The next rung to build (a prefix length), or None once the last feasible and the
        first infeasible rungs are adjacent."""
        prefix = {len(m): m for m in cands if isinstance(cands[m]["step"], int)}
        lo = max((k for k, m in prefix.items() if good(m)), default=-1)
        hi = min((k for k, m in prefix.items() if not good(m)), default=len(self) + 1)
        if hi - lo <= 1 or (lo == -1 and 0 in prefix):
            return None
        last = [r for r in cands.values() if r["predicted"] > 0 and r["relative"] > 0]
        ratio = _clipped(last[-1]["relative"], last[-1]["predicted"]) if last else 1.0
        fit = [
            k
            for k in range(max(lo, 0), min(hi, len(self) + 1))
            if self.predicted(range(k)) * ratio <= self.max_increase
        ]
        guess = max(fit, default=lo + 1 if lo >= 0 else 0)
        if lo >= 0 and hi <= len(self):  # safeguard: inside the middle half of (lo, hi)
            q = max((hi - lo) // 4, 1)
            guess = min(max(guess, lo + q), hi - q)
        guess = min(max(guess, lo + 1), hi - 1)
        return None if guess in prefix else guess

    def next_fill(self, cands: Records, good: Callable[[Moves], bool]) -> Moves | None:
        """The smallest good candidate plus the later ladder steps that still fit the bound
        by its own measured / predicted ratio (a kernel's steps in order, none skipped, none
        blocked), at most ``self.limit`` of them; None when there is nothing new.

        A fill that is already a candidate over the bound (a rung the step search
        measured, say) is backed off from as if just measured (:meth:`after_fill`),
        and the next one is proposed instead."""
        ok = sorted((r["bytes"], m) for m, r in cands.items() if good(m))
        if not ok:
            return None
        while (moves := self._fill(ok[0][1], cands)) in cands and not good(moves):
            self.after_fill(False)
        return None if moves == ok[0][1] or moves in cands else moves

    def _fill(self, base_moves: Moves, cands: Records) -> Moves:
        at = self._at(base_moves)
        rec = cands[base_moves]
        r = _clipped(rec["relative"], rec["predicted"])
        total, extras = self.predicted(base_moves) * self.base, []
        for i, (_, ki, _, frm, to) in enumerate(self.steps):
            p = self.kernels[ki]
            if i in base_moves or i in self.blocked or at[p] != frm:
                continue
            delta = self.points[p][to][1] - self.points[p][frm][1]
            if (total + delta) / self.base * r <= self.max_increase:
                extras.append(i)
                at[p], total = to, total + delta
        self.extras = tuple(extras[: self.limit])
        return tuple(sorted({*base_moves, *self.extras}))

    def after_fill(self, feasible: bool) -> None:
        """Feasible: fill again from it. Over the bound: half the steps next time; a single
        step over the bound is blocked."""
        if feasible:
            self.limit = None
        elif len(self.extras) == 1:
            self.blocked.add(self.extras[0])
            self.limit = None
        else:
            self.limit = len(self.extras) // 2

    def fill_label(self, moves: Moves) -> str:
        """``"<k>+<n>"``: the rung ``k`` the fill extends and its ``n`` extra steps."""
        k = next(i for i in range(len(self) + 1) if i not in moves)
        return f"{k}+{len(moves) - k}"
