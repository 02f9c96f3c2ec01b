"""Tests for jaxzip/quant/_finetune.py."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

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


def _toy_classifier():
    """A pruned, 2-bit weight-shared linear classifier of 64 separable 2x2 images."""
    from jaxzip.data import Dataset

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 64).astype(np.int32)
    x = rng.uniform(0.0, 0.2, (64, 4)).astype(np.float32)
    x[np.arange(64), y] = 1.0
    ds = Dataset(x=x.reshape(64, 2, 2, 1), y=y, num_classes=3, name="toy")
    kernel = np.asarray(jax.random.normal(jax.random.key(2), (4, 3))) * 0.1
    kernel[3] = 0.0  # the unused 4th pixel's weights are pruned
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(3)}
    mask = {"kernel": jnp.asarray(kernel != 0), "bias": jnp.ones(3, bool)}
    books = kmeans_params(params, bits=2, where="kernel", mask=mask, iters=5)

    def apply_fn(p, x, *, train, key):
        return x.reshape(len(x), -1) @ p["kernel"] + p["bias"]

    return apply_fn, books, ds


def test_finetune_codebooks_trains_the_centroids_over_epochs():
    from jaxzip.distill import kd_loss
    from jaxzip.quant import dequantize_params, finetune_codebooks
    from jaxzip.train import evaluate

    apply_fn, books, ds = _toy_classifier()
    kw = {"epochs": 4, "batch_size": 16, "key": jax.random.key(0)}
    tuned = finetune_codebooks(apply_fn, books, ds, optax.adam(0.1), **kw)
    before = evaluate(apply_fn, dequantize_params(books), ds)
    after = evaluate(apply_fn, dequantize_params(tuned), ds)
    assert float(after["loss"]) < float(before["loss"]) and float(after["accuracy"]) > 0.9
    w = np.asarray(tuned["kernel"].decode())
    assert np.all(w[3] == 0) and np.unique(w[:3]).size <= 4  # pruned zeros, 4 shared values
    assert np.array_equal(np.asarray(tuned["kernel"].indices), np.asarray(books["kernel"].indices))
    # distilled from a teacher instead of the labels: another loss, other centroids
    teacher = {"kernel": 5.0 * jnp.eye(4)[:, :3], "bias": jnp.zeros(3)}
    kd = kd_loss(temperature=2.0, alpha=1.0)
    distilled = finetune_codebooks(
        apply_fn, books, ds, optax.adam(0.1), loss=kd, teacher_params=teacher, **kw
    )
    assert not np.allclose(distilled["kernel"].centroids, tuned["kernel"].centroids)
    with pytest.raises(ValueError, match=r"loss and teacher_params go together.*None$"):
        finetune_codebooks(apply_fn, books, ds, optax.adam(0.1), loss=kd, **kw)
    with pytest.raises(ValueError, match="got loss=None and teacher_params given"):
        finetune_codebooks(apply_fn, books, ds, optax.adam(0.1), teacher_params=teacher, **kw)
