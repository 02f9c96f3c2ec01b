"""Exact, deterministic, jittable selection of the ``k`` lowest scores (sort-free).

The ``k`` scores to prune are found without sorting: scores are mapped to
order-preserving ``uint32`` keys, a 32-step bisection finds the ``k``-th
smallest key ``v``, and every key below ``v`` is pruned together with the
first ``k - #(key < v)`` keys equal to ``v`` in (leaf order, row-major) order.
So exactly ``k`` are pruned, ties are broken by position, ``k`` may be a traced
value (a vmapped sparsity), and a global threshold over several leaves needs
no concatenation: each bisection step only sums per-leaf counts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxzip.prune._checks import check_sparsity, is_concrete
from jaxzip.prune._structures import Unstructured


def sort_keys(scores: ArrayLike) -> jax.Array:
    """Maps float scores to ``uint32`` keys with the same order (``-0.0`` equals ``0.0``)."""
    x = jnp.asarray(scores, jnp.float32)
    x = jnp.where(x == 0, jnp.float32(0), x)
    bits = lax.bitcast_convert_type(x, jnp.uint32)
    negative = (bits >> 31) == 1
    return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def num_pruned(sparsity: ArrayLike, n: int) -> jax.Array:
    """``round(sparsity * n)`` as int32 (exact in float64 when concrete, float32 when traced)."""
    if is_concrete(sparsity):
        return jnp.int32(round(float(sparsity) * n))
    return jnp.round(jnp.asarray(sparsity, jnp.float32) * n).astype(jnp.int32)


def lowest_k(
    keys: Sequence[jax.Array], ks: Sequence[ArrayLike], *, pooled: bool
) -> list[jax.Array]:
    """Bool arrays (one per key array) marking exactly the ``k`` lowest keys of each unit.

    With ``pooled``, all arrays form one unit and ``ks`` holds one count; else each
    array is its own unit with its own count. One bisection loop serves all units.
    Ties are broken by position: earlier arrays first, then row-major order.

    Args:
      keys: ``uint32`` arrays from :func:`sort_keys`.
      ks: how many to mark per unit, ``0 <= k <= unit size`` (int32, may be traced).
      pooled: whether all arrays form one unit.

    Returns:
      One bool array per input, True where the element is among its unit's ``k`` lowest.
    """
    units = [0] * len(keys) if pooled else list(range(len(keys)))
    k = jnp.stack([jnp.asarray(x, jnp.int32) for x in ks])

    def count(pred, thresholds):
        totals = [jnp.int32(0)] * len(ks)
        for key, u in zip(keys, units, strict=True):
            totals[u] = totals[u] + jnp.sum(pred(key, thresholds[u]), dtype=jnp.int32)
        return jnp.stack(totals)

    def body(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = count(lambda key, t: key <= t, mid) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    init = (jnp.zeros(len(ks), jnp.uint32), jnp.full(len(ks), 0xFFFFFFFF, jnp.uint32))
    v, _ = lax.fori_loop(0, 32, body, init)
    ties_to_prune = k - count(lambda key, t: key < t, v)
    out, offsets = [], [jnp.int32(0)] * len(ks)
    for key, u in zip(keys, units, strict=True):
        eq = key == v[u]
        rank = jnp.cumsum(jnp.ravel(eq), dtype=jnp.int32).reshape(key.shape) - 1 + offsets[u]
        out.append((key < v[u]) | (eq & (rank < ties_to_prune[u])))
        offsets[u] = offsets[u] + jnp.sum(eq, dtype=jnp.int32)
    return out


@functools.partial(jax.jit, static_argnames=("structure", "pooled"))
def keep_masks(
    scores: tuple[jax.Array, ...], ks: tuple[jax.Array, ...], *, structure: Any, pooled: bool
) -> tuple[jax.Array, ...]:
    """Keep-masks of several leaves for a group structure (jitted once per shapes/structure).

    Args:
      scores: the selected leaves' scores.
      ks: groups to prune: one count for all leaves together when ``pooled``
        (global threshold), else one per leaf.
      structure: an :class:`Unstructured`, :class:`Channel` or :class:`Block` spec.
      pooled: whether ``ks[0]`` is a count over all leaves together.

    Returns:
      One bool mask per leaf, False where pruned.
    """
    keys = [sort_keys(structure.group_scores(s)) for s in scores]
    pruned = lowest_k(keys, ks, pooled=pooled)
    return tuple(structure.expand(~g, s.shape) for g, s in zip(pruned, scores, strict=True))


@functools.partial(jax.jit, static_argnames=("structure",))
def nbym_masks(scores: tuple[jax.Array, ...], *, structure: Any) -> tuple[jax.Array, ...]:
    """N:M keep-masks of several leaves (jitted once per shapes/structure)."""
    return tuple(structure.mask(s) for s in scores)


def topk_mask(scores: ArrayLike, *, sparsity: ArrayLike) -> jax.Array:
    """Keep-mask of one array: prunes exactly ``round(sparsity * size)`` lowest scores.

    Ties are broken by position: among equal scores the lower row-major index is
    pruned first. ``sparsity`` may be traced (jit, vmap).

    Args:
      scores: any float array.
      sparsity: fraction to prune, in ``[0, 1)``.

    Returns:
      A bool array of ``scores``' shape, False where pruned.

    Raises:
      ValueError: ``sparsity`` is concrete and outside ``[0, 1)``.

    Example:
      >>> import jax.numpy as jnp
      >>> topk_mask(jnp.array([3.0, 1.0, 2.0, 1.0]), sparsity=0.5)
      Array([ True, False,  True, False], dtype=bool)
    """
    check_sparsity(sparsity)
    scores = jnp.asarray(scores)
    (keep,) = keep_masks(
        (scores,), (num_pruned(sparsity, scores.size),), structure=Unstructured(), pooled=False
    )
    return keep
