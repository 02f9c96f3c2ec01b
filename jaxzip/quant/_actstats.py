"""Shared pieces of the activation-aware methods (W8A8, SmoothQuant, AWQ).

Kernel selection among traced layouts, per-kernel activation statistics
(:func:`jaxzip.calib.collect_stats`), a layer stack's kernels one layer at a
time, and integer-only row quantization.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import calib as jz_calib
from jaxzip import layout as jz_layout
from jaxzip._types import Params, Where
from jaxzip.calib import KernelStats
from jaxzip.layout import KernelLayout, to_matrix


def check_bits(bits: Any, name: str = "bits") -> int:
    """Raises ``ValueError`` unless ``bits`` is an int in 2..8 (symmetric signed grids)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"{name}: expected an int in 2..8, got {bits!r}")
    return int(bits)


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """Raises ``ValueError`` unless ``alpha`` is a number in ``[0, 1]``."""
    ok = isinstance(alpha, (int, float, np.floating, np.integer)) and not isinstance(alpha, bool)
    if not ok or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {alpha!r}")
    return float(alpha)


def select_kernels(
    params: Params, layouts: Mapping[str, KernelLayout], where: Where | None
) -> dict[str, KernelLayout]:
    """The layouts of the kernels ``where`` selects (all of ``layouts`` if None), in traced order.

    See :func:`jaxzip.layout.select_kernels` for the checks and errors.
    """
    return {p: layouts[p] for p in jz_layout.select_kernels(layouts, params, where)}


def collect_act_stats(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    xtx: bool,
    caller: str,
) -> dict[str, KernelStats]:
    """:func:`jaxzip.calib.collect_stats` over ``batches``, each splatted if a tuple.

    ``layouts`` must already be the selected kernels. A stack of layers gets
    one set of statistics per layer, stacked along a leading axis.
    """
    batches = list(batches)
    if not batches:
        raise ValueError(f"{caller}: calib_batches is empty; expected at least one batch")

    def fwd(p: Params, batch: Any) -> Any:
        return apply_fn(p, *batch) if isinstance(batch, tuple) else apply_fn(p, batch)

    return jz_calib.collect_stats(fwd, params, batches, layouts=layouts, hessian=xtx)


def layer_of(stats: KernelStats, layer: int | None) -> KernelStats:
    """One layer's statistics of a stack's (all of them for ``layer=None``)."""
    return stats if layer is None else KernelStats(*(a[layer] for a in stats))


def scales_by_layer(
    group: tuple[str, ...],
    layouts: Mapping[str, KernelLayout],
    leaves: Mapping[str, Any],
    scale: Callable[[int | None, dict[str, jax.Array], dict[str, KernelLayout]], jax.Array],
) -> jax.Array:
    """A group's per-input scales, one layer of a layer stack at a time.

    ``scale(layer, {path: (n_in, n_out) matrix}, {path: layout}) -> (n_in,)``
    is called once with ``layer=None`` for kernels outside a layer stack, and
    for a group of stacked kernels (``nn.scan``) once per layer with each
    kernel's slice and the slice's layout; the layers' scales are stacked to
    ``(layers, n_in)``.
    """
    first = layouts[group[0]]
    if first.layer_axis is None:
        mats = {p: to_matrix(leaves[p], layouts[p]) for p in group}
        return scale(None, mats, {p: layouts[p] for p in group})
    out = []
    for i in range(first.layers or 0):
        lays = {p: layouts[p].layer_slice() for p in group}
        mats = {
            p: to_matrix(jnp.take(leaves[p], i, axis=layouts[p].layer_axis), lays[p]) for p in group
        }
        out.append(scale(i, mats, lays))
    return jnp.stack(out)


def quantize_rows(xr: jax.Array, scale: jax.Array, qmax: int) -> jax.Array:
    """``clip(round(xr / scale), -qmax, qmax)`` as int8; ``scale`` broadcasts against ``xr``."""
    return jnp.clip(jnp.round(xr.astype(jnp.float32) / scale), -qmax, qmax).astype(jnp.int8)


def absmax_scale(absmax: jax.Array, qmax: int) -> jax.Array:
    """Symmetric scale ``absmax / qmax`` (1 where the range is 0, so zeros stay zeros)."""
    return jnp.where(absmax > 0, absmax / qmax, 1.0).astype(jnp.float32)
