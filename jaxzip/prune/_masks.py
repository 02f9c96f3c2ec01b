"""Masks: bool trees with the params' structure; making, applying and combining them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip._finite import check_finite
from jaxzip._types import Mask, Params, PyTree, Where
from jaxzip.paths import leaves_with_paths, min_ndim, select
from jaxzip.paths._trees import check_mask
from jaxzip.prune._allocation import (
    ERK,
    Allocation,
    Explicit,
    Global,
    Uniform,
    erk_sparsities,
    explicit_sparsities,
)
from jaxzip.prune._checks import check_float, check_sparsity, is_concrete
from jaxzip.prune._scores import magnitude_scores
from jaxzip.prune._structures import Block, Channel, NByM, Structure, Unstructured, num_groups
from jaxzip.prune._topk import keep_masks, num_pruned
from jaxzip.prune._topk import nbym_masks as _nbym_masks

KERNELS = min_ndim(2)
"""The default ``where``: leaves with at least two dimensions (kernels, not biases)."""
UNSTRUCTURED = Unstructured()
UNIFORM = Uniform()

_STRUCTURES = (Unstructured, NByM, Channel, Block)
_ALLOCATIONS = (Uniform, Global, ERK, Explicit)


def _check_options(sparsity: Any, structure: Any, allocation: Any) -> None:
    if not isinstance(structure, _STRUCTURES):
        raise TypeError(
            "structure: expected Unstructured(), NByM(n, m), Channel() or Block(shape), "
            f"got {structure!r}"
        )
    if not isinstance(allocation, _ALLOCATIONS):
        raise TypeError(
            f"allocation: expected Uniform(), Global(), ERK() or Explicit(rules), got {allocation!r}"
        )
    if isinstance(allocation, Explicit):
        if sparsity is not None:
            raise ValueError(
                "sparsity: must be None with allocation=Explicit(...) (the rules carry the "
                f"sparsities), got {sparsity!r}"
            )
    elif isinstance(structure, NByM):
        if not isinstance(allocation, Uniform):
            raise ValueError(f"allocation: NByM is local and needs Uniform(), got {allocation!r}")
        if sparsity is not None:
            check_sparsity(sparsity)
            if is_concrete(sparsity) and abs(float(sparsity) - structure.sparsity) > 1e-6:
                raise ValueError(
                    f"sparsity: {structure!r} prunes exactly {structure.sparsity:g}; got "
                    f"sparsity={float(sparsity)!r} (pass sparsity=None or {structure.sparsity:g})"
                )
    elif sparsity is None:
        raise ValueError(f"sparsity: required with structure={structure!r}, got None")
    else:
        check_sparsity(sparsity)


def make_mask(
    scores: PyTree,
    *,
    sparsity: ArrayLike | None = None,
    where: Where = KERNELS,
    structure: Structure = UNSTRUCTURED,
    allocation: Allocation = UNIFORM,
    layer_axes: Mapping[str, int] | None = None,
) -> Mask:
    """A keep-mask pruning the lowest ``scores`` of the selected leaves.

    Exactly ``round(s * n)`` groups are pruned per allocation unit (per leaf for
    :class:`Uniform`, :class:`ERK` and :class:`Explicit`; over all selected leaves
    for :class:`Global`), where ``n`` is the number of groups (weights for
    :class:`Unstructured`, output units for :class:`Channel`, blocks for
    :class:`Block`). Ties are broken by position: among equal scores, earlier
    leaves (flattening order) and lower row-major indices are pruned first.
    ``sparsity`` may be traced (jit, vmap over several sparsity levels).
    Concrete scores of the selected leaves must not be NaN (a NaN has no rank);
    ``±inf`` are valid scores (``-inf`` is pruned first). Traced scores are not checked.

    Args:
      scores: a tree of float scores (higher = more important) with the params'
        structure, e.g. from :func:`magnitude_scores`.
      sparsity: fraction to prune, in ``[0, 1)``. None with :class:`Explicit`
        allocation; None or ``1 - n/m`` with :class:`NByM`.
      where: the leaves to prune (default: leaves with at least 2 dimensions).
      structure: :class:`Unstructured`, :class:`NByM`, :class:`Channel` or :class:`Block`.
      allocation: :class:`Uniform`, :class:`Global`, :class:`ERK` or :class:`Explicit`.
      layer_axes: ``{path: axis}`` for selected leaves that are stacks of layers
        (``nn.scan`` params; ``layout.layer_axis`` from
        :func:`jaxzip.layout.trace_layouts`): each layer is then ranked and
        allocated as a leaf of its own, as the same layers built in a Python
        loop would be (:class:`NByM` is local to each group: unchanged).

    Returns:
      A bool tree with ``scores``' structure: False where pruned, all-True on
      leaves that are not selected.

    Raises:
      ValueError: bad sparsity, ``where`` selecting nothing, a selected non-float
        leaf, a structure that does not fit a selected leaf.
      NonFiniteError: a selected score is NaN (a ``ValueError`` naming the paths).
      TypeError: ``structure`` or ``allocation`` of the wrong type.

    Example:
      >>> import jax.numpy as jnp
      >>> scores = {"w": jnp.array([[4.0, 1.0], [2.0, 3.0]]), "b": jnp.ones(2)}
      >>> make_mask(scores, sparsity=0.5)["w"]
      Array([[ True, False],
             [False,  True]], dtype=bool)
      >>> make_mask(scores, sparsity=0.5, where="w", layer_axes={"w": 0})["w"]  # per row
      Array([[ True, False],
             [False,  True]], dtype=bool)
    """
    _check_options(sparsity, structure, allocation)
    _check_selected(scores, where, "make_mask", allow_inf=True)
    return _make_mask(scores, sparsity, where, structure, allocation, layer_axes)


def _check_selected(tree: PyTree, where: Where, caller: str, *, allow_inf: bool) -> None:
    """NaN (and, unless ``allow_inf``, Inf) in the selected concrete leaves raises."""
    picked = select(tree, where)
    check_finite(
        jax.tree.map(lambda x, s: x if s else None, tree, picked), where=caller, allow_inf=allow_inf
    )


def _check_layer_axes(
    layer_axes: Any, paths: list[str], flat: list[Any], idx: list[int]
) -> dict[int, int]:
    """``layer_axes`` as ``{leaf index: non-negative axis}``; errors name the path."""
    if layer_axes is None:
        return {}
    if not isinstance(layer_axes, Mapping):
        raise TypeError(f"layer_axes: expected a dict {{path: axis}} or None, got {layer_axes!r}")
    index = {paths[i]: i for i in idx}
    out = {}
    for path, axis in layer_axes.items():
        if path not in index:
            raise ValueError(
                f"layer_axes[{path!r}]: expected one of the selected leaves "
                f"{sorted(index)[:4]}, got a path that where= does not select"
            )
        ndim = jnp.ndim(flat[index[path]])
        if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
            raise ValueError(
                f"layer_axes[{path!r}]: expected an axis of the leaf's {ndim}, got {axis!r}"
            )
        out[index[path]] = axis % ndim
    return out


def _make_mask(
    scores: PyTree,
    sparsity: Any,
    where: Where,
    structure: Structure,
    allocation: Allocation,
    layer_axes: Mapping[str, int] | None = None,
) -> Mask:
    """:func:`make_mask` after its checks."""
    selected = jax.tree.leaves(select(scores, where))
    flat, treedef = jax.tree.flatten(scores)
    paths = [p for p, _ in leaves_with_paths(scores)]
    idx = [i for i, keep in enumerate(selected) if keep]
    for i in idx:
        check_float(paths[i], flat[i], "where")
        structure.check(paths[i], tuple(jnp.shape(flat[i])))
    stacks = _check_layer_axes(layer_axes, paths, flat, idx)
    if isinstance(structure, NByM):
        stacks = {}  # its groups lie inside one layer: the same masks
    units: list[tuple[int, int | None]] = []  # (leaf, layer of a stack or None)
    for i in idx:
        units += (
            [(i, k) for k in range(jnp.shape(flat[i])[stacks[i]])] if i in stacks else [(i, None)]
        )
    leaves = [flat[i] if k is None else jnp.take(flat[i], k, axis=stacks[i]) for i, k in units]
    for (i, k), x in zip(units, leaves, strict=True):
        if k is not None:
            structure.check(f"{paths[i]} (layer {k})", tuple(jnp.shape(x)))
    masks = _unit_masks([paths[i] for i, _ in units], leaves, sparsity, structure, allocation)
    out = [jnp.ones(jnp.shape(x), dtype=bool) for x in flat]
    by_leaf: dict[int, list[Any]] = {}
    for (i, _), m in zip(units, masks, strict=True):
        by_leaf.setdefault(i, []).append(m)
    for i, ms in by_leaf.items():
        if all(m is not None for m in ms):  # None: an Explicit rule leaves the leaf unpruned
            out[i] = jnp.stack(ms, axis=stacks[i]) if i in stacks else ms[0]
    return jax.tree.unflatten(treedef, out)


def _unit_masks(
    paths: list[str],
    leaves: list[Any],
    sparsity: Any,
    structure: Structure,
    allocation: Allocation,
) -> list[jax.Array | None]:
    """The masks of the allocation units (leaves, or layers of stacks) in order; None for a
    unit that no :class:`Explicit` rule prunes."""
    pick, leaf_s = list(range(len(leaves))), [sparsity] * len(leaves)
    if isinstance(allocation, Explicit):
        rule_s = explicit_sparsities(allocation, paths, leaves)
        pick = [j for j, s in enumerate(rule_s) if s is not None]
        leaf_s = [rule_s[j] for j in pick]
    chosen = tuple(jnp.asarray(leaves[j]) for j in pick)
    if isinstance(structure, NByM):
        masks = _nbym_masks(chosen, structure=structure)
    else:
        shapes = [tuple(x.shape) for x in chosen]
        groups = [num_groups(structure, shape) for shape in shapes]
        if isinstance(allocation, Global):
            ks = (num_pruned(sparsity, sum(groups)),)
        else:
            if isinstance(allocation, ERK):
                per_leaf = erk_sparsities(shapes, sparsity, power=allocation.power)
                leaf_s = [per_leaf[j] for j in range(len(pick))]
            ks = tuple(num_pruned(s, n) for s, n in zip(leaf_s, groups, strict=True))
        pooled = isinstance(allocation, Global)
        masks = keep_masks(chosen, ks, structure=structure, pooled=pooled)
    out: list[jax.Array | None] = [None] * len(leaves)
    for j, m in zip(pick, masks, strict=True):
        out[j] = m
    return out


def magnitude_mask(
    params: Params,
    *,
    sparsity: ArrayLike | None = None,
    where: Where = KERNELS,
    structure: Structure = UNSTRUCTURED,
    allocation: Allocation = UNIFORM,
    layer_axes: Mapping[str, int] | None = None,
) -> Mask:
    """A keep-mask pruning the smallest-magnitude weights: ``make_mask(|params|, ...)``.

    See :func:`make_mask` for the arguments, exactness and tie-breaking.

    Raises:
      ValueError: see :func:`make_mask`; also a selected leaf that is not float.
      NonFiniteError: a selected leaf holds NaN or Inf (a ``ValueError`` naming
        every such path with its counts; skipped for traced params).

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"Dense_0": {"kernel": jnp.array([[0.1, -2.0], [0.5, -0.3]]), "bias": jnp.zeros(2)}}
      >>> magnitude_mask(params, sparsity=0.5)["Dense_0"]["kernel"]
      Array([[False,  True],
             [ True, False]], dtype=bool)
    """
    chosen = jax.tree.leaves(select(params, where))
    for (path, leaf), keep in zip(leaves_with_paths(params), chosen, strict=True):
        if keep:
            check_float(path, leaf, "where")
    _check_options(sparsity, structure, allocation)
    _check_selected(params, where, "magnitude_mask", allow_inf=False)
    scores = magnitude_scores(params)
    return _make_mask(scores, sparsity, where, structure, allocation, layer_axes)


def apply_mask(params: Params, mask: Mask) -> Params:
    """Zeroes the params where ``mask`` is False (dtypes kept).

    Raises:
      ValueError: ``mask`` does not have the params' structure and shapes (the
        message names the first differing path) or has non-bool leaves.

    Example:
      >>> import jax.numpy as jnp
      >>> apply_mask({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([True, False])})
      {'w': Array([1., 0.], dtype=float32)}
    """
    check_mask(params, mask)
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, mask)


def _combine(op: Any, name: str, first: Mask, rest: tuple[Mask, ...]) -> Mask:
    if not rest:
        raise ValueError(f"{name}: expected at least two masks, got one")
    for i, other in enumerate(rest, start=1):
        check_mask(first, other, f"{name}: masks[{i}]")
    check_mask(first, first, f"{name}: masks[0]")
    return jax.tree.map(lambda *ms: functools.reduce(op, ms), first, *rest)


def mask_and(first: Mask, *rest: Mask) -> Mask:
    """Keeps a weight only where every mask keeps it.

    Args:
      first: a bool mask tree.
      *rest: one or more bool masks with ``first``'s structure and shapes.

    Returns:
      A bool mask with that structure, True where every mask is True.

    Raises:
      ValueError: a single mask, or masks that differ in structure, shape or
        dtype (bool leaves only); the message names the mask's index and path.

    Example:
      >>> import jax.numpy as jnp
      >>> mask_and({"w": jnp.array([True, True])}, {"w": jnp.array([True, False])})
      {'w': Array([ True, False], dtype=bool)}
    """
    return _combine(jnp.logical_and, "mask_and", first, rest)


def mask_or(first: Mask, *rest: Mask) -> Mask:
    """Keeps a weight where any mask keeps it; arguments and errors as :func:`mask_and`.

    Example:
      >>> import jax.numpy as jnp
      >>> mask_or({"w": jnp.array([False, False])}, {"w": jnp.array([True, False])})
      {'w': Array([ True, False], dtype=bool)}
    """
    return _combine(jnp.logical_or, "mask_or", first, rest)
