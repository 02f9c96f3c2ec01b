"""Tests for jaxzip/prune/_topk.py: exact, tie-broken, jittable lowest-k selection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxzip.prune._structures import Unstructured
from jaxzip.prune._topk import _SMALL, keep_masks, num_pruned, sort_keys, topk_mask


def _reference_pruned(arrays: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Sort-based reference: ascending score, ties by (leaf, row-major index)."""
    flat = np.concatenate([a.ravel() for a in arrays]).astype(np.float32)
    order = np.lexsort((np.arange(flat.size), flat))
    pruned = np.zeros(flat.size, bool)
    pruned[order[:k]] = True
    out, start = [], 0
    for a in arrays:
        out.append(pruned[start : start + a.size].reshape(a.shape))
        start += a.size
    return out


def test_hand_worked_ties_prune_lower_index_first():
    scores = jnp.array([2.0, 1.0, 1.0, 1.0, 3.0])
    # k = round(0.4 * 5) = 2: both pruned among the three tied 1.0s are the first two.
    assert topk_mask(scores, sparsity=0.4).tolist() == [True, False, False, True, True]


def test_sort_keys_preserve_order_and_merge_signed_zero():
    x = jnp.array([-jnp.inf, -3.0, -1e-30, -0.0, 0.0, 1e-30, 2.0, jnp.inf])
    keys = np.asarray(sort_keys(x)).astype(np.int64)
    assert np.all(np.diff(keys) >= 0)
    assert keys[3] == keys[4]
    assert np.count_nonzero(np.diff(keys) == 0) == 1


@settings(max_examples=30, deadline=None)
@given(
    shapes=st.lists(
        st.sampled_from([(1,), (7,), (3, 4), (2, 3, 2), (5, 5)]), min_size=1, max_size=2
    ),
    sparsity=st.floats(0.0, 0.99),
    levels=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_lowest_k_matches_sort_reference_with_many_ties(shapes, sparsity, levels, seed):
    rng = np.random.default_rng(seed)
    # Few distinct levels -> many equal scores, the hard case for exactness.
    arrays = [rng.integers(0, levels, size=s).astype(np.float32) for s in shapes]
    n = sum(a.size for a in arrays)
    k = round(sparsity * n)
    kept = keep_masks(tuple(arrays), (k,), structure=Unstructured(), pooled=True)
    for g, want in zip(kept, _reference_pruned(arrays, k), strict=True):
        np.testing.assert_array_equal(~np.asarray(g), want)
    assert sum(int(np.sum(~np.asarray(g))) for g in kept) == k


def test_num_pruned_is_round_of_product():
    assert int(num_pruned(0.25, 10)) == 2  # round half to even, like Python's round
    assert int(num_pruned(0.35, 10)) == round(0.35 * 10)
    assert int(jax.jit(lambda s: num_pruned(s, 10))(jnp.float32(0.7))) == 7


def test_traced_sparsity_jit_and_vmap_agree_with_eager():
    scores = jax.random.normal(jax.random.key(0), (7, 9))
    eager = [topk_mask(scores, sparsity=s) for s in (0.0, 0.3, 0.9)]
    jitted = jax.jit(lambda x, s: topk_mask(x, sparsity=s))
    vmapped = jax.vmap(lambda s: topk_mask(scores, sparsity=s))(jnp.array([0.0, 0.3, 0.9]))
    for i, s in enumerate((0.0, 0.3, 0.9)):
        np.testing.assert_array_equal(jitted(scores, s), eager[i])
        np.testing.assert_array_equal(vmapped[i], eager[i])
        assert int(np.sum(~np.asarray(eager[i]))) == round(s * 63)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range_raises(bad):
    with pytest.raises(ValueError, match="sparsity"):
        topk_mask(jnp.ones(4), sparsity=bad)


@pytest.mark.parametrize("levels", [3, 0])
def test_large_units_use_counting_passes_and_match_sort_reference(levels):
    # Over _SMALL elements in a pooled unit: sample bracket, counting passes, block tie search.
    rng = np.random.default_rng(levels)
    shapes = [(301, 250), (20_011,)]  # sizes not multiples of the tie-search block
    if levels:  # a few distinct values: the cutoff falls inside a huge run of ties
        arrays = [rng.integers(0, levels, size=s).astype(np.float32) for s in shapes]
    else:
        arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    arrays[1][::7] = arrays[0].ravel()[:2859]  # exact duplicates across leaves
    n = sum(a.size for a in arrays)
    assert n > _SMALL
    fn = jax.jit(lambda k: keep_masks(tuple(arrays), (k,), structure=Unstructured(), pooled=True))
    ks = [0, n // 3, round(0.9 * n), n - 1]
    batched = jax.vmap(fn)(jnp.array(ks[:2], jnp.int32)) if levels else None
    for i, k in enumerate(ks):
        kept = fn(jnp.int32(k))
        for g, want in zip(kept, _reference_pruned(arrays, k), strict=True):
            np.testing.assert_array_equal(~np.asarray(g), want)
        if batched is not None and i < 2:
            for g, b in zip(kept, batched, strict=True):
                np.testing.assert_array_equal(np.asarray(g), np.asarray(b[i]))


def test_large_per_leaf_units_are_exact_each():
    rng = np.random.default_rng(5)
    arrays = [
        rng.standard_normal((70_001,)).astype(np.float32),
        rng.random((9, 9)).astype(np.float32),
    ]
    ks = (12_345, 40)
    kept = keep_masks(tuple(arrays), ks, structure=Unstructured(), pooled=False)
    for g, a, k in zip(kept, arrays, ks, strict=True):
        np.testing.assert_array_equal(~np.asarray(g), _reference_pruned([a], k)[0])


def test_topk_mask_rejects_nan_scores_when_concrete():
    with pytest.raises(ValueError, match=r"^scores: holds 1 NaN value\(s\) \(of 3\); topk_mask"):
        topk_mask(jnp.array([1.0, jnp.nan, 2.0]), sparsity=0.5)
    assert topk_mask(jnp.array([jnp.inf, -jnp.inf, 0.0]), sparsity=0.34).tolist() == [
        True,
        False,
        True,
    ]
