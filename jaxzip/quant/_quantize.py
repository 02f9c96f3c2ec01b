"""Post-training quantization of one array: calibrate → scale → round."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.quant._calibrate import calibrate_layout, check_input, scale_zero_point
from jaxzip.quant._qarray import Layout, QArray, expand, make_layout
from jaxzip.quant._spec import (
    MINMAX,
    Calibration,
    MinMax,
    QuantSpec,
    check_calibration,
    check_spec,
)


def check_key(spec: QuantSpec, key: jax.Array | None, what: str) -> None:
    """Stochastic rounding needs an explicit key."""
    if spec.rounding == "stochastic" and key is None:
        raise ValueError(
            f"{what}: spec.rounding='stochastic' needs an explicit key=jax.random.key(...), got None"
        )


def _check_ratio(clip_ratio: Any) -> None:
    if isinstance(clip_ratio, jax.core.Tracer):
        return
    r = np.asarray(clip_ratio)
    if not np.issubdtype(r.dtype, np.number) or not (np.isfinite(r).all() and (r > 0).all()):
        raise ValueError(f"clip_ratio: expected positive finite numbers, got {clip_ratio!r}")


def resolve_range(
    x: jax.Array,
    layout: Layout,
    spec: QuantSpec,
    calibration: Calibration,
    clip_ratio: ArrayLike,
    fixed_range: tuple[ArrayLike, ArrayLike] | None,
) -> tuple[jax.Array, jax.Array]:
    """The ``(lo, hi)`` range in scale shape: calibrated from ``x`` or fixed, then clipped."""
    _check_ratio(clip_ratio)
    shape = layout.scale_shape
    if fixed_range is None:
        lo, hi = calibrate_layout(x, layout, spec, calibration)
    else:
        if not isinstance(fixed_range, (tuple, list)) or len(fixed_range) != 2:
            raise TypeError(f"fixed_range: expected a pair (lo, hi), got {fixed_range!r}")
        lo, hi = (jnp.asarray(a, jnp.float32) for a in fixed_range)
        try:
            lo, hi = jnp.broadcast_to(lo, shape), jnp.broadcast_to(hi, shape)
        except ValueError:
            raise ValueError(
                f"fixed_range: lo {lo.shape} and hi {hi.shape} must broadcast to the "
                f"scale shape {shape}"
            ) from None
    r = jnp.asarray(clip_ratio, jnp.float32)
    return lo * r, hi * r


def round_values(y: jax.Array, spec: QuantSpec, key: jax.Array | None) -> jax.Array:
    """Rounds ``y = x / scale`` to integers (nearest, or stochastic with ``key``)."""
    if spec.rounding == "stochastic":
        return jnp.floor(y + jax.random.uniform(key, y.shape, jnp.float32))
    return jnp.round(y)


def quantize_array(
    x: ArrayLike,
    spec: QuantSpec,
    *,
    what: str,
    where: str,
    calibration: Calibration = MINMAX,
    clip_ratio: ArrayLike = 1.0,
    fixed_range: tuple[ArrayLike, ArrayLike] | None = None,
    key: jax.Array | None = None,
    check_values: bool = True,
) -> QArray:
    """:func:`quantize` with the array's name and the function's for error messages."""
    check_spec(spec, f"{what}: spec")
    check_calibration(calibration)
    check_key(spec, key, what)
    x = check_input(x, what, where=where, check_values=check_values)
    try:
        layout = make_layout(x.shape, spec)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    grouped = layout.group_axis is not None
    if grouped and fixed_range is None and isinstance(calibration, MinMax):
        # Per group, min and max even for a symmetric grid (scale_zero_point takes
        # max(-lo, hi): the same absmax): XLA on CPU reduces max(|x|) over a split
        # axis ~8x slower than min and max.
        _check_ratio(clip_ratio)
        xs, red = layout.split_view(x.astype(jnp.float32))
        r = jnp.asarray(clip_ratio, jnp.float32)
        lo = jnp.min(xs, axis=red).reshape(layout.scale_shape) * r
        hi = jnp.max(xs, axis=red).reshape(layout.scale_shape) * r
    else:
        lo, hi = resolve_range(x, layout, spec, calibration, clip_ratio, fixed_range)
    scale, zp = scale_zero_point(lo, hi, spec.qmin, spec.qmax, spec.symmetric)
    if grouped and spec.rounding == "nearest":
        # Divide in the split view (..., G, g, ...) by scales broadcast over each
        # group: the same values as repeating the scales to x's shape.
        xs, _ = layout.split_view(x.astype(jnp.float32))
        ga = layout.group_axis + 1
        v = jnp.round(xs / jnp.expand_dims(scale, ga)) + jnp.expand_dims(zp, ga)
        v = v.reshape(x.shape)
    else:
        s_full = expand(scale, layout.group_size, layout.group_axis)
        z_full = expand(zp, layout.group_size, layout.group_axis)
        v = round_values(x.astype(jnp.float32) / s_full, spec, key) + z_full
    values = jnp.clip(v, spec.qmin, spec.qmax).astype(spec.dtype)
    return QArray(
        values=values,
        scale=scale,
        zero_point=zp.astype(jnp.int32),
        bits=spec.bits,
        axes=layout.axes,
        group_size=layout.group_size,
        group_axis=layout.group_axis,
        dtype=np.dtype(x.dtype),
    )


def quantize(
    x: ArrayLike,
    spec: QuantSpec,
    *,
    calibration: Calibration = MINMAX,
    clip_ratio: ArrayLike = 1.0,
    fixed_range: tuple[ArrayLike, ArrayLike] | None = None,
    key: jax.Array | None = None,
) -> QArray:
    """Quantizes a float array to a :class:`QArray` (post-training quantization).

    The range is calibrated from ``x`` (or taken from ``fixed_range``, e.g. an
    activation range from :func:`make_range_collector`), multiplied by
    ``clip_ratio``, turned into scale and zero point, and ``x / scale`` is
    rounded and clipped to the spec's integer grid. ``clip_ratio`` may be a
    traced array, so ``jax.vmap`` over clip ratios works.

    Args:
      x: a float array (not empty, finite; finiteness is checked when concrete).
      spec: bits, grid, granularity and rounding.
      calibration: ``MinMax()``, ``Percentile(...)`` or ``MSEClip(...)``.
      clip_ratio: positive factor on the calibrated range, broadcastable to the
        scale's shape.
      fixed_range: a static ``(lo, hi)`` range broadcastable to the scale's shape,
        used instead of calibrating.
      key: a PRNG key; required when ``spec.rounding == "stochastic"``.

    Returns:
      The :class:`QArray`.

    Raises:
      TypeError: ``x`` is not a float array; bad argument types.
      ValueError: empty ``x``; axes out of range; a group size that does not
        divide its axis; stochastic rounding without a key.
      NonFiniteError: ``x`` is concrete and holds NaN or Inf (a ``ValueError``;
        under ``jit``/``vmap`` of the caller nothing is checked).

    Example:
      >>> import jax.numpy as jnp
      >>> q = quantize(jnp.array([[0.1, -0.2], [0.4, 0.8]]), QuantSpec(bits=8, axes=(-1,)))
      >>> q.values
      Array([[ 32, -32],
             [127, 127]], dtype=int8)
    """
    return quantize_array(
        x,
        spec,
        calibration=calibration,
        clip_ratio=clip_ratio,
        fixed_range=fixed_range,
        key=key,
        what="x",
        where="quantize",
    )
