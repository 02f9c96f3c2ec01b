"""Integer inference: int8 operands, int32 accumulation, float rescaling."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxzip.quant._qarray import QArray


def _as_int8(q: QArray, what: str) -> tuple[jax.Array, jax.Array]:
    """``(values, zero_point)`` as int8 / int32 with the same differences.

    8-bit unsigned values are shifted by -128 (and so is the zero point), so
    both operands of the integer product are int8.
    """
    if not isinstance(q, QArray):
        raise TypeError(f"{what}: expected a QArray, got {type(q).__name__}")
    if q.group_size is not None:
        raise ValueError(f"{what}: grouped QArrays (group_size={q.group_size}) are not supported")
    v, z = q.values, q.zero_point.astype(jnp.int32)
    if v.dtype == jnp.uint8:
        if q.bits == 8:
            return (v.astype(jnp.int32) - 128).astype(jnp.int8), z - 128
        return v.astype(jnp.int8), z
    if v.dtype != jnp.int8:
        raise TypeError(f"{what}: values must be int8 or uint8, got {v.dtype}")
    return v, z


def _rescale(acc: jax.Array, sx: jax.Array, sw: jax.Array, bias: ArrayLike | None) -> jax.Array:
    out = acc.astype(jnp.float32) * sx * sw
    return out if bias is None else out + jnp.asarray(bias, jnp.float32)


def int_dense(x_q: QArray, w_q: QArray, *, bias: ArrayLike | None = None) -> jax.Array:
    """``dequantize(x_q) @ dequantize(w_q) + bias`` computed with int8 × int8 → int32.

    ``sum((xv - zx) * (wv - zw)) = xv·wv - zw·Σxv - zx·Σwv + K·zx·zw``, all in
    int32 (``lax.dot_general(..., preferred_element_type=int32)``), then scaled
    by ``sx * sw`` in float32. The accumulation is exact; only the final
    rescale rounds.

    Args:
      x_q: activations ``(..., K)``; per-tensor, or with scales on leading axes
        (not on the contraction axis).
      w_q: weights ``(K, N)``; per-tensor or per-output-channel (``axes=(1,)``).
      bias: optional float ``(N,)``.

    Returns:
      float32 ``(..., N)``.

    Raises:
      TypeError: operands are not QArrays of int8/uint8 values.
      ValueError: shapes do not match, or scales lie on the contraction axis.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import QuantSpec, quantize
      >>> x = quantize(jnp.array([[1.0, -2.0]]), QuantSpec(bits=8))
      >>> w = quantize(jnp.array([[0.5, 1.0], [0.25, -1.0]]), QuantSpec(bits=8, axes=(1,)))
      >>> [round(v, 3) for v in int_dense(x, w)[0].tolist()]
      [0.0, 3.008]
    """
    xv, zx = _as_int8(x_q, "x_q")
    wv, zw = _as_int8(w_q, "w_q")
    if w_q.ndim != 2 or x_q.ndim < 1 or x_q.shape[-1] != w_q.shape[0]:
        raise ValueError(
            f"int_dense: expected x (..., K) and w (K, N), got {x_q.shape} and {w_q.shape}"
        )
    if x_q.ndim - 1 in x_q.axes or 0 in w_q.axes:
        raise ValueError(
            "int_dense: scales must not lie on the contraction axis; got "
            f"x axes {x_q.axes}, w axes {w_q.axes}"
        )
    k = x_q.shape[-1]
    dims = (((xv.ndim - 1,), (0,)), ((), ()))
    acc = lax.dot_general(xv, wv, dims, preferred_element_type=jnp.int32)
    zw_row = zw.reshape(-1)  # (N,) or (1,)
    xsum = jnp.sum(xv, axis=-1, keepdims=True, dtype=jnp.int32)  # (..., 1)
    wsum = jnp.sum(wv, axis=0, dtype=jnp.int32)  # (N,)
    acc = acc - zw_row * xsum - zx * wsum + k * zx * zw_row
    return _rescale(acc, x_q.scale, w_q.scale.reshape(-1), bias)


def int_conv(
    x_q: QArray,
    w_q: QArray,
    *,
    strides: Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = "VALID",
    bias: ArrayLike | None = None,
) -> jax.Array:
    """A 2-D NHWC × HWIO convolution with int8 operands and int32 accumulation.

    Padding is done in the integer domain with the activation zero point (so a
    padded entry means 0.0), then ``lax.conv_general_dilated`` runs with
    ``preferred_element_type=int32``; zero-point corrections and the float
    rescale follow, as in :func:`int_dense`.

    Args:
      x_q: activations ``(N, H, W, C)``, per-tensor.
      w_q: an HWIO kernel, per-tensor or per-output-channel (``axes=(3,)``).
      strides: window strides ``(sh, sw)``.
      padding: ``"VALID"``, ``"SAME"`` or explicit ``((lo, hi), (lo, hi))``.
      bias: optional float ``(O,)``.

    Returns:
      float32 ``(N, H', W', O)``.

    Raises:
      TypeError: operands are not QArrays of int8/uint8 values.
      ValueError: shapes or granularity not supported.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import QuantSpec, quantize
      >>> x = quantize(jnp.ones((1, 3, 3, 1)), QuantSpec(bits=8))
      >>> w = quantize(jnp.full((2, 2, 1, 1), 0.5), QuantSpec(bits=8, axes=(3,)))
      >>> int_conv(x, w)[0, :, :, 0]
      Array([[2., 2.],
             [2., 2.]], dtype=float32)
    """
    xv, zx = _as_int8(x_q, "x_q")
    wv, zw = _as_int8(w_q, "w_q")
    if x_q.ndim != 4 or w_q.ndim != 4 or x_q.shape[3] != w_q.shape[2]:
        raise ValueError(
            f"int_conv: expected x (N, H, W, C) and w (H, W, C, O), got {x_q.shape} and {w_q.shape}"
        )
    if x_q.axes or not set(w_q.axes) <= {3}:
        raise ValueError(
            "int_conv: x must be per-tensor and w per-tensor or per-output-channel; got "
            f"x axes {x_q.axes}, w axes {w_q.axes}"
        )
    strides = tuple(int(s) for s in strides)
    window = w_q.shape[:2]
    if isinstance(padding, str):
        if padding not in ("VALID", "SAME"):
            raise ValueError(f"int_conv: padding must be 'VALID', 'SAME' or pairs, got {padding!r}")
        pads = lax.padtype_to_pads(x_q.shape[1:3], window, strides, padding)
    else:
        pads = [tuple(int(a) for a in p) for p in padding]
    zx_s = zx.reshape(())
    xv = jnp.pad(xv, ((0, 0), *pads, (0, 0)), constant_values=zx_s.astype(xv.dtype))
    dn = ("NHWC", "HWIO", "NHWC")
    conv = lambda a, b: lax.conv_general_dilated(  # noqa: E731
        a, b, strides, "VALID", dimension_numbers=dn, preferred_element_type=jnp.int32
    )
    acc = conv(xv, wv)
    k = window[0] * window[1] * w_q.shape[2]
    zw_row = zw.reshape(-1)
    xsum = conv(xv, jnp.ones((*window, w_q.shape[2], 1), jnp.int8))  # (N, H', W', 1)
    wsum = jnp.sum(wv, axis=(0, 1, 2), dtype=jnp.int32)  # (O,)
    acc = acc - zw_row * xsum - zx_s * wsum + k * zx_s * zw_row
    return _rescale(acc, x_q.scale.reshape(()), w_q.scale.reshape(-1), bias)
