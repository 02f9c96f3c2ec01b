"""Sparsity schedules (one-shot, Zhu & Gupta polynomial, iterative rounds) and rewinding."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip._types import Mask, Params, Where
from jaxzip.paths import select
from jaxzip.paths._trees import check_mask, first_structure_difference
from jaxzip.prune._checks import check_sparsity


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class OneShotSparsity:
    """``0`` before ``at_step``, ``value`` from ``at_step`` on. Build with :func:`one_shot_sparsity`."""

    value: float
    at_step: int

    def __call__(self, step: ArrayLike) -> jax.Array:
        """The sparsity at ``step`` (float32, traceable)."""
        return jnp.where(jnp.asarray(step) >= self.at_step, self.value, 0.0).astype(jnp.float32)


def one_shot_sparsity(value: float, *, at_step: int = 0) -> OneShotSparsity:
    """A schedule that jumps from 0 to ``value`` at ``at_step``.

    Raises:
      ValueError: ``value`` outside ``[0, 1)`` or ``at_step`` negative.

    Example:
      >>> s = one_shot_sparsity(0.9, at_step=10)
      >>> float(s(9)), round(float(s(10)), 4)
      (0.0, 0.9)
    """
    check_sparsity(value, "value")
    _check_int("at_step", at_step, 0)
    return OneShotSparsity(value=float(value), at_step=at_step)


@dataclasses.dataclass(frozen=True)
class PolynomialSparsity:
    """Zhu & Gupta (2017) gradual sparsity. Build with :func:`polynomial_sparsity`."""

    final: float
    initial: float
    begin_step: int
    end_step: int
    update_every: int
    power: float

    def __call__(self, step: ArrayLike) -> jax.Array:
        """The sparsity at ``step`` (float32, traceable)."""
        t = jnp.asarray(step, jnp.int32)
        span = self.end_step - self.begin_step
        t_in = jnp.clip(t, self.begin_step, self.end_step) - self.begin_step
        t_in = (t_in // self.update_every) * self.update_every
        frac = jnp.where(t >= self.end_step, 1.0, t_in.astype(jnp.float32) / span)
        value = self.final + (self.initial - self.final) * (1.0 - frac) ** self.power
        return value.astype(jnp.float32)


def polynomial_sparsity(
    final: float,
    *,
    initial: float = 0.0,
    begin_step: int,
    end_step: int,
    update_every: int = 1,
    power: float = 3.0,
) -> PolynomialSparsity:
    """Zhu & Gupta: ``s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n Δt))^power``.

    ``t0 = begin_step``, ``n Δt = end_step - begin_step``, ``Δt = update_every``:
    the value changes only every ``update_every`` steps (``t`` is rounded down to
    ``t0 + j Δt``), is ``initial`` before ``begin_step`` and ``final`` from
    ``end_step`` on.

    Args:
      final: the target sparsity ``s_f`` in ``[0, 1)``.
      initial: the starting sparsity ``s_i``, ``0 <= s_i <= s_f``.
      begin_step: ``t0 >= 0``.
      end_step: ``> begin_step``.
      update_every: ``Δt >= 1``.
      power: the exponent (3 in the paper), ``> 0``.

    Returns:
      A callable ``step -> sparsity`` (float32, works on traced steps).

    Raises:
      ValueError: any argument out of range.

    Example:
      >>> s = polynomial_sparsity(0.8, begin_step=0, end_step=100, update_every=10)
      >>> [round(float(s(t)), 4) for t in (0, 15, 50, 100, 500)]
      [0.0, 0.2168, 0.7, 0.8, 0.8]
    """
    check_sparsity(final, "final")
    check_sparsity(initial, "initial")
    if initial > final:
        raise ValueError(f"initial: expected <= final={final!r}, got {initial!r}")
    _check_int("begin_step", begin_step, 0)
    _check_int("end_step", end_step, begin_step + 1)
    _check_int("update_every", update_every, 1)
    if not isinstance(power, (int, float)) or isinstance(power, bool) or power <= 0:
        raise ValueError(f"power: expected a number > 0, got {power!r}")
    return PolynomialSparsity(
        final=float(final),
        initial=float(initial),
        begin_step=begin_step,
        end_step=end_step,
        update_every=update_every,
        power=float(power),
    )


def iterative_rounds(final: float, *, rounds: int) -> tuple[float, ...]:
    """Sparsities of ``rounds`` prune–retrain rounds reaching ``final`` (lottery-ticket style).

    Each round prunes the same fraction ``p = 1 - (1 - final)^(1/rounds)`` of the
    weights still alive, so round ``r`` has sparsity ``1 - (1 - final)^(r/rounds)``.
    Typical loop: train; ``mask = magnitude_mask(apply_mask(params, mask), sparsity=s_r)``;
    ``params = rewind(params, params_at_k, mask)``; retrain with :func:`keep_masked`.

    Raises:
      ValueError: ``final`` outside ``[0, 1)`` or ``rounds < 1``.

    Example:
      >>> [round(s, 4) for s in iterative_rounds(0.875, rounds=3)]
      [0.5, 0.75, 0.875]
    """
    check_sparsity(final, "final")
    _check_int("rounds", rounds, 1)
    return tuple(1.0 - (1.0 - float(final)) ** (r / rounds) for r in range(1, rounds + 1))


def rewind(
    params_now: Params, params_rewind: Params, mask: Mask, *, where: Where | None = None
) -> Params:
    """Weight rewinding: surviving weights go back to ``params_rewind``, pruned ones to 0.

    ``params_rewind`` is the initialization (Frankle & Carbin 2019) or the params
    at an early step ``k`` (Frankle et al. 2020).

    Args:
      params_now: the current (trained) params.
      params_rewind: the params to rewind to, same structure.
      mask: the keep-mask, same structure.
      where: the leaves to rewind; the others keep ``params_now`` (masked).
        None (the default) rewinds every leaf.

    Raises:
      ValueError: the trees' structures or shapes differ (first differing path named).

    Example:
      >>> import jax.numpy as jnp
      >>> rewind({"w": jnp.array([5.0, 6.0])}, {"w": jnp.array([1.0, 2.0])},
      ...        {"w": jnp.array([True, False])})
      {'w': Array([1., 0.], dtype=float32)}
    """
    diff = first_structure_difference(params_now, params_rewind)
    if diff is not None:
        raise ValueError(f"params_rewind: expected params_now's structure and shapes; {diff}")
    check_mask(params_now, mask)
    picked = (
        jax.tree.map(lambda _: True, params_now) if where is None else select(params_now, where)
    )
    return jax.tree.map(
        lambda now, old, m, p: jnp.where(m, old if p else now, jnp.zeros_like(now)),
        params_now,
        params_rewind,
        mask,
        picked,
    )
