"""``KernelLayout``: which axes of a kernel are contracted with the activation.

A kernel's *input* axes are the ones a ``dot_general`` or convolution contracts
with the activation (for a conv: the input-feature axis and the spatial window
axes); its *output* axes are all the others. :func:`to_matrix` views any kernel
as the ``(n_in, n_out)`` matrix ``y = x @ W`` of that product, and
:func:`from_matrix` is its exact inverse.

The matrix ordering, which the compression methods and the calibration
statistics of :mod:`jaxzip.calib` share:

* row ``r`` of ``to_matrix(w, layout)`` is the multi-index over ``in_axes``
  (taken in ascending axis order) flattened row-major, so for an HWIO conv
  kernel the rows run over ``(h, w, c_in)`` with ``c_in`` fastest;
* column ``c`` is the multi-index over ``out_axes`` (ascending), row-major.

Activation rows passed to hooks and summed into ``XᵀX`` use the same row order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxzip._types import Array

_OPS = ("dot_general", "conv")


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelLayout:
    """The input (contracted) and output axes of one kernel, as the model uses it.

    Args:
      shape: the kernel's shape.
      in_axes: the kernel axes contracted with the activation, ascending and
        non-negative (Dense ``(in, out)``: ``(0,)``; HWIO conv: ``(0, 1, 2)``;
        an attention output kernel ``(heads, head_dim, out)``: ``(0, 1)``).
      out_axes: the other axes, ascending. ``in_axes + out_axes`` covers every
        axis exactly once.
      op: ``"dot_general"`` or ``"conv"``: the operation that consumes the
        kernel (informational).
      layer_axis: for a stack of layers that a ``scan`` slices (``nn.scan``,
        ``jax.lax.scan`` over stacked params), the stacked axis: one of the
        output axes (each layer has its own output channels); None otherwise.
        Calibration treats each layer's slice as a kernel of its own
        (:meth:`layer_slice`).

    Raises:
      ValueError: the axes do not partition ``range(len(shape))``, are not
        ascending, or ``op`` is unknown.
      TypeError: a value has the wrong type.

    Example:
      >>> lay = KernelLayout(shape=(3, 3, 4, 8), in_axes=(0, 1, 2), out_axes=(3,), op="conv")
      >>> (lay.n_in, lay.n_out, lay.quant_axes(), lay.group_axis())
      (36, 8, (3,), 2)
    """

    shape: tuple[int, ...]
    in_axes: tuple[int, ...]
    out_axes: tuple[int, ...]
    op: str = "dot_general"
    layer_axis: int | None = None

    def __post_init__(self) -> None:
        for name in ("shape", "in_axes", "out_axes"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(_is_int(v) for v in value):
                raise TypeError(f"KernelLayout: {name} must be a tuple of ints, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if any(d < 0 for d in self.shape):
            raise ValueError(f"KernelLayout: shape must be non-negative, got {self.shape}")
        for name in ("in_axes", "out_axes"):
            axes = getattr(self, name)
            if list(axes) != sorted(set(axes)):
                raise ValueError(
                    f"KernelLayout: {name} must be strictly ascending, got {axes} "
                    f"(shape {self.shape})"
                )
        if sorted(self.in_axes + self.out_axes) != list(range(len(self.shape))):
            raise ValueError(
                f"KernelLayout: in_axes {self.in_axes} and out_axes {self.out_axes} must "
                f"partition the axes 0..{len(self.shape) - 1} of shape {self.shape}"
            )
        if not self.in_axes:
            raise ValueError(f"KernelLayout: in_axes must not be empty (shape {self.shape})")
        if self.op not in _OPS:
            raise ValueError(f"KernelLayout: op must be one of {_OPS}, got {self.op!r}")
        if self.layer_axis is not None and (
            not _is_int(self.layer_axis) or self.layer_axis not in self.out_axes
        ):
            raise ValueError(
                f"KernelLayout: layer_axis must be None or one of the out_axes {self.out_axes}, "
                f"got {self.layer_axis!r}"
            )

    @property
    def layers(self) -> int | None:
        """The number of layers in a stack (the size of ``layer_axis``), or None."""
        return None if self.layer_axis is None else self.shape[self.layer_axis]

    def layer_slice(self) -> KernelLayout:
        """The layout of one layer of a stack: ``layer_axis`` removed, the others renumbered.

        Example:
          >>> lay = KernelLayout(shape=(3, 4, 5), in_axes=(1,), out_axes=(0, 2), layer_axis=0)
          >>> lay.layer_slice()
          KernelLayout(shape=(4, 5), in_axes=(0,), out_axes=(1,), op='dot_general', layer_axis=None)
        """
        a = self.layer_axis
        if a is None:
            raise ValueError(f"KernelLayout: not a stack of layers (shape {self.shape})")

        def renumber(axes: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(b - (b > a) for b in axes if b != a)

        shape = self.shape[:a] + self.shape[a + 1 :]
        return KernelLayout(
            shape=shape,
            in_axes=renumber(self.in_axes),
            out_axes=renumber(self.out_axes),
            op=self.op,
        )

    @property
    def ndim(self) -> int:
        """The kernel's number of axes."""
        return len(self.shape)

    @property
    def n_in(self) -> int:
        """The product of the input axes' sizes: the rows of :func:`to_matrix`."""
        return math.prod(self.shape[a] for a in self.in_axes)

    @property
    def n_out(self) -> int:
        """The product of the output axes' sizes: the columns of :func:`to_matrix`."""
        return math.prod(self.shape[a] for a in self.out_axes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        """The sizes of the input axes, in ``in_axes`` order."""
        return tuple(self.shape[a] for a in self.in_axes)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The sizes of the output axes, in ``out_axes`` order."""
        return tuple(self.shape[a] for a in self.out_axes)

    def quant_axes(self) -> tuple[int, ...]:
        """The axes that keep their own scale for per-output-channel quantization.

        Pass as ``jz.quant.QuantSpec(axes=layout.quant_axes())``: one scale per
        output channel (every output axis keeps its own scale).
        """
        return self.out_axes

    def group_axis(self) -> int:
        """The axis along which input groups are formed: the last (fastest) input axis.

        Use it as ``QuantSpec(group_axis=...)`` for per-group scales and as
        ``jz.prune.NByM(n, m, axis=...)`` for N:M groups: consecutive entries
        along it are consecutive rows of :func:`to_matrix` (for a Dense kernel
        the input features, for an HWIO conv the input channels).
        """
        return self.in_axes[-1]

    def check_group(self, size: int, name: str, path: str = "") -> None:
        """Raises ``ValueError`` unless groups of ``size`` tile the :meth:`group_axis`.

        Per-group scales and N:M groups run along the last input axis, so its
        length must be a multiple of ``size``; ``name`` says whose size it is
        (``"group_size"``, ``"NByM m"``), and the message lists the sizes that do.

        Example:
          >>> lay = KernelLayout(shape=(3, 4, 6), in_axes=(0, 1), out_axes=(2,))
          >>> lay.check_group(2, "group_size", "w")
          >>> try:
          ...     lay.check_group(3, "group_size", "w")
          ... except ValueError as e:
          ...     print(str(e).split("; ")[1])
          sizes that do: [1, 2, 4]
        """
        n = self.shape[self.group_axis()]
        if n % size:
            ok = [d for d in range(1, n + 1) if n % d == 0]
            raise ValueError(
                f"{path}: {name}={size} must divide the size {n} of the kernel's last input "
                f"axis {self.group_axis()} (shape {self.shape}); sizes that do: {ok}"
            )

    def check(self, w: Any, path: str = "") -> None:
        """Raises ``ValueError`` if ``w``'s shape is not this layout's shape."""
        shape = tuple(np.shape(w))
        if shape != self.shape:
            where = f" at {path!r}" if path else ""
            raise ValueError(
                f"kernel{where}: expected shape {self.shape} (from its layout), got {shape}"
            )


def to_matrix(w: Any, layout: KernelLayout) -> Array:
    """Views a kernel as the ``(n_in, n_out)`` matrix of ``y = x @ W``.

    The input axes are moved to the front in ascending order and flattened
    row-major (the rows), the output axes follow, flattened row-major (the
    columns); see the module docstring for the exact order.

    Args:
      w: the kernel, of shape ``layout.shape``.
      layout: its :class:`KernelLayout`.

    Returns:
      A ``(layout.n_in, layout.n_out)`` array with ``w``'s dtype.

    Raises:
      ValueError: ``w``'s shape differs from ``layout.shape``.

    Example:
      >>> import jax.numpy as jnp
      >>> lay = KernelLayout(shape=(2, 3, 4), in_axes=(0, 2), out_axes=(1,))
      >>> w = jnp.arange(24.0).reshape(2, 3, 4)
      >>> m = to_matrix(w, lay)
      >>> m.shape, bool(m[5, 1] == w[1, 1, 1])
      ((8, 3), True)
      >>> bool((from_matrix(m, lay) == w).all())
      True
    """
    layout.check(w)
    w = jnp.asarray(w)
    moved = jnp.transpose(w, layout.in_axes + layout.out_axes)
    return moved.reshape(layout.n_in, layout.n_out)


def from_matrix(m: Any, layout: KernelLayout) -> Array:
    """The exact inverse of :func:`to_matrix`: a ``(n_in, n_out)`` matrix back to the kernel.

    Args:
      m: a ``(layout.n_in, layout.n_out)`` matrix.
      layout: the kernel's :class:`KernelLayout`.

    Returns:
      An array of shape ``layout.shape`` with ``m``'s dtype.

    Raises:
      ValueError: ``m``'s shape is not ``(n_in, n_out)``.

    Example:
      >>> import jax.numpy as jnp
      >>> lay = KernelLayout(shape=(3, 2), in_axes=(1,), out_axes=(0,))
      >>> from_matrix(jnp.array([[1, 2, 3], [4, 5, 6]]), lay)
      Array([[1, 4],
             [2, 5],
             [3, 6]], dtype=int32)
    """
    shape = tuple(np.shape(m))
    if shape != (layout.n_in, layout.n_out):
        raise ValueError(
            f"from_matrix: expected a ({layout.n_in}, {layout.n_out}) matrix for a kernel of "
            f"shape {layout.shape}, got shape {shape}"
        )
    order = layout.in_axes + layout.out_axes
    moved = jnp.reshape(jnp.asarray(m), tuple(layout.shape[a] for a in order))
    return jnp.transpose(moved, tuple(int(i) for i in np.argsort(order)))


@dataclasses.dataclass(frozen=True)
class matmul_where:
    """A ``where=`` predicate selecting exactly the kernels in ``layouts``.

    "Weights consumed by a matmul or conv": pass the result of
    :func:`trace_layouts` and use it wherever jaxzip takes ``where=``
    (``jz.paths.select``, ``jz.prune.*_mask``, ``jz.quant.quantize_params``
    rules). Embeddings read by a gather, biases and norm scales are not selected.

    Args:
      layouts: a mapping from path to :class:`KernelLayout`, or an iterable of paths.

    Example:
      >>> import jaxzip as jz
      >>> params = {"Dense_0": {"kernel": 1.0, "bias": 0.0}}
      >>> lay = {"Dense_0/kernel": KernelLayout(shape=(1, 1), in_axes=(0,), out_axes=(1,))}
      >>> jz.paths.selected_paths(params, matmul_where(lay))
      ['Dense_0/kernel']
    """

    paths: frozenset[str]

    def __init__(self, layouts: Mapping[str, KernelLayout] | Any) -> None:
        if isinstance(layouts, str):
            raise TypeError(
                "matmul_where: expected a mapping of path -> KernelLayout or an iterable of "
                f"paths, got the string {layouts!r}"
            )
        paths = frozenset(layouts.keys() if isinstance(layouts, Mapping) else layouts)
        for p in paths:
            if not isinstance(p, str):
                raise TypeError(f"matmul_where: paths must be strings, got {p!r}")
        object.__setattr__(self, "paths", paths)

    def __call__(self, path: str, leaf: Any) -> bool:
        return path in self.paths

    def __repr__(self) -> str:
        shown = ", ".join(repr(p) for p in sorted(self.paths)[:4])
        more = f", ... ({len(self.paths) - 4} more)" if len(self.paths) > 4 else ""
        return f"matmul_where([{shown}{more}])"
