"""Binary (XNOR-Net) and ternary (TWN) weights as ``QArray``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.quant._calibrate import check_input
from jaxzip.quant._qarray import QArray, make_layout
from jaxzip.quant._spec import QuantSpec


def _layout(x: jax.Array, axes: tuple[int, ...]):
    if isinstance(axes, int) or not isinstance(axes, (tuple, list)):
        raise TypeError(f"axes: expected a tuple of ints, got {axes!r}")
    return make_layout(x.shape, QuantSpec(bits=2, axes=tuple(axes)))


def _levels(values: jax.Array, alpha: jax.Array, bits: int, layout, x: jax.Array) -> QArray:
    """Signed levels ``values`` (int8) times a per-block ``alpha``, zero point 0."""
    return QArray(
        values=values.astype(jnp.int8),
        scale=alpha,
        zero_point=jnp.zeros(alpha.shape, jnp.int32),
        bits=bits,
        axes=layout.axes,
        dtype=np.dtype(x.dtype),
    )


def binarize(x: ArrayLike, *, axes: tuple[int, ...] = ()) -> QArray:
    """Binary weights ``sign(x) * alpha`` with ``alpha = mean(|x|)`` (XNOR-Net).

    ``x >= 0`` maps to +1 and ``x < 0`` to -1, so there are exactly two levels
    (``bits=1``; values are int8 ``±1``, zero point 0) and exact zeros become
    ``+alpha``: use :func:`ternarize` for pruned weights.

    Args:
      x: a float array.
      axes: axes with their own ``alpha`` (``(-1,)``: per output channel).

    Returns:
      A :class:`QArray` with ``bits=1``.

    Raises:
      TypeError: ``x`` is not float. ValueError: empty/non-finite ``x``, bad axes.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import dequantize
      >>> dequantize(binarize(jnp.array([0.5, -1.5, 1.0])))
      Array([ 1., -1.,  1.], dtype=float32)
    """
    x = check_input(x, "x", where="binarize")
    layout = _layout(x, axes)
    xb = layout.to_blocks(x.astype(jnp.float32))
    alpha = layout.from_rows(jnp.mean(jnp.abs(xb), axis=1))
    return _levels(jnp.where(x >= 0, 1, -1), alpha, 1, layout, x)


def ternarize(x: ArrayLike, *, axes: tuple[int, ...] = (), threshold: float = 0.7) -> QArray:
    """Ternary weights in ``{-alpha, 0, +alpha}`` (Ternary Weight Networks, Li et al.).

    ``delta = threshold * mean(|x|)``; entries with ``|x| > delta`` become
    ``sign(x)``, the rest 0; ``alpha`` is the mean of ``|x|`` over the entries
    above the threshold. Exact zeros (pruned weights) stay exactly zero.

    Args:
      x: a float array.
      axes: axes with their own ``delta`` and ``alpha`` (``(-1,)``: per channel).
      threshold: the factor on ``mean(|x|)`` (0.7 in the paper), >= 0.

    Returns:
      A :class:`QArray` with ``bits=2`` (values in ``{-1, 0, 1}``).

    Raises:
      TypeError: ``x`` is not float. ValueError: bad values or axes.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import dequantize
      >>> dequantize(ternarize(jnp.array([0.1, -2.0, 1.0, 0.0])))
      Array([ 0. , -1.5,  1.5,  0. ], dtype=float32)
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or threshold < 0:
        raise ValueError(f"threshold: expected a number >= 0, got {threshold!r}")
    x = check_input(x, "x", where="ternarize")
    layout = _layout(x, axes)
    xb = jnp.abs(layout.to_blocks(x.astype(jnp.float32)))
    delta = threshold * jnp.mean(xb, axis=1, keepdims=True)
    above = xb > delta
    n = jnp.sum(above, axis=1)
    alpha = jnp.sum(jnp.where(above, xb, 0.0), axis=1) / jnp.maximum(n, 1)
    alpha = layout.from_rows(jnp.where(alpha > 0, alpha, 1.0))
    delta_full = jnp.broadcast_to(layout.from_rows(delta[:, 0]), x.shape)
    return _levels(jnp.where(jnp.abs(x) > delta_full, jnp.sign(x), 0), alpha, 2, layout, x)
