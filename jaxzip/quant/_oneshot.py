"""The pytree driver shared by GPTQ, SparseGPT and Wanda: trace, calibrate, process, in order.

``run_oneshot`` finds the matmul kernels (``jaxzip.layout.trace_layouts``),
selects them with ``where``, and processes them with calibration statistics
(``jaxzip.calib.collect_stats``). Sequentially (the papers' protocol) the
kernels go in traced order, each group calibrated on params in which every
earlier kernel already holds its compressed (dequantized / pruned) value; a
group is the run of next kernels that read the same activation (detected
exactly: their statistics are identical, e.g. q/k/v), so it costs one
calibration pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Params, Where
from jaxzip.paths import describe, keystr, leaves_with_paths, matches, raise_no_match
from jaxzip.quant._qarray import QArray

Collect = Callable[[Params, list[str], bool], Mapping[str, Any]]
"""``(params, paths, hessian) -> {path: KernelStats}`` for the kernels named."""

Process = Callable[[str, Any, Any, Any], tuple[Any, Any]]
"""``(path, leaf, layout, stats) -> (float leaf for later calibration, output leaf)``."""


def check_batches(batches: Any, what: str) -> list[Any]:
    """The calibration batches as a list (they are read once per calibration pass)."""
    if isinstance(batches, (str, bytes)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"{what}: batches must be an iterable of model inputs, got {batches!r}")
    out = list(batches)
    if not out:
        raise ValueError(f"{what}: batches is empty; pass at least one calibration batch")
    return out


def trace(apply_fn: Callable[..., Any], params: Params, batches: list[Any]) -> dict[str, Any]:
    """``jaxzip.layout.trace_layouts`` on the first batch (``apply_fn(params, batch)``)."""
    from jaxzip import layout as jz_layout

    return dict(jz_layout.trace_layouts(apply_fn, params, batches[0]))


def calib_collect(apply_fn: Callable[..., Any], batches: list[Any], layouts: Any) -> Collect:
    """A :data:`Collect` over ``jaxzip.calib.collect_stats``."""
    from jaxzip import calib as jz_calib

    def collect(params: Params, paths: list[str], hessian: bool) -> Mapping[str, Any]:
        chosen = frozenset(paths)
        return jz_calib.collect_stats(
            apply_fn, params, batches, layouts=layouts,
            where=lambda p, _leaf: p in chosen, hessian=hessian,
        )  # fmt: skip

    return collect


def select_kernels(params: Params, layouts: Mapping[str, Any], where: Where | None) -> list[str]:
    """The traced kernels that ``where`` selects, in traced order (all of them if None)."""
    if not isinstance(layouts, Mapping):
        raise TypeError(
            f"layouts: expected the dict {{path: KernelLayout}} of trace_layouts, got "
            f"{type(layouts).__name__}"
        )
    leaves = dict(leaves_with_paths(params))
    for path, lay in layouts.items():
        if path not in leaves:
            raise ValueError(f"layouts[{path!r}]: no leaf of params has this path")
        if tuple(np.shape(leaves[path])) != tuple(lay.shape):
            raise ValueError(
                f"{path}: the kernel has shape {np.shape(leaves[path])} but its layout says "
                f"{lay.shape}"
            )
    if where is None:
        if not layouts:
            raise ValueError("apply_fn consumes no param leaf in a matmul or conv: nothing to do")
        return list(layouts)
    chosen = [p for p, leaf in leaves.items() if matches(where, p, leaf)]
    if not chosen:
        raise_no_match(params, where)
    for p in chosen:
        if p not in layouts:
            raise ValueError(
                f"where={describe(where)} selects {p!r}, which no matmul or conv of apply_fn "
                f"consumes; select only kernels such as {list(layouts)[:4]}"
            )
    return [p for p in layouts if p in set(chosen)]


def check_tokens(path: str, stats: Any, n_in: int, method: str) -> None:
    """A Hessian method needs at least ``n_in`` calibration tokens (rows of ``X``)."""
    count = int(stats.count)
    if count < n_in:
        raise ValueError(
            f"{path}: {method} needs at least n_in={n_in} calibration tokens (rows of X) "
            f"for a full-rank Hessian XᵀX, got {count}; pass more or longer batches"
        )


def _same_input(a: Any, b: Any, hessian: bool) -> bool:
    if int(a.count) != int(b.count):
        return False
    x, y = (a.xtx, b.xtx) if hessian else (a.sq_sum, b.sq_sum)
    return x.shape == y.shape and bool(jnp.array_equal(x, y))


def _candidates(order: list[str], start: int, layouts: Mapping[str, Any]) -> list[str]:
    """The next kernel and the run of following kernels with the same ``n_in``."""
    n_in = layouts[order[start]].n_in
    out = [order[start]]
    for p in order[start + 1 :]:
        if layouts[p].n_in != n_in:
            break
        out.append(p)
    return out


def run_oneshot(
    params: Params,
    layouts: Mapping[str, Any],
    paths: Sequence[str],
    collect: Collect,
    process: Process,
    *,
    hessian: bool,
    sequential: bool,
) -> tuple[Params, dict[str, Any]]:
    """Processes ``paths`` in order; returns ``(params with float results, {path: output})``.

    With ``sequential``, each group of kernels reading the same activation is
    calibrated on the params updated with every earlier kernel's float result.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [p for p, _ in leaves_with_paths(params)]
    index = {p: i for i, p in enumerate(names)}
    leaves = [leaf for _, leaf in flat]
    outputs: dict[str, Any] = {}

    def current() -> Params:
        return jax.tree.unflatten(treedef, leaves)

    def handle(group: list[str], stats: Mapping[str, Any]) -> None:
        for p in group:
            i = index[p]
            leaves[i], outputs[p] = process(p, leaves[i], layouts[p], stats[p])

    order = list(paths)
    if not sequential:
        handle(order, collect(current(), order, hessian))
        return current(), outputs
    start = 0
    while start < len(order):
        cand = _candidates(order, start, layouts)
        stats = collect(current(), cand, hessian)
        group = [cand[0]]
        for p in cand[1:]:
            if not _same_input(stats[cand[0]], stats[p], hessian):
                break
            group.append(p)
        handle(group, stats)
        start += len(group)
    return current(), outputs


def kernel_qarray(q: QArray, layout: Any) -> QArray:
    """A matrix-space ``QArray (n_in, n_out)`` as a ``QArray`` in the kernel's shape and axes.

    Per output channel: ``axes = out_axes``. Per group of ``g`` rows: groups run
    along the last input axis (``layout.group_axis()``), so ``axes`` are the
    output axes plus the other input axes, ``group_axis`` the last input axis.
    """
    from jaxzip import layout as jz_layout

    values = jz_layout.from_matrix(q.values, layout)
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
        scale=jz_layout.from_matrix(q.scale, sl),
        zero_point=jz_layout.from_matrix(q.zero_point, sl),
        bits=q.bits,
        axes=axes,
        group_size=gs,
        group_axis=ga,
        dtype=q.dtype,
    )


def check_kernel_groups(path: str, layout: Any, group_size: int | None) -> None:
    """Groups must divide the last input axis (the QArray's group axis) of a kernel."""
    if group_size is None:
        return
    size = layout.shape[layout.in_axes[-1]]
    if size % group_size:
        ok = [d for d in range(1, size + 1) if size % d == 0]
        raise ValueError(
            f"{path}: group_size={group_size} must divide the size {size} of the kernel's last "
            f"input axis {layout.in_axes[-1]} (shape {layout.shape}); sizes that do: {ok}"
        )


def replace_leaves(params: Params, new: Mapping[str, Any]) -> Params:
    """``params`` with the leaves at ``new``'s paths replaced (QArray leaves allowed)."""
    return jax.tree_util.tree_map_with_path(lambda kp, x: new.get(keystr(kp), x), params)
