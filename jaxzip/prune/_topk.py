"""Exact, deterministic, jittable selection of the ``k`` lowest scores.

Scores are mapped to order-preserving ``uint32`` keys; the ``k``-th smallest key
``v`` and the position ``p`` of the last pruned key equal to ``v`` are found, and
an element is pruned iff ``(key, position) <= (v, p)`` (position = leaf order,
then row-major). So exactly ``k`` are pruned, ties are broken by position, ``k``
may be a traced value (a vmapped sparsity), and a global threshold over several
leaves needs no concatenation: counts are summed per leaf. Small units are
resolved by one stable sort; large ones by a few counting passes (no sort, no
scatter, no cumulative sum over the data), see :func:`lowest_k`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxzip._finite import check_finite
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


_FAN = 7  # thresholds per counting pass (see _split)
_SAMPLE_FAN = 15  # thresholds read from the sample for the first pass
_SAMPLE = 1 << 16  # strided sample (per unit) that brackets the cutoff before the first pass
_SMALL = 1 << 16  # units up to this size are resolved by one stable sort instead
_BLOCK = 1024  # block length for locating the tie-breaking position from per-block counts
_TOP = 0xFFFFFFFF


def _counts(preds: list[jax.Array]) -> list[jax.Array]:
    """Int32 counts of several same-shape bool arrays, in one fused read.

    A variadic reduce of distinct operands: XLA:CPU rewrites a plain sum over a long
    axis into a slow tree of reduce-windows over a materialized int32 copy, but
    leaves a variadic reduction as one fused loop.
    """
    ops = tuple(p.astype(jnp.int32) for p in preds)
    if len(ops) == 1:
        ops = (ops[0], 1 - ops[0])
    zeros = tuple(jnp.int32(0) for _ in ops)
    out = lax.reduce(ops, zeros, lambda x, y: tuple(a + b for a, b in zip(x, y, strict=True)), (0,))
    return list(out[: len(preds)])


def _unit_counts(keys, units, n_units, thresholds, active):
    """``counts[u, j] = #(key <= thresholds[u, j])`` over the arrays of each active unit ``u``."""
    totals = [jnp.zeros(thresholds.shape[1], jnp.int32) for _ in range(n_units)]
    for key, u in zip(keys, units, strict=True):
        if u not in active:
            continue
        c = _counts([key <= thresholds[u, j] for j in range(thresholds.shape[1])])
        totals[u] = totals[u] + jnp.stack(c)
    return jnp.stack(totals)


def _narrow(state, thresholds, counts, k):
    """Keeps the sub-range of ``[lo, hi]`` holding the k-th key (thresholds sorted, < hi)."""
    lo, hi, below, upto = state
    j = jnp.sum(counts < k[:, None], axis=1)  # thresholds with too few keys at or below
    t_prev = jnp.take_along_axis(thresholds, jnp.maximum(j - 1, 0)[:, None], axis=1)[:, 0]
    c_prev = jnp.take_along_axis(counts, jnp.maximum(j - 1, 0)[:, None], axis=1)[:, 0]
    fan = thresholds.shape[1]
    t_at = jnp.take_along_axis(thresholds, jnp.minimum(j, fan - 1)[:, None], axis=1)[:, 0]
    c_at = jnp.take_along_axis(counts, jnp.minimum(j, fan - 1)[:, None], axis=1)[:, 0]
    first, last, active = j == 0, j == fan, lo < hi
    new = (
        jnp.where(first, lo, t_prev + 1),
        jnp.where(last, hi, t_at),
        jnp.where(first, below, c_prev),
        jnp.where(last, upto, c_at),
    )
    return tuple(jnp.where(active, n, o) for n, o in zip(new, state, strict=True))


def _split(state, k):
    """``_FAN`` sorted thresholds in ``[lo, hi - 1]`` for the next counting pass.

    Two cut ``[lo, hi]`` into thirds, so every pass shrinks it at least 3-fold
    (at most ~21 passes on any input). The others straddle the k-th key's estimate
    from interpolating the counts at both ends, spaced by the spread of that order
    statistic were the keys in between uniform: on smooth data a pass leaves about
    ``sqrt(m)`` of the ``m`` keys in range, so 2-3 passes follow the sampled one.
    """
    lo, hi, below, upto = state
    span = hi - lo
    m = jnp.maximum(upto - below, 1).astype(jnp.float32)
    p = jnp.clip((k - below).astype(jnp.float32) - 0.5, 0.0, m) / m
    spread = span.astype(jnp.float32) * jnp.sqrt(p * (1 - p) / m) + 1.0
    offsets = jnp.arange(_FAN - 2, dtype=jnp.float32) - (_FAN - 3) / 2
    rel = (p * span.astype(jnp.float32))[:, None] + offsets * (6.0 / (_FAN - 3)) * spread[:, None]
    rel = jnp.clip(rel, 0.0, 4294967040.0).astype(jnp.uint32)  # offsets from lo, below 2**32
    thirds = (span // 3)[:, None] * jnp.array([1, 2], jnp.uint32)[None, :]
    rel = jnp.concatenate([rel, thirds], axis=1)
    t = lo[:, None] + jnp.sort(jnp.minimum(rel, jnp.maximum(span, 1)[:, None] - 1), axis=1)
    return jnp.where((lo < hi)[:, None], t, lo[:, None])


def _sampled(keys, units, sizes, k, active):
    """Thresholds around each active unit's k-th key, read from a sorted strided sample."""
    rows = []
    for u, n in enumerate(sizes):
        if u not in active:
            rows.append(jnp.zeros(_SAMPLE_FAN, jnp.uint32))
            continue
        stride = max(1, n // _SAMPLE)
        sample = jnp.sort(
            jnp.concatenate([x[::stride] for x, v in zip(keys, units, strict=True) if v == u])
        )
        m = sample.shape[0]
        frac = k[u].astype(jnp.float32) / n
        sigma = jnp.sqrt(m * frac * (1 - frac)) + 1.0
        step = 6.0 * sigma / (_SAMPLE_FAN - 1)
        offsets = jnp.arange(_SAMPLE_FAN, dtype=jnp.float32) - (_SAMPLE_FAN - 1) / 2
        pos = frac * m + offsets * step
        rows.append(sample[jnp.clip(jnp.round(pos), 0, m - 1).astype(jnp.int32)])
    return jnp.minimum(jnp.stack(rows), jnp.uint32(_TOP - 1))


def _tie_position(keys, offsets, members, v, need):
    """Position (in the unit) of the ``need``-th key equal to ``v``, from per-block counts."""
    counts, starts, leaf_of = [], [], []
    for i in members:
        key, n = keys[i], keys[i].shape[0]
        b = min(_BLOCK, n)
        rows = n // b
        eq = key == v
        # Reduced axes of at most 32 keep XLA:CPU's reduction a single fused loop.
        shape = (rows, 32, b // 32) if b % 32 == 0 else (rows, b)
        main = jnp.sum(
            eq[: rows * b].reshape(shape), axis=tuple(range(1, len(shape))), dtype=jnp.int32
        )
        counts += [main, jnp.sum(eq[rows * b :], dtype=jnp.int32)[None]]
        starts += [offsets[i] + b * np.arange(rows + 1)]
        leaf_of += [i] * (rows + 1)
    counts = jnp.concatenate(counts)
    cum = jnp.cumsum(counts)
    block = jnp.minimum(jnp.searchsorted(cum, need, side="left"), cum.shape[0] - 1)
    local = need - (cum[block] - counts[block])
    start = jnp.asarray(np.concatenate(starts), jnp.int32)[block]
    leaf = jnp.asarray(np.asarray(leaf_of), jnp.int32)[block]
    found = jnp.int32(0)
    for i in members:
        key, b = keys[i], min(_BLOCK, keys[i].shape[0])
        begin = start - offsets[i]
        idx = begin + jnp.arange(b, dtype=jnp.int32)
        eq = (jnp.take(key, idx, mode="fill", fill_value=0) == v) & (idx < key.shape[0])
        at = jnp.argmax(jnp.cumsum(eq.astype(jnp.int32)) >= local).astype(jnp.int32)
        found = jnp.where(leaf == i, start + at, found)
    return found


def _sorted_cutoff(keys, members, k):
    """``(v, last)`` of a small unit: its k-th key and position, by one stable sort."""
    key = jnp.concatenate([keys[i] for i in members])
    order = lax.iota(jnp.int32, key.shape[0])
    sorted_key, sorted_pos = lax.sort((key, order), num_keys=1, is_stable=True)
    return sorted_key[k - 1], sorted_pos[k - 1]


def lowest_k(
    keys: Sequence[jax.Array], ks: Sequence[ArrayLike], *, pooled: bool
) -> list[jax.Array]:
    """Bool arrays (one per key array) marking exactly the ``k`` lowest keys of each unit.

    With ``pooled``, all arrays form one unit and ``ks`` holds one count; else each
    array is its own unit with its own count. Ties are broken by position: earlier
    arrays first, then row-major order.

    Units of at most ``_SMALL`` elements take the k-th of one stable sort. In larger
    ones the k-th key ``v`` is found by counting passes: the sorted strided sample
    (deterministic) gives the first pass's thresholds, then each pass counts the
    keys at or below ``_FAN`` thresholds (one fused read per array, counts summed
    per unit) and keeps the key range holding the k-th, until one key is left:
    about 4 passes on smooth data, and every pass shrinks the range at least
    3-fold on any data (see :func:`_split`). The position of the last pruned key
    equal to ``v`` comes from per-block counts and one block read, and only when
    some keys equal to ``v`` stay.

    Args:
      keys: ``uint32`` arrays from :func:`sort_keys`.
      ks: how many to mark per unit, ``0 <= k <= unit size`` (int32, may be traced).
      pooled: whether all arrays form one unit.

    Returns:
      One bool array per input, True where the element is among its unit's ``k`` lowest.
    """
    shapes = [x.shape for x in keys]
    flat = [jnp.ravel(x) for x in keys]
    units = [0] * len(flat) if pooled else list(range(len(flat)))
    n_units = len(ks)
    members = [[i for i, u in enumerate(units) if u == v] for v in range(n_units)]
    sizes = [sum(flat[i].shape[0] for i in m) for m in members]
    offsets = [sum(flat[j].shape[0] for j in members[units[i]] if j < i) for i in range(len(flat))]
    k_req = jnp.stack([jnp.asarray(x, jnp.int32) for x in ks])
    k = jnp.maximum(k_req, 1)  # k == 0 is searched as k == 1, then nothing is marked

    v = [jnp.uint32(0)] * n_units
    last = [jnp.int32(0)] * n_units
    for u in range(n_units):
        if 0 < sizes[u] <= _SMALL:
            v[u], last[u] = _sorted_cutoff(flat, members[u], jnp.minimum(k[u], sizes[u]))
    big = [u for u in range(n_units) if sizes[u] > _SMALL]
    if big:
        state = (
            jnp.zeros(n_units, jnp.uint32),
            jnp.full(n_units, _TOP, jnp.uint32),
            jnp.zeros(n_units, jnp.int32),
            jnp.asarray(sizes, jnp.int32),
        )
        t = _sampled(flat, units, sizes, k, big)
        state = _narrow(state, t, _unit_counts(flat, units, n_units, t, big), k)

        def step(s):
            t = _split(s, k)
            return _narrow(s, t, _unit_counts(flat, units, n_units, t, big), k)

        lo, _, below, upto = lax.while_loop(lambda s: jnp.any(s[0] < s[1]), step, state)
        need = k - below
        for u in big:
            v[u] = lo[u]
            tie = functools.partial(_tie_position, flat, offsets, members[u], lo[u], need[u])
            everyone = need[u] >= upto[u] - below[u]  # every key equal to v is pruned
            last[u] = lax.cond(everyone, lambda n=sizes[u]: jnp.int32(n), tie)
    out = []
    for i, key in enumerate(flat):
        u = units[i]
        pos = offsets[i] + lax.iota(jnp.int32, key.shape[0])
        pruned = (key < v[u]) | ((key == v[u]) & (pos <= last[u]))
        out.append((pruned & (k_req[u] > 0)).reshape(shapes[i]))
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
      NonFiniteError: ``scores`` is concrete and holds NaN (``±inf`` are valid).

    Example:
      >>> import jax.numpy as jnp
      >>> topk_mask(jnp.array([3.0, 1.0, 2.0, 1.0]), sparsity=0.5)
      Array([ True, False,  True, False], dtype=bool)
    """
    check_sparsity(sparsity)
    check_finite(scores, where="topk_mask", name="scores", allow_inf=True)
    scores = jnp.asarray(scores)
    (keep,) = keep_masks(
        (scores,), (num_pruned(sparsity, scores.size),), structure=Unstructured(), pooled=False
    )
    return keep
