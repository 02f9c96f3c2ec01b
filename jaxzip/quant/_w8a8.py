"""W8A8: int8 weights and int8 activations through the integer matmul path."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Params, Where
from jaxzip.layout import KernelLayout, intercept_matmuls
from jaxzip.paths import keystr
from jaxzip.quant._actstats import (
    absmax_scale,
    check_bits,
    collect_act_stats,
    quantize_rows,
    select_kernels,
)
from jaxzip.quant._apply import tie
from jaxzip.quant._intops import int_dense
from jaxzip.quant._kernel import take_layer
from jaxzip.quant._params import dequantize_params, is_quantized, quantize_params
from jaxzip.quant._qarray import QArray, dequantize
from jaxzip.quant._spec import QuantSpec


def _weight_matrix(q: QArray, layout: KernelLayout, path: str) -> QArray:
    """A per-output-channel symmetric kernel ``QArray`` as the ``(n_in, n_out)`` matrix."""
    if q.group_size is not None or tuple(q.axes) != layout.out_axes:
        raise ValueError(
            f"{path!r}: the integer path needs a per-output-channel QArray (axes "
            f"{layout.out_axes}, no groups), got axes {q.axes}, group_size {q.group_size}"
        )
    order = layout.in_axes + layout.out_axes
    values = jnp.transpose(q.values, order).reshape(layout.n_in, layout.n_out)
    scale = jnp.transpose(q.scale, order).reshape(1, layout.n_out)
    zp = jnp.transpose(q.zero_point, order).reshape(1, layout.n_out)
    return QArray(values=values, scale=scale, zero_point=zp, bits=q.bits, axes=(1,))


def _check_scales(
    scales: Any,
    name: str,
    layouts: Mapping[str, KernelLayout],
    shape_of: Callable[[KernelLayout], tuple[int, ...]],
) -> dict[str, np.ndarray]:
    """``scales`` as NumPy arrays, each positive, finite and of its kernel's ``shape_of``."""
    if scales is None:
        return {}
    if not isinstance(scales, Mapping):
        raise TypeError(f"{name}: expected a dict {{path: scale}}, got {type(scales).__name__}")
    out = {}
    for p, s in scales.items():
        if p not in layouts:
            raise ValueError(
                f"{name}[{p!r}]: not a selected kernel; selected: {sorted(layouts)[:4]}"
            )
        a = np.asarray(s, np.float32)
        want = shape_of(layouts[p])
        if a.shape != want or not (np.isfinite(a).all() and (a > 0).all()):
            raise ValueError(
                f"{name}[{p!r}]: expected positive finite values of shape {want}, got {s!r}"
            )
        out[p] = a
    return out


def _lead(layout: KernelLayout) -> tuple[int, ...]:
    """``(layers,)`` for a stack of layers (one value per layer), else ``()``."""
    return () if layout.layers is None else (layout.layers,)


def make_scaled_apply(
    apply_fn: Callable[..., Any],
    *,
    layouts: Mapping[str, KernelLayout],
    in_scales: Mapping[str, Any] | None = None,
    act_bits: int | None = None,
    act_scales: Mapping[str, Any] | None = None,
) -> Callable[..., Any]:
    """Makes ``apply_fn`` run its kernels' matmuls on scaled, optionally quantized activations.

    At every matmul or conv consuming a kernel of ``layouts`` the activation rows
    ``x`` (``(rows, n_in)``) are divided by the kernel's per-input-channel
    ``in_scales`` (SmoothQuant / AWQ, whose kernels were multiplied by them),
    then:

    * ``act_bits=None``: the float product with the kernel (a ``QArray`` leaf is
      dequantized there);
    * ``act_bits=b``: ``x`` is quantized to a symmetric signed ``b``-bit grid,
      per row (dynamic per-token: ``max|x_row| / qmax``) or per tensor with the
      static ``act_scales[path] / qmax`` (absmax from calibration; values beyond
      it are clipped), and multiplied with the kernel's integer values by
      :func:`int_dense` (int8 × int8 → int32, then one float rescale). The
      kernel must then be a per-output-channel ``QArray`` (:func:`w8a8`).

    A stack of layers (a kernel whose layout has a ``layer_axis``, under
    ``nn.scan``) takes one set of scales per layer: ``in_scales[path]`` of
    shape ``(layers, n_in)``, ``act_scales[path]`` of ``(layers,)``; its scan
    stays one scan (traced once: compile time does not grow with the number
    of layers), each layer with its slice of the kernel (of a stacked
    ``QArray``, its own scales) and its own scales, taken by the scan's index.

    Other params and operations run as in ``apply_fn``. ``in_scales`` and
    ``act_scales`` are copied into the closure as NumPy constants (they are
    fixed properties of the converted model, not training state).

    Args:
      apply_fn: the model, ``apply_fn(params, *args, **kwargs)``.
      layouts: the kernels to intercept (``{path: KernelLayout}``, selected).
      in_scales: optional ``{path: (n_in,) positive scales}`` in
        :func:`jaxzip.layout.to_matrix` row order (``(layers, n_in)`` for a
        stack of layers).
      act_bits: activation bits (2..8) for the integer path, or None.
      act_scales: ``{path: absmax}`` for static activation ranges (every kernel
        of ``layouts``; ``(layers,)`` values for a stack of layers), or None
        for dynamic per-token ranges.

    Returns:
      ``fn(params, *args, **kwargs)`` with ``apply_fn``'s result; jittable.

    Raises:
      ValueError: bad bits or scales (named by path); when ``fn`` runs, a
        kernel that is not a per-output-channel ``QArray`` on the integer path.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: x @ p["w"]
      >>> params, x = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}, jnp.array([[1.0, 1.0]])
      >>> lay = trace_layouts(f, params, x)
      >>> g = make_scaled_apply(f, layouts=lay, in_scales={"w": [2.0, 4.0]})
      >>> g({"w": jnp.array([[2.0, 4.0], [12.0, 16.0]])}, x)
      Array([[4., 6.]], dtype=float32)
    """
    if not callable(apply_fn):
        raise TypeError(f"make_scaled_apply: apply_fn must be callable, got {apply_fn!r}")
    layouts = dict(layouts)
    div = _check_scales(in_scales, "in_scales", layouts, lambda lay: (*_lead(lay), lay.n_in))
    qmax = None if act_bits is None else 2 ** (check_bits(act_bits, "act_bits") - 1) - 1
    static = _check_scales(act_scales, "act_scales", layouts, _lead)
    if act_scales is not None and set(static) != set(layouts):
        missing = sorted(set(layouts) - set(static))[:4]
        raise ValueError(f"act_scales: missing kernels {missing}; give one absmax per kernel")
    if act_scales is not None and act_bits is None:
        raise ValueError("act_scales: static activation ranges need act_bits")

    def fn(params: Params, *args: Any, **kwargs: Any) -> Any:
        flat = jax.tree_util.tree_leaves_with_path(params, is_leaf=is_quantized)
        qleaves = {keystr(kp): leaf for kp, leaf in flat if keystr(kp) in layouts}

        def hook(path: str, x: Any, xr: Any, w: Any, compute: Any) -> tuple[Any, None]:
            layout, layer = layouts[path], compute.layer
            if layer is not None:  # one layer of a stack: its slice, scales and ranges
                layout = layout.layer_slice()
            if compute.w_layout != layout:
                raise ValueError(
                    f"{path!r}: the model rearranges the kernel before its matmul; only "
                    "kernels consumed as stored are supported"
                )
            if path in div:  # a stack's scales: the row of the (traced) layer index
                d = div[path] if layer is None else jnp.asarray(div[path])[layer]
                xr = xr / jnp.asarray(d, xr.dtype)
            leaf = qleaves[path]
            if layer is not None and is_quantized(leaf):
                leaf = take_layer(leaf, layouts[path].layer_axis, layer)
            if qmax is None:  # tied to x: dequantized next to its use (see make_quantized_apply)
                wf = dequantize(tie(leaf, xr)).astype(w.dtype) if is_quantized(leaf) else w
                return compute(xr.astype(x.dtype), wf, rows=True), None
            if not isinstance(leaf, QArray):
                raise ValueError(f"{path!r}: the integer path needs a QArray kernel, got {leaf!r}")
            if path in static:
                amax = static[path] if layer is None else jnp.asarray(static[path])[layer]
                sx = absmax_scale(jnp.asarray(amax), qmax).reshape(1, 1)
                axes: tuple[int, ...] = ()
            else:
                sx = absmax_scale(jnp.max(jnp.abs(xr), axis=1, keepdims=True), qmax)
                axes = (0,)
            xq = QArray(
                values=quantize_rows(xr, sx, qmax),
                scale=sx,
                zero_point=jnp.zeros(sx.shape, jnp.int32),
                bits=act_bits,
                axes=axes,
            )
            y = int_dense(xq, _weight_matrix(leaf, layout, path))
            return compute.y_from_rows(y).astype(compute.y_dtype), None

        floats = dequantize_params(params)
        run = intercept_matmuls(
            apply_fn, layouts, hook, where=lambda p, _: p in layouts, layers=True, rolled=True
        )
        out, _ = run(floats, *args, **kwargs)
        return out

    return fn


def w8a8(
    apply_fn: Callable[..., Any],
    params: Params,
    *,
    layouts: Mapping[str, KernelLayout],
    calib_batches: Iterable[Any] | None = None,
    where: Where | None = None,
    bits: int = 8,
    act_bits: int = 8,
    in_scales: Mapping[str, Any] | None = None,
) -> tuple[Callable[..., Any], Params]:
    """Quantizes kernels to int8 per output channel and runs them with int8 activations.

    Weights: every selected kernel becomes a symmetric ``bits``-bit ``QArray``
    with one scale per output channel, along the kernel's true output axes
    (``layouts[path].out_axes``). Activations: quantized at each matmul, dynamic
    per token (``calib_batches=None``) or static per tensor (the absmax over
    ``calib_batches``); the product runs on the integer path (see
    :func:`make_scaled_apply`). Biases, norms, embeddings and other leaves stay
    float. A stack of layers (``nn.scan``) gets scales per layer and output
    channel, static ranges per layer, and runs one layer at a time (see
    :func:`make_scaled_apply`).

    Args:
      apply_fn: the model, ``apply_fn(params, *args, **kwargs)``.
      params: float params.
      layouts: from :func:`jaxzip.layout.trace_layouts`.
      calib_batches: batches for static activation ranges (each passed as
        ``apply_fn(params, batch)``, or splatted if a tuple); None for dynamic.
      where: selects among the kernels (default: all of ``layouts``).
      bits: weight bits, 2..8.
      act_bits: activation bits, 2..8.
      in_scales: per-input-channel scales already multiplied into the kernels
        and not folded elsewhere (``smooth_quant(...).in_scales``); each
        kernel's activations are divided by them.

    Returns:
      ``(fn, qparams)``: ``fn(qparams, *args, **kwargs)`` runs the quantized
      model (jittable); ``qparams`` has ``QArray`` kernels.

    Raises:
      ValueError: bits out of range; ``where`` selects a leaf that no matmul
        consumes (named by path); empty ``calib_batches``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: x @ p["w"]
      >>> params, x = {"w": jnp.array([[1.0, -2.0], [0.5, 4.0]])}, jnp.array([[1.0, 2.0]])
      >>> fn, q = w8a8(f, params, layouts=trace_layouts(f, params, x))
      >>> fn(q, x)
      Array([[2.015748, 5.96838 ]], dtype=float32)
    """
    bits = check_bits(bits)
    check_bits(act_bits, "act_bits")
    chosen = select_kernels(params, layouts, where)
    act_scales = None
    if calib_batches is not None:
        stats = collect_act_stats(
            apply_fn, params, calib_batches, layouts=chosen, xtx=False, caller="w8a8"
        )
        shape_of = lambda lay: (*_lead(lay), lay.n_in)  # noqa: E731
        inv = _check_scales(in_scales, "in_scales", chosen, shape_of)
        act_scales = {}
        for p, st in stats.items():  # a stack's ranges per layer
            amax = np.max(np.asarray(st.absmax) / inv.get(p, np.float32(1.0)), axis=-1)
            act_scales[p] = np.where(amax > 0, amax, np.float32(1.0))
    rules = [
        (re.escape(p), QuantSpec(bits=bits, axes=lay.quant_axes())) for p, lay in chosen.items()
    ]
    qparams = quantize_params(params, rules)
    fn = make_scaled_apply(
        apply_fn, layouts=chosen, in_scales=in_scales, act_bits=act_bits, act_scales=act_scales
    )
    return fn, qparams
