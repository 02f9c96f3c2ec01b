"""Folding per-input-channel scales into the normalization that precedes a group of kernels.

SmoothQuant and AWQ multiply a kernel's input rows by ``diag(s)`` and need
the activation divided by ``s``. When the activation is the output of an affine
normalization (LayerNorm ``scale``/``bias``, RMSNorm ``scale``), dividing those
params by ``s`` does it for free. Rather than pattern-matching the model's
code, the fold is found and *verified* numerically: kernels whose input
statistics are identical read the same activation (a group, e.g. the query,
key and value kernels after one LayerNorm); for each group, every set of 1-D
params of size ``n_in`` under one parent (``.../LayerNorm_0/{scale,bias}``) is
tried with a generic positive ``r``: if ``params / r`` there and ``diag(r) W``
on the group's kernels leave the model's output unchanged on a calibration
batch, that set is the group's norm and the fold is exact for any ``s``. A
group with no such norm (a post-LN residual also reads it, or no norm at all)
keeps the explicit division. In a stack of layers (``nn.scan``) the kernels'
scales are ``(layers, n_in)`` and so are the stacked norm params that absorb
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Params
from jaxzip.calib import KernelStats
from jaxzip.layout import KernelLayout, from_matrix, to_matrix
from jaxzip.paths import leaves_with_paths, map_with_paths


def input_groups(stats: Mapping[str, KernelStats]) -> list[tuple[str, ...]]:
    """Groups kernels whose input statistics are identical (they read the same activation).

    Kernels of a layer stack group with kernels whose statistics are identical
    in every layer (the same stack's query, key and value kernels).
    """
    groups: list[list[str]] = []
    for p, st in stats.items():
        for g in groups:
            q = stats[g[0]]
            if (
                q.abs_sum.shape == st.abs_sum.shape
                and np.array_equal(np.asarray(q.count), np.asarray(st.count))
                and np.array_equal(np.asarray(q.abs_sum), np.asarray(st.abs_sum))
                and np.array_equal(np.asarray(q.absmax), np.asarray(st.absmax))
            ):
                g.append(p)
                break
        else:
            groups.append([p])
    return [tuple(g) for g in groups]


def scale_rows(w: Any, s: Any, layout: KernelLayout) -> jax.Array:
    """``diag(s) W`` on the kernel's ``to_matrix`` rows; a layer stack's layer ``i`` by ``s[i]``.

    Example:
      >>> lay = KernelLayout(shape=(2, 2, 1), in_axes=(1,), out_axes=(0, 2), layer_axis=0)
      >>> scale_rows(jnp.ones((2, 2, 1)), jnp.array([[1.0, 2.0], [3.0, 4.0]]), lay)[:, :, 0]
      Array([[1., 2.],
             [3., 4.]], dtype=float32)
    """
    if layout.layer_axis is not None:
        one = layout.layer_slice()
        per_layer = jax.vmap(
            lambda wi, si: scale_rows(wi, si, one),
            in_axes=(layout.layer_axis, 0),
            out_axes=layout.layer_axis,
        )
        return per_layer(w, s)
    m = to_matrix(w, layout)
    return from_matrix(m * jnp.asarray(s, m.dtype)[:, None], layout)


def scale_kernels(
    params: Params,
    scales: Mapping[str, Any],
    layouts: Mapping[str, KernelLayout],
    norm: Mapping[str, Any] | None = None,
) -> Params:
    """``W ← diag(s) W`` on the kernels of ``scales``; ``leaf / s`` on the leaves of ``norm``.

    A stacked kernel's ``s`` is ``(layers, n_in)``: layer ``i`` by ``s[i]`` (so
    is a stacked norm's, ``(layers, n_in)`` as ``nn.scan`` stacks it).
    """
    norm = norm or {}

    def f(path: str, leaf: Any) -> Any:
        if path in scales:
            return scale_rows(leaf, scales[path], layouts[path])
        if path in norm:
            return leaf / jnp.asarray(norm[path], leaf.dtype)
        return leaf

    return map_with_paths(f, params)


def _candidates(params: Params, shape: tuple[int, ...], kernels: set[str]) -> list[tuple[str, ...]]:
    """Non-kernel float leaves of ``shape`` (``(n_in,)``, a stack's ``(layers, n_in)``) by parent."""
    by_parent: dict[str, list[str]] = {}
    for path, leaf in leaves_with_paths(params):
        if path in kernels or tuple(np.shape(leaf)) != shape:
            continue
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            continue
        by_parent.setdefault(path.rpartition("/")[0], []).append(path)
    return [tuple(v) for v in by_parent.values()]


def find_norms(
    apply_fn: Callable[..., Any],
    params: Params,
    batch: Any,
    groups: Sequence[tuple[str, ...]],
    layouts: Mapping[str, KernelLayout],
) -> dict[tuple[str, ...], tuple[str, ...]]:
    """For each group with a foldable normalization, the paths of its params (verified).

    A group of stacked kernels looks for stacked norm params of shape
    ``(layers, n_in)`` (each layer's norm divided by its own ``r``).
    """
    args = batch if isinstance(batch, tuple) else (batch,)
    run = jax.jit(lambda p, a: apply_fn(p, *a))
    ref = jax.tree.leaves(run(params, args))
    tol = [1e-4 * (float(jnp.max(jnp.abs(y))) + 1.0) for y in ref]
    kernels = set(layouts)
    found = {}
    for group in groups:
        lay = layouts[group[0]]
        shape = (lay.n_in,) if lay.layers is None else (lay.layers, lay.n_in)
        r = np.exp(0.3 * np.sin(1.7 * np.arange(np.prod(shape)) + 0.4)).astype(np.float32)
        r = r.reshape(shape)
        for cand in _candidates(params, shape, kernels):
            trial = scale_kernels(params, dict.fromkeys(group, r), layouts, dict.fromkeys(cand, r))
            out = jax.tree.leaves(run(trial, args))
            if all(
                float(jnp.max(jnp.abs(a - b))) <= t for a, b, t in zip(out, ref, tol, strict=True)
            ):
                found[group] = cand
                break
    return found


def migrate_scales(
    apply_fn: Callable[..., Any],
    params: Params,
    batch: Any,
    layouts: Mapping[str, KernelLayout],
    stats: Mapping[str, KernelStats],
    scale_of: Callable[[tuple[str, ...]], jax.Array],
    *,
    fold: bool,
) -> tuple[Params, dict[str, jax.Array], dict[str, jax.Array], dict[str, tuple[str, ...]]]:
    """Multiplies per-input scales into the kernels, folding ``1/s`` where exact.

    Kernels reading the same activation (:func:`input_groups`, with ``fold``) get
    one ``s = scale_of(group)``; each kernel ``W ← diag(s) W``, and ``1/s`` goes into
    the preceding normalization's params where :func:`find_norms` proves it exact
    (with ``fold``), else stays an explicit input scale.

    Returns:
      ``(params, in_scales, scales, folded)``: the new params; ``{path: s}`` for
      the kernels whose ``1/s`` was not folded; ``{path: s}`` for every kernel;
      ``{path: the norm params that absorbed 1/s}``.
    """
    groups = input_groups(stats) if fold else [(p,) for p in layouts]
    norms = find_norms(apply_fn, params, batch, groups, layouts) if fold else {}
    scales, in_scales, folded, norm_div = {}, {}, {}, {}
    for group in groups:
        s = scale_of(group)
        for p in group:
            scales[p] = s
            if group in norms:
                folded[p] = norms[group]
            else:
                in_scales[p] = s
        if group in norms:
            norm_div.update(dict.fromkeys(norms[group], s))
    return scale_kernels(params, scales, layouts, norm_div), in_scales, scales, folded
