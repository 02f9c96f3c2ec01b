"""``QArray``: a quantized array as a pytree, and the layout of its scales."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxzip.quant._spec import QuantSpec


@struct.dataclass
class QArray:
    """A quantized array: integer values with a scale and a zero point.

    Invariant: ``x ≈ (values - zero_point) * expand(scale)``, computed in float,
    where ``expand`` repeats each entry of ``scale`` (and of ``zero_point``)
    ``group_size`` times along ``group_axis`` (a no-op without groups) and then
    broadcasts it against ``values``. ``scale`` and ``zero_point`` have
    ``values.ndim`` dimensions: the size of each axis in ``axes``, the number of
    groups on ``group_axis``, and 1 elsewhere. Inside the clip range,
    ``|dequantize(q) - x| <= scale / 2`` for round-to-nearest.

    ``values``, ``scale`` and ``zero_point`` are pytree children; ``bits``,
    ``axes``, ``group_size``, ``group_axis`` and ``dtype`` (the float dtype to
    dequantize to) are static metadata. Under ``jax.vmap`` the children gain a
    leading batch axis that the static ``axes`` do not know about: index a
    batched ``QArray`` (``jax.tree.map(lambda a: a[i], q)``) before dequantizing.

    Attributes:
      values: ``int8`` or ``uint8`` integers, the array's shape.
      scale: float32 step sizes (positive).
      zero_point: int32 zero points, ``scale``'s shape.
      bits: the bit width; values lie in the spec's ``qmin..qmax``.
      axes: the (non-negative) axes with their own scale.
      group_size: the group size along ``group_axis``, or None.
      group_axis: the (non-negative) grouped axis, or None.
      dtype: the float dtype :func:`dequantize` returns.

    Example:
      >>> import jax.numpy as jnp
      >>> q = QArray(values=jnp.array([-2, 0, 3], jnp.int8), scale=jnp.array([0.5]),
      ...            zero_point=jnp.array([0], jnp.int32), bits=4, axes=(0,))
      >>> dequantize(q)
      Array([-1. ,  0. ,  1.5], dtype=float32)
    """

    values: jax.Array
    scale: jax.Array
    zero_point: jax.Array
    bits: int = struct.field(pytree_node=False)
    axes: tuple[int, ...] = struct.field(pytree_node=False, default=())
    group_size: int | None = struct.field(pytree_node=False, default=None)
    group_axis: int | None = struct.field(pytree_node=False, default=None)
    dtype: Any = struct.field(pytree_node=False, default=np.dtype(np.float32))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the (de)quantized array."""
        return tuple(self.values.shape)

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)


def expand(a: jax.Array, group_size: int | None, group_axis: int | None) -> jax.Array:
    """Repeats per-group entries ``group_size`` times along ``group_axis``."""
    if group_size is None:
        return a
    return jnp.repeat(a, group_size, axis=group_axis)


def dequantize(q: QArray) -> jax.Array:
    """Returns ``(values - zero_point) * scale`` in ``q.dtype`` (see :class:`QArray`).

    Args:
      q: a :class:`QArray`, or a ``KMeansArray`` (decoded from its codebook).

    Returns:
      The float array.

    Raises:
      TypeError: ``q`` is not a quantized array.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import QuantSpec, quantize
      >>> jnp.round(dequantize(quantize(jnp.array([0.5, -1.0, 0.25]), QuantSpec(bits=3))), 4)
      Array([ 0.6667, -1.    ,  0.3333], dtype=float32)
    """
    if not isinstance(q, QArray):
        decode = getattr(q, "decode", None)
        if decode is None:
            raise TypeError(f"dequantize: expected a QArray or KMeansArray, got {type(q).__name__}")
        return decode()
    scale = expand(q.scale, q.group_size, q.group_axis)
    zp = expand(q.zero_point, q.group_size, q.group_axis)
    diff = q.values.astype(jnp.int32) - zp
    return (diff.astype(jnp.float32) * scale).astype(q.dtype)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the scales of a spec live for one array shape (axes normalized)."""

    shape: tuple[int, ...]
    axes: tuple[int, ...]
    group_size: int | None
    group_axis: int | None

    @property
    def scale_shape(self) -> tuple[int, ...]:
        out = []
        for i, n in enumerate(self.shape):
            if i in self.axes:
                out.append(n)
            elif i == self.group_axis:
                out.append(n // self.group_size)
            else:
                out.append(1)
        return tuple(out)

    def split_view(self, x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
        """``x`` with the group axis split (a free reshape) and the axes sharing a scale."""
        shape, kept = list(self.shape), list(self.axes)
        if self.group_axis is not None:
            ga, g = self.group_axis, self.group_size
            shape = [*shape[:ga], shape[ga] // g, g, *shape[ga + 1 :]]
            kept = [a if a < ga else a + 1 for a in kept] + [ga]
            x = x.reshape(shape)
        return x, tuple(i for i in range(len(shape)) if i not in kept)

    def to_blocks(self, x: jax.Array) -> jax.Array:
        """Reshapes ``x`` to ``(C, N)``: one row per scale entry, in scale order."""
        x, rest = self.split_view(x)
        kept = [i for i in range(x.ndim) if i not in rest]
        c = math.prod(x.shape[i] for i in kept)
        return jnp.transpose(x, kept + list(rest)).reshape(c, -1)

    def from_rows(self, r: jax.Array) -> jax.Array:
        """Reshapes a per-row ``(C,)`` array to ``scale_shape``."""
        return r.reshape(self.scale_shape)

    @property
    def block_size(self) -> int:
        """The number of elements that share one scale."""
        return math.prod(self.shape) // max(1, math.prod(self.scale_shape))


def _norm_axis(a: int, ndim: int, what: str, shape: tuple[int, ...]) -> int:
    if not -ndim <= a < ndim:
        raise ValueError(f"{what}={a} is out of range for an array of shape {shape}")
    return a % ndim


def make_layout(shape: tuple[int, ...], spec: QuantSpec) -> Layout:
    """Normalizes ``spec``'s axes for ``shape``; raises ``ValueError`` if they do not fit."""
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    axes = tuple(_norm_axis(a, ndim, "spec.axes", shape) for a in spec.axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"spec.axes={spec.axes} repeat an axis of an array of shape {shape}")
    ga = None
    if spec.group_size is not None:
        ga = _norm_axis(spec.group_axis, ndim, "spec.group_axis", shape)
        if ga in axes:
            raise ValueError(f"spec.group_axis={spec.group_axis} must not be one of axes={axes}")
        if shape[ga] % spec.group_size:
            raise ValueError(
                f"spec.group_size={spec.group_size} does not divide axis {ga} "
                f"of size {shape[ga]} (shape {shape})"
            )
    return Layout(shape, tuple(sorted(axes)), spec.group_size, ga)
