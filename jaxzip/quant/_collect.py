"""Activation calibration: a range collector with explicit state over calibration batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip.quant._calibrate import calibrate_layout, check_input
from jaxzip.quant._qarray import make_layout
from jaxzip.quant._spec import MINMAX, MinMax, Percentile, QuantSpec, check_spec


class RangeState(NamedTuple):
    """Running activation range statistics.

    Attributes:
      count: int32 scalar, the number of batches seen.
      lo: running low ends (min, or mean of per-batch percentiles), the scale's shape.
      hi: running high ends, ``lo``'s shape.
    """

    count: jax.Array
    lo: jax.Array
    hi: jax.Array


class RangeCollector(NamedTuple):
    """A pair of pure functions plus a read-out, optax-style.

    Attributes:
      init: ``init(example_x) -> RangeState`` (only the shape of ``example_x`` is used).
      update: ``update(state, x) -> RangeState``; jittable.
      ranges: ``ranges(state) -> (lo, hi)``, to pass as ``fixed_range=`` to
        :func:`fake_quant` or :func:`quantize`.
    """

    init: Callable[[ArrayLike], RangeState]
    update: Callable[[RangeState, ArrayLike], RangeState]
    ranges: Callable[[RangeState], tuple[jax.Array, jax.Array]]


def make_range_collector(
    spec: QuantSpec, *, calibration: MinMax | Percentile = MINMAX
) -> RangeCollector:
    """Makes a collector of static activation ranges over calibration batches.

    ``MinMax()`` keeps the running min and max (absmax for symmetric specs);
    ``Percentile(...)`` keeps the running mean of each batch's percentiles.
    ``spec.axes`` are the activation axes with their own range (e.g. ``(-1,)``
    for per-channel); the others, batch included, are reduced.

    Args:
      spec: the activation spec (its grid symmetry and granularity are used).
      calibration: ``MinMax()`` or ``Percentile(...)``.

    Returns:
      A :class:`RangeCollector`.

    Raises:
      TypeError: ``spec`` or ``calibration`` has the wrong type.

    Example:
      >>> import jax.numpy as jnp
      >>> c = make_range_collector(QuantSpec(bits=8, signed=False, symmetric=False))
      >>> s = c.init(jnp.zeros((2, 3)))
      >>> for x in (jnp.array([[0.0, 1.0, 2.0]]), jnp.array([[0.5, 3.0, 1.0]])):
      ...     s = c.update(s, x)
      >>> [a.item() for a in c.ranges(s)]
      [0.0, 3.0]
    """
    check_spec(spec)
    if not isinstance(calibration, (MinMax, Percentile)):
        raise TypeError(
            "make_range_collector: calibration must be MinMax() or Percentile(...), "
            f"got {calibration!r}"
        )

    def init(example_x: ArrayLike) -> RangeState:
        shape = make_layout(jnp.shape(example_x), spec).scale_shape
        if isinstance(calibration, MinMax):
            lo, hi = jnp.full(shape, jnp.inf), jnp.full(shape, -jnp.inf)
        else:
            lo, hi = jnp.zeros(shape), jnp.zeros(shape)
        return RangeState(jnp.zeros((), jnp.int32), lo, hi)

    def update(state: RangeState, x: ArrayLike) -> RangeState:
        x = check_input(x, "x", where="range collector update")
        layout = make_layout(x.shape, spec)
        if layout.scale_shape != state.lo.shape:
            raise ValueError(
                f"x: shape {x.shape} gives ranges of shape {layout.scale_shape}, but the "
                f"state holds {state.lo.shape}"
            )
        lo, hi = calibrate_layout(x, layout, spec, calibration)
        count = state.count + 1
        if isinstance(calibration, MinMax):
            return RangeState(count, jnp.minimum(state.lo, lo), jnp.maximum(state.hi, hi))
        w = 1.0 / count.astype(jnp.float32)
        return RangeState(count, state.lo + (lo - state.lo) * w, state.hi + (hi - state.hi) * w)

    def ranges(state: RangeState) -> tuple[jax.Array, jax.Array]:
        if not isinstance(state.count, jax.core.Tracer) and int(state.count) == 0:
            raise ValueError("ranges: the collector has seen no batch; call update first")
        return state.lo, state.hi

    return RangeCollector(init, update, ranges)
