"""Wanda: per-output ranking of |W| * ||X||, unstructured and N:M on the input axis."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.prune import NByM, topk_mask, wanda, wanda_mask_matrix

W = jnp.array([[4.0, 0.5], [3.0, 0.1], [2.0, 0.4], [1.0, 0.2]])
NORM = jnp.array([1.0, 1.0, 1.0, 10.0])


def test_hand_worked_per_output_ranking():
    # scores |W| * ||X||: column 0 = [4, 3, 2, 10], column 1 = [0.5, 0.1, 0.4, 2.0]
    mask = wanda_mask_matrix(W, NORM, sparsity=0.5)
    np.testing.assert_array_equal(np.asarray(mask), [[1, 1], [0, 0], [0, 0], [1, 1]])
    # one ranking over the whole layer (make_mask's) prunes column 1 almost entirely:
    # the 4 lowest of all 8 scores are 0.1, 0.4, 0.5 and the first 2.0 (row 2 of column 0)
    per_layer = topk_mask(jnp.abs(W) * NORM[:, None], sparsity=0.5)
    np.testing.assert_array_equal(np.asarray(per_layer), [[1, 0], [1, 0], [0, 0], [1, 1]])
    # and the norms matter: by |W| alone column 0 would keep rows 0 and 1
    np.testing.assert_array_equal(
        np.asarray(wanda_mask_matrix(W, jnp.ones(4), sparsity=0.5))[:, 0], [1, 1, 0, 0]
    )


@pytest.mark.parametrize("seed", range(3))
def test_exact_sparsity_per_output_and_nbym(seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(16, 5)).astype(np.float32)
    norm = rng.uniform(0.1, 3.0, size=16).astype(np.float32)
    for s in (0.0, 0.25, 0.5, 0.7):
        mask = np.asarray(wanda_mask_matrix(w, norm, sparsity=s))
        assert (mask.sum(0) == 16 - round(s * 16)).all()
        # the kept scores of a column are all >= its pruned ones
        score = np.abs(w) * norm[:, None]
        for j in range(5):
            if (~mask[:, j]).any():
                assert score[mask[:, j], j].min() >= score[~mask[:, j], j].max()
    mask = np.asarray(wanda_mask_matrix(w, norm, structure=NByM(2, 4)))
    assert (mask.reshape(4, 4, 5).sum(1) == 2).all()


def test_jit_and_eager_agree():
    f = jax.jit(lambda w, n, s: wanda_mask_matrix(w, n, sparsity=s))
    np.testing.assert_array_equal(f(W, NORM, 0.5), wanda_mask_matrix(W, NORM, sparsity=0.5))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"expected a value in \[0, 1\)"):
        wanda_mask_matrix(W, NORM, sparsity=1.0)
    with pytest.raises(ValueError, match="m=3 must divide the input size 4"):
        wanda_mask_matrix(W, NORM, structure=NByM(1, 3))
    with pytest.raises(ValueError, match="in_norm must have shape"):
        wanda_mask_matrix(W, NORM[:3], sparsity=0.5)
    with pytest.raises(ValueError, match="pass sparsity"):
        wanda_mask_matrix(W, NORM)
    with pytest.raises(ValueError, match=r"prunes exactly 0\.5"):
        wanda_mask_matrix(W, NORM, sparsity=0.3, structure=NByM(2, 4))


# --- the pytree driver ---------------------------------------------------------------------


def test_driver_sequential_norms_and_structure():
    model = nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(4)])
    params = model.init(jax.random.key(0), jnp.ones((1, 8)))
    batches = [jax.random.normal(jax.random.key(i), (32, 8)) for i in range(2)]
    mask = wanda(model.apply, params, batches, sparsity=0.5)
    p = params["params"]
    x = jnp.concatenate(batches)
    m0 = wanda_mask_matrix(p["layers_0"]["kernel"], jnp.linalg.norm(x, axis=0), sparsity=0.5)
    np.testing.assert_array_equal(mask["params"]["layers_0"]["kernel"], m0)
    # layer 2's norms are those of the hidden units of the masked layer 0 (sequential)
    hid = nn.relu(x @ (p["layers_0"]["kernel"] * m0) + p["layers_0"]["bias"])
    m2 = wanda_mask_matrix(p["layers_2"]["kernel"], jnp.linalg.norm(hid, axis=0), sparsity=0.5)
    np.testing.assert_array_equal(mask["params"]["layers_2"]["kernel"], m2)
    assert mask["params"]["layers_2"]["bias"].all()
    nm = wanda(model.apply, params, batches, structure=NByM(2, 4), where=r".*layers_0/kernel")
    assert (np.asarray(nm["params"]["layers_0"]["kernel"]).reshape(2, 4, 16).sum(1) == 2).all()
    assert np.asarray(nm["params"]["layers_2"]["kernel"]).all()
    with pytest.raises(ValueError, match="no matmul or conv"):
        wanda(model.apply, params, batches, sparsity=0.5, where=r".*bias")


def test_driver_matches_numpy_rule_on_a_multi_axis_kernel():
    # The paper's rule in NumPy on a DenseGeneral kernel (in, heads, head_dim) read as the
    # (n_in, n_out) matrix of y = x @ W: score |W_ij| * ||X_i||_2 over all calibration
    # tokens, and each output column (one (head, dim) unit) keeps its top half.
    model = nn.DenseGeneral(features=(2, 4), axis=-1)
    x = jax.random.normal(jax.random.key(0), (2, 3, 5, 8)) * jnp.linspace(0.2, 3.0, 8)
    params = model.init(jax.random.key(1), x[0])
    mask = wanda(model.apply, params, list(x), sparsity=0.5)
    w = np.asarray(params["params"]["kernel"], np.float64).reshape(8, 8)
    norm = np.linalg.norm(np.asarray(x, np.float64).reshape(-1, 8), axis=0)
    score = np.abs(w) * norm[:, None]
    ref = np.zeros((8, 8), bool)
    for j in range(8):
        ref[np.argsort(-score[:, j], kind="stable")[:4], j] = True
    np.testing.assert_array_equal(np.asarray(mask["params"]["kernel"]).reshape(8, 8), ref)
