"""Weight calibration: from an array to a range, and from a range to scale and zero point."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip._finite import check_finite
from jaxzip.quant._qarray import Layout, make_layout
from jaxzip.quant._spec import (
    MINMAX,
    Calibration,
    MinMax,
    MSEClip,
    Percentile,
    QuantSpec,
    check_calibration,
    check_spec,
)


def check_input(
    x: ArrayLike, what: str = "x", *, where: str = "jaxzip.quant", check_values: bool = True
) -> jax.Array:
    """Validates a float array to quantize; NaN/Inf are checked only when ``x`` is concrete.

    ``what`` names the array (``"x"`` or its path) and ``where`` the function in
    the message; ``check_values=False`` skips the NaN/Inf check (the caller did
    it already, for a whole tree).

    Raises:
      TypeError: ``x`` is not a floating-point array.
      ValueError: ``x`` is empty.
      NonFiniteError: ``x`` holds NaN or Inf (a ``ValueError``).
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        dtype = x.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{what}: expected a floating-point array, got dtype {dtype}")
    if np.size(x) == 0:
        raise ValueError(f"{what}: cannot quantize an empty array (shape {np.shape(x)})")
    if check_values:
        check_finite(x, where=where, name=what)  # skipped for tracers
    return jnp.asarray(x)


def scale_zero_point(
    lo: jax.Array, hi: jax.Array, qmin: Any, qmax: Any, symmetric: bool
) -> tuple[jax.Array, jax.Array]:
    """Scale and (integer-valued, float) zero point for a range; qmin/qmax may be traced."""
    lo = jnp.minimum(lo, 0.0).astype(jnp.float32)
    hi = jnp.maximum(hi, 0.0).astype(jnp.float32)
    qmin = jnp.asarray(qmin, jnp.float32)
    qmax = jnp.asarray(qmax, jnp.float32)
    if symmetric:
        amax = jnp.maximum(-lo, hi)
        scale = amax / ((qmax - qmin) / 2)
        zp = jnp.broadcast_to((qmin + qmax) / 2, scale.shape)
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = jnp.where(scale > 0, scale, 1.0)
    if not symmetric:
        zp = jnp.clip(jnp.round(qmin - lo / scale), qmin, qmax)
    return scale, zp


def compute_scale(lo: ArrayLike, hi: ArrayLike, spec: QuantSpec) -> tuple[jax.Array, jax.Array]:
    """Turns a calibrated range into ``(scale, zero_point)`` for ``spec``.

    The range is first widened to include 0, so that 0.0 is exactly
    representable; a zero-width range gets scale 1.

    Args:
      lo: low ends (any shape; e.g. from :func:`calibrate`).
      hi: high ends, ``lo``'s shape.
      spec: the quantization spec (bits, signedness, symmetry).

    Returns:
      ``(scale, zero_point)``: float32 and int32 arrays of the broadcast shape.

    Example:
      >>> s, z = compute_scale(-1.0, 3.0, QuantSpec(bits=8, signed=False, symmetric=False))
      >>> round(float(s) * 255, 5), int(z)
      (4.0, 64)
    """
    check_spec(spec)
    scale, zp = scale_zero_point(
        jnp.asarray(lo), jnp.asarray(hi), spec.qmin, spec.qmax, spec.symmetric
    )
    return scale, zp.astype(jnp.int32)


def fake_rows(xb: jax.Array, scale: jax.Array, zp: jax.Array, qmin: Any, qmax: Any) -> jax.Array:
    """Quantize-dequantize with round-to-nearest (no gradient rules)."""
    v = jnp.clip(jnp.round(xb / scale) + zp, qmin, qmax)
    return (v - zp) * scale


def _minmax_rows(xb: jax.Array, symmetric: bool) -> tuple[jax.Array, jax.Array]:
    if symmetric:
        amax = jnp.max(jnp.abs(xb), axis=1)
        return -amax, amax
    return jnp.min(xb, axis=1), jnp.max(xb, axis=1)


def _percentile_rows(xb: jax.Array, p: float, symmetric: bool) -> tuple[jax.Array, jax.Array]:
    if symmetric:
        amax = jnp.percentile(jnp.abs(xb), p, axis=1)
        return -amax, amax
    return jnp.percentile(xb, 100.0 - p, axis=1), jnp.percentile(xb, p, axis=1)


def _mse_rows(xb: jax.Array, cal: MSEClip, spec: QuantSpec) -> tuple[jax.Array, jax.Array]:
    lo, hi = _minmax_rows(xb, spec.symmetric)
    ratios = jnp.linspace(cal.min_ratio, 1.0, cal.num_ratios, dtype=jnp.float32)

    def err(r: jax.Array) -> jax.Array:
        s, z = scale_zero_point(lo * r, hi * r, spec.qmin, spec.qmax, spec.symmetric)
        fq = fake_rows(xb, s[:, None], z[:, None], spec.qmin, spec.qmax)
        return jnp.mean(jnp.square(fq - xb), axis=1)

    errs = jax.vmap(err)(ratios)  # (num_ratios, C)
    best = ratios[jnp.argmin(errs, axis=0)]
    return lo * best, hi * best


def calibrate_rows(
    xb: jax.Array, spec: QuantSpec, calibration: Calibration
) -> tuple[jax.Array, jax.Array]:
    """Per-row ``(lo, hi)`` of a ``(C, N)`` block view."""
    xb = xb.astype(jnp.float32)
    if isinstance(calibration, MinMax):
        return _minmax_rows(xb, spec.symmetric)
    if isinstance(calibration, Percentile):
        return _percentile_rows(xb, float(calibration.percentile), spec.symmetric)
    return _mse_rows(xb, calibration, spec)


def calibrate_layout(
    x: jax.Array, layout: Layout, spec: QuantSpec, calibration: Calibration
) -> tuple[jax.Array, jax.Array]:
    """``(lo, hi)`` in the scale's shape; MinMax reduces in place (no transpose copy)."""
    if isinstance(calibration, MinMax):
        xs, red = layout.split_view(x)
        xs = xs.astype(jnp.float32)
        if spec.symmetric:
            amax = jnp.max(jnp.abs(xs), axis=red).reshape(layout.scale_shape)
            return -amax, amax
        lo = jnp.min(xs, axis=red).reshape(layout.scale_shape)
        return lo, jnp.max(xs, axis=red).reshape(layout.scale_shape)
    lo, hi = calibrate_rows(layout.to_blocks(x), spec, calibration)
    return layout.from_rows(lo), layout.from_rows(hi)


def calibrate(
    x: ArrayLike, spec: QuantSpec, *, calibration: Calibration = MINMAX
) -> tuple[jax.Array, jax.Array]:
    """Calibrates a weight range ``(lo, hi)`` per scale entry of ``spec``.

    Args:
      x: a float array.
      spec: the spec; its ``axes``/``group_size`` decide which entries share a range.
      calibration: ``MinMax()`` (absmax for symmetric grids, min/max otherwise),
        ``Percentile(percentile=...)`` or ``MSEClip(...)`` (per-entry search for
        the clip ratio with the lowest MSE).

    Returns:
      ``(lo, hi)``, float32 arrays of the QArray scale's shape.

    Raises:
      TypeError: ``x`` is not float, or ``spec``/``calibration`` have the wrong type.
      ValueError: ``x`` is empty or non-finite (``NonFiniteError``), or ``spec``
        does not fit ``x``'s shape.

    Example:
      >>> import jax.numpy as jnp
      >>> lo, hi = calibrate(jnp.array([[1.0, -4.0], [2.0, 0.5]]), QuantSpec(axes=(-1,)))
      >>> hi
      Array([[2., 4.]], dtype=float32)
    """
    check_spec(spec)
    check_calibration(calibration)
    x = check_input(x, where="calibrate")
    return calibrate_layout(x, make_layout(x.shape, spec), spec, calibration)
