"""Quantizing traced kernels: the spec of a one-shot method and its ``QArray`` in kernel shape.

The one-shot methods (GPTQ here, SparseGPT's joint quantization in
``jaxzip.prune``) work on each kernel as the ``(n_in, n_out)`` matrix of
``y = x @ W`` (:func:`jaxzip.layout.to_matrix`): :func:`kernel_spec` checks a
user's spec and gives its matrix form, :func:`kernel_qarray` turns the matrix
result back into a :class:`QArray` of the kernel's shape and axes, and
:func:`stack_layers` joins the per-layer results of a stack of layers;
:func:`run_hessian_method` is the calibration driver call they share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Unpack

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import calib as jz_calib
from jaxzip.layout import KernelLayout, from_matrix
from jaxzip.quant._gptq import check_gptq_spec
from jaxzip.quant._kmeans import KMeansArray
from jaxzip.quant._qarray import QArray
from jaxzip.quant._spec import QuantSpec, check_spec


def kernel_spec(spec: Any, name: str) -> QuantSpec:
    """Checks a one-shot method's spec for traced kernels; returns its ``(n_in, n_out)`` form.

    Granularity follows each kernel's traced layout: ``axes=()`` per tensor,
    ``axes=(-1,)`` one scale per output channel, plus ``group_size`` for groups
    along the kernel's last input axis (``group_axis`` left at -2; the matrix
    form has ``group_axis=0``). Bits 2..8, rounding to nearest.

    Args:
      spec: a :class:`QuantSpec`.
      name: what begins the error messages (the method, or the method and rule).

    Returns:
      The spec for the kernels' ``(n_in, n_out)`` matrices.

    Raises:
      ValueError: other axes, a moved ``group_axis``, bits outside 2..8, a
        rounding other than nearest.
      TypeError: ``spec`` is not a :class:`QuantSpec`.

    Example:
      >>> kernel_spec(QuantSpec(bits=4, axes=(-1,), group_size=8), "gptq").group_axis
      0
    """
    check_spec(spec, f"{name}: spec")
    if spec.axes not in ((), (-1,)):
        raise ValueError(
            f"{name}: spec.axes must be () (per-tensor) or (-1,) (one scale per output "
            f"channel: per entry of each kernel's traced out_axes), got {spec.axes}"
        )
    if spec.group_size is not None and spec.group_axis != -2:
        raise ValueError(
            f"{name}: leave spec.group_axis at -2; groups run along each kernel's traced "
            f"input axis (layout.group_axis()), got group_axis={spec.group_axis}"
        )
    mspec = dataclasses.replace(spec, group_axis=0) if spec.group_size is not None else spec
    check_gptq_spec(mspec, spec.group_size or 1, name)
    return mspec


def kernel_qarray(q: QArray, layout: KernelLayout, *, dtype: Any = None) -> QArray:
    """A matrix-space ``QArray (n_in, n_out)`` as a ``QArray`` in the kernel's shape and axes.

    ``dtype`` is what :func:`dequantize` will return (default: ``q``'s), e.g.
    the float kernel's dtype.

    Per output channel: ``axes = out_axes``. Per group of ``g`` rows: groups run
    along the last input axis (``layout.group_axis()``), so ``axes`` are the
    output axes plus the other input axes, ``group_axis`` the last input axis.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import quantize
      >>> lay = KernelLayout(shape=(2, 3, 4), in_axes=(0, 1), out_axes=(2,))
      >>> q = kernel_qarray(quantize(jnp.ones((6, 4)), QuantSpec(bits=4, axes=(-1,))), lay)
      >>> q.shape, q.axes, q.scale.shape
      ((2, 3, 4), (2,), (1, 1, 4))
    """
    values = from_matrix(q.values, layout)
    if q.group_size is not None:
        g = q.group_size
        last = layout.in_axes[-1]
        shape = tuple(n // g if a == last else n for a, n in enumerate(layout.shape))
        axes = tuple(sorted(layout.out_axes + layout.in_axes[:-1]))
        gs, ga = g, last
    elif q.axes:
        shape = tuple(1 if a in layout.in_axes else n for a, n in enumerate(layout.shape))
        axes, gs, ga = layout.out_axes, None, None
    else:
        shape, axes, gs, ga = (1,) * len(layout.shape), (), None, None
    sl = dataclasses.replace(layout, shape=shape)
    return QArray(
        values=values,
        scale=from_matrix(q.scale, sl),
        zero_point=from_matrix(q.zero_point, sl),
        bits=q.bits,
        axes=axes,
        group_size=gs,
        group_axis=ga,
        dtype=q.dtype if dtype is None else np.dtype(dtype),
    )


def layout_spec(
    layout: KernelLayout,
    *,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = True,
    name: str = "layout_spec",
) -> QuantSpec:
    """The spec that quantizes one traced kernel in its own axes (for :func:`quantize_params`).

    One scale (and zero point) per output channel: the kernel's ``layout.quant_axes()``;
    with ``group_size``, per group of that many inputs along its last input axis
    (``layout.group_axis()``), the other input axes keeping their own scales (as
    :func:`gptq` groups them: an attention output projection ``(heads, head_dim, out)``
    gets one scale per head and output). An axis no longer than ``group_size`` is one
    group (a head of 48 inputs under groups of 64); a longer one that ``group_size`` does
    not divide is an error.

    Raises:
      ValueError: ``group_size`` < 1, or longer than the axis without dividing it (the
        message names ``name``, the axis size and the sizes that do).

    Example:
      >>> from jaxzip.layout import KernelLayout
      >>> out = KernelLayout(shape=(4, 48, 192), in_axes=(0, 1), out_axes=(2,), op="dot_general")
      >>> s = layout_spec(out, bits=4, group_size=64)
      >>> s.axes, s.group_size, s.group_axis
      ((0, 2), 48, 1)
    """
    group = None
    if group_size is not None:
        size = layout.shape[layout.group_axis()]
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"{name}: group_size must be an int >= 1 or None, got {group_size!r}")
        if size > group_size and size % group_size:
            fits = [d for d in range(2, size + 1) if size % d == 0]
            raise ValueError(
                f"{name}: group_size {group_size} does not divide the {size} inputs along the "
                f"kernel's last input axis; sizes that do: {fits} (or no groups)"
            )
        group = min(size, group_size)
        others = tuple(a for a in layout.in_axes if a != layout.group_axis())
        axes = tuple(sorted(layout.quant_axes() + others))
    return QuantSpec(
        bits=bits,
        axes=layout.quant_axes() if group is None else axes,
        symmetric=symmetric,
        group_size=group,
        group_axis=layout.group_axis(),
    )


def _stack_qarrays(qs: list[QArray], axis: int) -> QArray:
    first = qs[0]
    meta = (first.bits, first.axes, first.group_size, first.group_axis, first.dtype)
    for q in qs[1:]:
        if (q.bits, q.axes, q.group_size, q.group_axis, q.dtype) != meta:
            raise ValueError(
                "stack_layers: the layers' QArrays differ in bits, axes, groups or dtype "
                f"({meta} and {(q.bits, q.axes, q.group_size, q.group_axis, q.dtype)})"
            )

    def shift(a: int) -> int:
        return a + (a >= axis)

    ga = None if first.group_axis is None else shift(first.group_axis)
    return QArray(
        values=jnp.stack([q.values for q in qs], axis=axis),
        scale=jnp.stack([q.scale for q in qs], axis=axis),
        zero_point=jnp.stack([q.zero_point for q in qs], axis=axis),
        bits=first.bits,
        axes=tuple(sorted({axis, *(shift(a) for a in first.axes)})),
        group_size=first.group_size,
        group_axis=ga,
        dtype=first.dtype,
    )


def take_layer(q: Any, axis: int, layer: Any) -> Any:
    """Layer ``layer`` of a quantized leaf stacked along ``axis`` (the inverse of :func:`stack_layers`).

    A ``QArray`` keeps its scales' slice when ``axis`` is one of its ``axes``
    (every layer its own scales), else the scales the layers share; a
    ``KMeansArray`` slices its indices and mask and keeps its codebook.
    ``layer`` may be traced (a scan's index).

    Raises:
      ValueError: a ``QArray`` grouped along ``axis`` (a group spans layers).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import dequantize, quantize
      >>> qs = [quantize(jnp.ones((2, 3)) * k, QuantSpec(bits=4, axes=(-1,))) for k in (1, 2)]
      >>> one = take_layer(stack_layers(qs, 0), 0, 1)
      >>> one.axes, bool((dequantize(one) == dequantize(qs[1])).all())
      ((1,), True)
    """

    def take(a: jax.Array) -> jax.Array:
        return jax.lax.dynamic_index_in_dim(a, layer, axis, keepdims=False)

    if isinstance(q, KMeansArray):
        return dataclasses.replace(q, indices=take(q.indices), mask=take(q.mask))
    if q.group_axis == axis:
        raise ValueError(
            f"take_layer: the QArray is grouped along axis {axis}, so a group spans layers; "
            "expected a stack grouped along another axis"
        )

    def drop(a: int) -> int:
        return a - (a > axis)

    own = axis in q.axes  # else the scales' axis has size 1: the layers share them
    scales = take if own else lambda a: jnp.squeeze(a, axis)
    return QArray(
        values=take(q.values),
        scale=scales(q.scale),
        zero_point=scales(q.zero_point),
        bits=q.bits,
        axes=tuple(drop(a) for a in q.axes if a != axis),
        group_size=q.group_size,
        group_axis=None if q.group_axis is None else drop(q.group_axis),
        dtype=q.dtype,
    )


def stack_layers(outputs: list[Any], axis: int) -> Any:
    """Stacks the per-layer results of a layer stack along ``axis`` (arrays and ``QArray``s).

    ``outputs`` are pytrees of the same structure (one per layer, e.g. a
    ``QArray`` or a ``(QArray, mask)`` pair); each array is stacked with
    ``jnp.stack`` and each :class:`QArray` into one ``QArray`` whose scales
    gain the layer axis (every layer keeps its own scales, so ``axis`` joins
    its ``axes``). It is the ``stack`` of :func:`jaxzip.calib.run_oneshot` for
    methods that return ``QArray``s.

    Raises:
      ValueError: the layers' ``QArray``s differ in bits, axes, groups or dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import dequantize, quantize
      >>> qs = [quantize(jnp.ones((2, 3)) * k, QuantSpec(bits=4, axes=(-1,))) for k in (1, 2)]
      >>> q = stack_layers(qs, 0)
      >>> q.shape, q.axes, q.scale.shape, dequantize(q)[1, 0, 0].item()
      ((2, 2, 3), (0, 2), (2, 1, 3), 2.0)
    """
    if not outputs:
        raise ValueError("stack_layers: expected the outputs of at least one layer, got none")
    return jax.tree.map(
        lambda *xs: (
            _stack_qarrays(list(xs), axis)
            if isinstance(xs[0], QArray)
            else jnp.stack(xs, axis=axis)
        ),
        *outputs,
        is_leaf=lambda x: isinstance(x, QArray),
    )


def run_hessian_method(
    apply_fn: Callable[..., Any],
    params: Any,
    batches: Iterable[Any],
    process: jz_calib.Process,
    *,
    select: jz_calib.Select,
    name: str,
    **options: Unpack[jz_calib.OneShotOptions],
) -> dict[str, Any]:
    """:func:`jaxzip.calib.run_oneshot` as GPTQ and SparseGPT call it: ``XᵀX`` statistics,
    and :func:`stack_layers` to join a layer stack's ``QArray``s."""
    return jz_calib.run_oneshot(
        apply_fn,
        params,
        batches,
        process,
        hessian=True,
        select=select,
        name=name,
        stack=stack_layers,
        **options,
    )
