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
keeps the explicit division.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Params
from jaxzip.layout import KernelLayout, from_matrix, to_matrix
from jaxzip.paths import leaves_with_paths, map_with_paths
from jaxzip.quant._actstats import ActStats


def input_groups(stats: Mapping[str, ActStats]) -> list[tuple[str, ...]]:
    """Groups kernels whose input statistics are identical (they read the same activation)."""
    groups: list[list[str]] = []
    for p, st in stats.items():
        for g in groups:
            q = stats[g[0]]
            if (
                q.abs_sum.shape == st.abs_sum.shape
                and float(q.count) == float(st.count)
                and np.array_equal(np.asarray(q.abs_sum), np.asarray(st.abs_sum))
                and np.array_equal(np.asarray(q.absmax), np.asarray(st.absmax))
            ):
                g.append(p)
                break
        else:
            groups.append([p])
    return [tuple(g) for g in groups]


def scale_kernels(
    params: Params,
    scales: Mapping[str, Any],
    layouts: Mapping[str, KernelLayout],
    norm: Mapping[str, Any] | None = None,
) -> Params:
    """``W ← diag(s) W`` on the kernels of ``scales``; ``leaf / s`` on the leaves of ``norm``."""
    norm = norm or {}

    def f(path: str, leaf: Any) -> Any:
        if path in scales:
            m = to_matrix(leaf, layouts[path])
            s = jnp.asarray(scales[path], m.dtype)
            return from_matrix(m * s[:, None], layouts[path])
        if path in norm:
            return leaf / jnp.asarray(norm[path], leaf.dtype)
        return leaf

    return map_with_paths(f, params)


def _candidates(params: Params, n_in: int, kernels: set[str]) -> list[tuple[str, ...]]:
    by_parent: dict[str, list[str]] = {}
    for path, leaf in leaves_with_paths(params):
        if path in kernels or np.ndim(leaf) != 1 or np.shape(leaf)[0] != n_in:
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
    """For each group with a foldable normalization, the paths of its params (verified)."""
    args = batch if isinstance(batch, tuple) else (batch,)
    run = jax.jit(lambda p, a: apply_fn(p, *a))
    ref = jax.tree.leaves(run(params, args))
    tol = [1e-4 * (float(jnp.max(jnp.abs(y))) + 1.0) for y in ref]
    kernels = set(layouts)
    found = {}
    for group in groups:
        n_in = layouts[group[0]].n_in
        r = np.exp(0.3 * np.sin(1.7 * np.arange(n_in) + 0.4)).astype(np.float32)
        for cand in _candidates(params, n_in, kernels):
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
    stats: Mapping[str, ActStats],
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
