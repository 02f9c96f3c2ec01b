"""Fake quantization for QAT: straight-through gradients and learned step size (LSQ)."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.quant._calibrate import check_input, scale_zero_point
from jaxzip.quant._qarray import expand, make_layout
from jaxzip.quant._quantize import check_key, resolve_range
from jaxzip.quant._spec import MINMAX, Calibration, QuantSpec, check_calibration, check_spec


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _ste(stochastic: bool, x, s, z, qmin, qmax, u):
    y = x / s
    r = jnp.floor(y + u) if stochastic else jnp.round(y)
    return (jnp.clip(r + z, qmin, qmax) - z) * s


def _ste_fwd(stochastic: bool, x, s, z, qmin, qmax, u):
    return _ste(stochastic, x, s, z, qmin, qmax, u), (x, s, z, qmin, qmax, u)


def _ste_bwd(stochastic: bool, res, g):
    x, s, z, qmin, qmax, u = res
    inside = (x >= (qmin - z) * s) & (x <= (qmax - z) * s)
    zero = jnp.zeros_like
    return jnp.where(inside, g, 0.0), zero(s), zero(z), zero(qmin), zero(qmax), zero(u)


_ste.defvjp(_ste_fwd, _ste_bwd)


def _grid(spec: QuantSpec, bits: Any) -> tuple[Any, Any]:
    """``(qmin, qmax)``: the spec's ints, or float arrays for a traced ``bits`` override."""
    if bits is None:
        return spec.qmin, spec.qmax
    if not isinstance(bits, jax.core.Tracer):
        b = np.asarray(bits)
        low = 2 if spec.symmetric else 1
        if b.shape != () or not np.issubdtype(b.dtype, np.integer) or not low <= int(b) <= 8:
            raise ValueError(f"bits: expected an integer scalar in {low}..8, got {bits!r}")
    b = jnp.asarray(bits, jnp.float32)
    half = 2.0 ** (b - 1)
    if spec.symmetric:
        return (-(half - 1), half - 1) if spec.signed else (jnp.ones_like(b), 2.0**b - 1)
    return (-half, half - 1) if spec.signed else (jnp.zeros_like(b), 2.0**b - 1)


def fake_quant(
    x: ArrayLike,
    spec: QuantSpec,
    *,
    calibration: Calibration = MINMAX,
    clip_ratio: ArrayLike = 1.0,
    fixed_range: tuple[ArrayLike, ArrayLike] | None = None,
    bits: ArrayLike | None = None,
    key: jax.Array | None = None,
) -> jax.Array:
    """Quantize-dequantize with a clipped straight-through gradient (for QAT).

    The forward pass equals ``dequantize(quantize(x, spec, ...))``. The gradient
    w.r.t. ``x`` is 1 inside the clip range ``[(qmin - zp) * scale,
    (qmax - zp) * scale]`` and 0 outside (``jax.custom_vjp``); the range, scale
    and zero point are treated as constants (no gradient). Exact zeros stay
    exactly zero for every spec (the zero point is an integer).

    Use it on weights (see :func:`fake_quant_params`) or on activations inside a
    model's forward pass with a static ``fixed_range`` from
    :func:`make_range_collector`.

    What can be vmapped: ``x``, ``clip_ratio``, ``fixed_range`` and ``bits``
    (a traced integer that overrides ``spec.bits``, so one call can sweep bit
    widths); ``spec`` itself is static.

    Args:
      x: a float array.
      spec: the quantization spec.
      calibration: how to calibrate the range from ``x`` (ignored with ``fixed_range``).
      clip_ratio: positive factor on the range (may be traced).
      fixed_range: a static ``(lo, hi)`` range broadcastable to the scale's shape.
      bits: optional integer scalar (may be traced) overriding ``spec.bits``.
      key: a PRNG key; required when ``spec.rounding == "stochastic"``.

    Returns:
      An array of ``x``'s shape and dtype holding quantized values.

    Raises:
      TypeError: ``x`` is not float; bad argument types.
      ValueError: empty or non-finite ``x``; ``bits`` out of range; missing key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> spec = QuantSpec(bits=2)
      >>> fake_quant(jnp.array([0.4, -1.0, 0.6]), spec)
      Array([ 0., -1.,  1.], dtype=float32)
      >>> jax.grad(lambda x: fake_quant(x, spec, fixed_range=(-1.0, 1.0)).sum())(
      ...     jnp.array([0.4, 2.0]))
      Array([1., 0.], dtype=float32)
    """
    check_spec(spec)
    check_calibration(calibration)
    check_key(spec, key, "fake_quant")
    x = check_input(x, "x", where="fake_quant")
    layout = make_layout(x.shape, spec)
    qmin, qmax = _grid(spec, bits)
    lo, hi = resolve_range(
        jax.lax.stop_gradient(x), layout, spec, calibration, clip_ratio, fixed_range
    )
    scale, zp = scale_zero_point(lo, hi, qmin, qmax, spec.symmetric)
    s = jax.lax.stop_gradient(expand(scale, layout.group_size, layout.group_axis))
    z = jax.lax.stop_gradient(expand(zp, layout.group_size, layout.group_axis))
    stochastic = spec.rounding == "stochastic"
    u = jax.random.uniform(key, x.shape, jnp.float32) if stochastic else jnp.zeros((), jnp.float32)
    qmin_a, qmax_a = jnp.asarray(qmin, jnp.float32), jnp.asarray(qmax, jnp.float32)
    out = _ste(stochastic, x.astype(jnp.float32), s, z, qmin_a, qmax_a, u)
    return out.astype(x.dtype)


# --- LSQ ---------------------------------------------------------------------


def _lsq_grid(spec: QuantSpec) -> tuple[int, int]:
    return (spec.qmin, spec.qmax) if spec.signed else (0, 2**spec.bits - 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _lsq(x, s, qmin: float, qmax: float, gscale: float):
    return jnp.clip(jnp.round(x / s), qmin, qmax) * s


def _lsq_fwd(x, s, qmin: float, qmax: float, gscale: float):
    return _lsq(x, s, qmin, qmax, gscale), (x, s)


def _lsq_bwd(qmin: float, qmax: float, gscale: float, res, g):
    x, s = res
    y = x / s
    below, above = y < qmin, y > qmax
    inside = ~(below | above)
    ds = jnp.where(below, qmin, jnp.where(above, qmax, jnp.round(y) - y))
    return jnp.where(inside, g, 0.0), g * ds * gscale


_lsq.defvjp(_lsq_fwd, _lsq_bwd)


def lsq_fake_quant(x: ArrayLike, step: ArrayLike, spec: QuantSpec) -> jax.Array:
    """Fake quantization with a learned step size (LSQ, Esser et al. 2020).

    Forward: ``clip(round(x / step), qmin, qmax) * step`` with zero point 0 (the
    grid is the spec's for signed specs and ``0 .. 2^b-1`` for unsigned ones).
    Gradients: w.r.t. ``x`` 1 inside the grid and 0 outside; w.r.t. ``step``
    ``round(x/s) - x/s`` inside, ``qmin`` below, ``qmax`` above, times the gradient
    scale ``1 / sqrt(n * qmax)`` with ``n`` the number of elements per step.

    Args:
      x: a float array.
      step: positive step sizes, broadcastable to the spec's scale shape for ``x``
        (see :func:`lsq_init_step`); a trainable parameter.
      spec: bits, signedness and granularity (``rounding`` must be "nearest").

    Returns:
      The fake-quantized array, ``x``'s shape and dtype.

    Raises:
      TypeError: ``x`` is not float.
      ValueError: ``step`` does not fit the scale shape; stochastic rounding.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> spec = QuantSpec(bits=3)
      >>> lsq_fake_quant(jnp.array([0.26, -0.9]), jnp.float32(0.25), spec)
      Array([ 0.25, -0.75], dtype=float32)
    """
    check_spec(spec)
    if spec.rounding != "nearest":
        raise ValueError(f"lsq_fake_quant: needs rounding='nearest', got {spec.rounding!r}")
    x = check_input(x, "x", where="lsq_fake_quant")
    layout = make_layout(x.shape, spec)
    step = jnp.asarray(step, jnp.float32)
    try:
        step_b = jnp.broadcast_to(step, layout.scale_shape)
    except ValueError:
        raise ValueError(
            f"step: shape {step.shape} does not broadcast to the scale shape {layout.scale_shape}"
        ) from None
    qmin, qmax = _lsq_grid(spec)
    s_full = jnp.broadcast_to(expand(step_b, layout.group_size, layout.group_axis), x.shape)
    gscale = 1.0 / math.sqrt(layout.block_size * qmax)
    out = _lsq(x.astype(jnp.float32), s_full, float(qmin), float(qmax), gscale)
    return out.astype(x.dtype)


def lsq_init_step(x: ArrayLike, spec: QuantSpec) -> jax.Array:
    """The LSQ initial step size ``2 * mean(|x|) / sqrt(qmax)`` per scale entry.

    Args:
      x: a float array (weights, or a calibration batch of activations).
      spec: the spec whose granularity decides which elements share a step.

    Returns:
      float32 steps in the scale's shape.

    Example:
      >>> import jax.numpy as jnp
      >>> lsq_init_step(jnp.array([1.0, -3.0]), QuantSpec(bits=3))
      Array([2.309401], dtype=float32)
    """
    check_spec(spec)
    x = check_input(x, "x", where="lsq_init_step")
    layout = make_layout(x.shape, spec)
    mean_abs = jnp.mean(jnp.abs(layout.to_blocks(x).astype(jnp.float32)), axis=1)
    step = 2.0 * mean_abs / math.sqrt(_lsq_grid(spec)[1])
    return layout.from_rows(jnp.where(step > 0, step, 1.0))
