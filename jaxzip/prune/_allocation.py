"""Sparsity allocation: how a target sparsity is spread over the selected leaves.

* :class:`Uniform`: every selected leaf gets the same sparsity.
* :class:`Global`: one threshold across all selected leaves (exactly
  ``round(s * total)`` groups pruned overall).
* :class:`ERK`: Erdős–Rényi-Kernel (Evci et al. 2020, RigL): a leaf's density is
  proportional to ``sum(shape) / prod(shape)``, scaled so the total density is
  ``1 - s``; leaves that would exceed density 1 are kept dense and the rest
  rescaled.
* :class:`Explicit`: ordered ``(where, sparsity)`` rules, first match wins.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxzip.paths import matches
from jaxzip.paths._select import _check_where, describe
from jaxzip.prune._checks import check_sparsity, is_concrete


@dataclasses.dataclass(frozen=True)
class Uniform:
    """The same sparsity for every selected leaf (exact per leaf).

    Example:
      >>> Uniform()
      Uniform()
    """


@dataclasses.dataclass(frozen=True)
class Global:
    """One threshold across all selected leaves; the total pruned count is exact.

    Example:
      >>> Global()
      Global()
    """


@dataclasses.dataclass(frozen=True)
class ERK:
    """Erdős–Rényi-Kernel allocation (Evci et al., "Rigging the Lottery", 2020).

    Args:
      power: exponent applied to ``sum(shape) / prod(shape)`` (RigL's
        ``erk_power_scale``; 1.0 is standard ERK, 0.0 is uniform).

    Example:
      >>> ERK(power=1.0)
      ERK(power=1.0)
    """

    power: float = dataclasses.field(default=1.0, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.power, (int, float)) or not 0.0 <= self.power <= 10.0:
            raise ValueError(f"ERK: power must be a number in [0, 10], got {self.power!r}")


@dataclasses.dataclass(frozen=True)
class Explicit:
    """Per-path sparsities: ordered ``(where, sparsity)`` rules; the first match wins.

    Selected leaves that no rule matches are left dense. Every rule must match at
    least one selected leaf.

    Args:
      rules: a sequence of ``(where, sparsity)`` pairs, sparsity in ``[0, 1)``.

    Example:
      >>> Explicit([(r"Dense_0/kernel", 0.9), (r".*/kernel", 0.5)]).rules[0]
      ('Dense_0/kernel', 0.9)
    """

    rules: tuple[tuple[Any, Any], ...]

    def __post_init__(self) -> None:
        if isinstance(self.rules, (str, bytes)) or not isinstance(self.rules, Sequence):
            raise ValueError(
                f"Explicit: rules must be a sequence of (where, sparsity), got {self.rules!r}"
            )
        rules = []
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Sequence) or isinstance(rule, str) or len(rule) != 2:
                raise ValueError(
                    f"Explicit: rules[{i}] must be a (where, sparsity) pair, got {rule!r}"
                )
            where, sparsity = rule
            _check_where(where)
            check_sparsity(sparsity, f"Explicit: rules[{i}] sparsity")
            rules.append((where, sparsity))
        if not rules:
            raise ValueError("Explicit: expected at least one (where, sparsity) rule, got none")
        object.__setattr__(self, "rules", tuple(rules))


Allocation = Uniform | Global | ERK | Explicit


def explicit_sparsities(
    allocation: Explicit, paths: Sequence[str], leaves: Sequence[Any]
) -> list[Any]:
    """The first matching rule's sparsity per leaf (None where no rule matches)."""
    out: list[Any] = [None] * len(paths)
    used = [False] * len(allocation.rules)
    for j, (path, leaf) in enumerate(zip(paths, leaves, strict=True)):
        for i, (where, sparsity) in enumerate(allocation.rules):
            if matches(where, path, leaf):
                out[j], used[i] = sparsity, True
                break
    for i, ok in enumerate(used):
        if not ok:
            shown = ", ".join(repr(p) for p in paths[:8])
            raise ValueError(
                f"allocation: Explicit rule {i} where={describe(allocation.rules[i][0])} matches "
                f"no selected leaf (or only leaves an earlier rule took); selected: {shown}"
            )
    return out


def erk_sparsities(shapes: Sequence[tuple[int, ...]], sparsity: Any, *, power: float = 1.0) -> Any:
    """Per-leaf ERK sparsities (an array, one entry per shape) for a total ``sparsity``.

    Computed in float64 NumPy when ``sparsity`` is concrete, else in traced float32.

    Example:
      >>> erk_sparsities([(100, 100), (100, 10)], 0.5).round(4).tolist()
      [0.55, 0.0]
    """
    xp = np if is_concrete(sparsity) else jnp
    s = xp.asarray(sparsity, dtype=xp.float64 if xp is np else xp.float32)
    n = xp.asarray([float(math.prod(sh)) for sh in shapes], dtype=s.dtype)
    raw = xp.asarray([(sum(sh) / math.prod(sh)) ** power for sh in shapes], dtype=s.dtype)
    dense = xp.zeros(len(shapes), dtype=bool)
    eps = xp.asarray(0.0, dtype=s.dtype)
    for _ in range(len(shapes) + 1):
        rhs = xp.sum(xp.where(dense, -n * s, n * (1 - s)))
        divisor = xp.sum(xp.where(dense, 0.0, raw * n))
        eps = xp.where(divisor > 0, rhs / xp.where(divisor > 0, divisor, 1.0), 0.0)
        dense = dense | (raw * eps > 1.0)
    density = xp.where(dense, 1.0, xp.clip(raw * eps, 0.0, 1.0))
    return xp.clip(1.0 - density, 0.0, 1.0)
