"""Tests for jaxzip/quant/_finetune.py."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip.quant import init_codebook_state, kmeans_params, make_codebook_step, replace_centroids

warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


def test_codebook_step_trains_centroids_and_keeps_pruned_zeros_exact():
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (32, 6))
    w_true = jax.random.normal(kw, (6, 3))
    y = x @ w_true
    mask = {"kernel": jax.random.uniform(jax.random.key(1), (6, 3)) > 0.4, "bias": True}
    params = {"kernel": jnp.where(mask["kernel"], w_true + 0.3, 0.0), "bias": jnp.zeros(3)}
    books = kmeans_params(params, bits=2, where="kernel", mask=mask, iters=5)

    def loss_fn(p, batch):
        bx, by = batch
        return jnp.mean((bx @ p["kernel"] + p["bias"] - by) ** 2)

    tx = optax.adam(0.05)
    state = init_codebook_state(books, tx)
    step = make_codebook_step(loss_fn, tx)
    losses = []
    for _ in range(20):
        state, m = step(state, books, (x, y))
        losses.append(float(m["loss"]))
    assert int(state.step) == 20
    assert losses[-1] < losses[0]
    trained = replace_centroids(books, state.trainable)
    assert state.trainable["kernel"].shape == (4,)
    w = np.asarray(trained["kernel"].decode())
    assert np.all(w[~np.asarray(mask["kernel"])] == 0.0)  # sparsity invariant
    assert len(np.unique(w[np.asarray(mask["kernel"])])) <= 4  # still shared
    assert step._cache_size() == 1  # no retrace on later calls


def test_codebook_step_does_not_delete_the_callers_arrays():
    # Regression: the step donates its state; the state must not alias the books' arrays.
    params = {"w": jnp.array([0.0, 1.0, 2.0, 3.0]), "b": jnp.ones(3)}
    books = kmeans_params(params, bits=1, where="w")
    tx = optax.adam(0.1)
    state = init_codebook_state(books, tx)

    def loss_fn(p, target):
        return jnp.sum((p["w"] - target) ** 2) + jnp.sum(p["b"] ** 2)

    state, _ = make_codebook_step(loss_fn, tx)(state, books, jnp.ones(4))
    assert not params["b"].is_deleted()
    assert not jax.tree.leaves(books)[0].is_deleted()
    np.testing.assert_array_equal(params["b"], np.ones(3))
