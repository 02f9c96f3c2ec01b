"""Tests for jaxzip/prune/_stats.py: mask statistics and FLOPs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from jaxzip.prune import flops, magnitude_mask, mask_stats, nonzero_mask


def test_mask_stats_hand_worked():
    mask = {"a": jnp.array([[True, False], [False, False]]), "b": jnp.array([True, True])}
    st = mask_stats(mask)
    assert st["size"] == 6 and st["nonzeros"] == 3 and st["sparsity"] == 0.5
    assert st["layers"]["a"] == {"size": 4, "nonzeros": 1, "sparsity": 0.75}
    only_a = mask_stats(mask, where="a")
    assert list(only_a["layers"]) == ["a"] and only_a["sparsity"] == 0.75
    with pytest.raises(ValueError, match="bool"):
        mask_stats({"a": jnp.ones(2)})


def test_flops_lenet5_shapes_hand_worked():
    shapes = {
        "Conv_0": (5, 5, 1, 20),
        "Conv_1": (5, 5, 20, 50),
        "Dense_0": (800, 500),
        "Dense_1": (500, 10),
    }
    params = {k: {"kernel": jnp.ones(s), "bias": jnp.ones(s[-1])} for k, s in shapes.items()}
    mask = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
    mask["Conv_1"]["kernel"] = mask["Conv_1"]["kernel"].at[:, :, :10, :].set(False)
    f = flops(params, mask, (28, 28, 1), layers=list(shapes))
    assert f["layers"]["Conv_0"]["dense"] == 2 * 24 * 24 * 25 * 20
    assert f["layers"]["Conv_1"]["dense"] == 2 * 8 * 8 * 25 * 20 * 50
    assert f["layers"]["Conv_1"]["sparse"] == 2 * 8 * 8 * 25 * 10 * 50
    assert f["layers"]["Dense_0"] == {"dense": 800_000, "sparse": 800_000}
    assert f["dense"] == sum(v["dense"] for v in f["layers"].values())


def test_flops_dense_with_mask_none_counts_nonzeros(mlp_params):
    mask = magnitude_mask(mlp_params, sparsity=0.75)
    pruned = jax.tree.map(lambda p, m: p * m, mlp_params, mask)
    f = flops(pruned, None, (16,), layers=["Dense_0", "Dense_1", "Dense_2"])
    assert f["dense"] == 2 * (192 + 96 + 32)
    assert f["sparse"] == 2 * (48 + 24 + 8)
    assert mask_stats(nonzero_mask(pruned), where=r".*/kernel")["sparsity"] == 0.75


def test_flops_bad_inputs(mlp_params):
    with pytest.raises(ValueError, match="expects 16 inputs"):
        flops(mlp_params, None, (15,), layers=["Dense_0"])
    with pytest.raises(ValueError, match="no kernel"):
        flops(mlp_params, None, (16,), layers=["Conv_0"])
    with pytest.raises(ValueError, match="pool"):
        flops(mlp_params, None, (16,), layers=["Dense_0"], pool=0)
