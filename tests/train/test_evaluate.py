"""Tests for jaxzip/train/_evaluate.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.data import Dataset
from jaxzip.train import evaluate


def _five():
    """5 one-pixel-per-class examples; the identity model predicts the bright pixel."""
    x = np.array(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.5]],
        np.float32,
    )
    y = np.array([0, 1, 1, 0, 2], np.int32)  # example 2 is wrong (predicts 2, label 1)
    return Dataset(x=x.reshape(5, 1, 1, 3), y=y, num_classes=3, name="five")


def identity_apply(params, x, *, train, key):
    assert not train and key is None  # evaluate never trains
    return params * x.reshape(x.shape[0], -1)


def _reference_loss(ds, scale):
    logits = scale * ds.x.reshape(len(ds), -1).astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(ds)), ds.y].mean())


def test_partial_last_batch_counts_every_example_once():
    ds = _five()
    result = evaluate(identity_apply, jnp.float32(2.0), ds, batch_size=2)  # batches 2, 2, 1+pad
    assert result["count"] == 5
    assert result["errors"] == 1
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["error"] == pytest.approx(0.2)
    assert result["loss"] == pytest.approx(_reference_loss(ds, 2.0), rel=1e-5)
    assert type(result["loss"]) is float and type(result["errors"]) is int


@pytest.mark.parametrize("batch_size", [1, 3, 5, 1000])
def test_batch_size_does_not_change_the_result(batch_size):
    ds = _five()
    result = evaluate(identity_apply, jnp.float32(2.0), ds, batch_size=batch_size)
    assert result["errors"] == 1
    assert result["loss"] == pytest.approx(_reference_loss(ds, 2.0), rel=1e-5)


@pytest.mark.parametrize("batch_size", [2, 5])
def test_per_example_correctness_in_dataset_order(batch_size):
    r = evaluate(identity_apply, jnp.float32(2.0), _five(), batch_size=batch_size, per_example=True)
    assert r["correct"].dtype == bool and r["correct"].tolist() == [True, True, False, True, True]
    assert r["errors"] == 1 and "correct" not in evaluate(identity_apply, 2.0, _five())


def test_one_compile_for_all_batches_and_calls():
    traces = []

    def counting_apply(params, x, *, train, key):
        traces.append(x.shape)
        return params * x.reshape(x.shape[0], -1)

    ds = _five()
    evaluate(counting_apply, jnp.float32(1.0), ds, batch_size=2)
    evaluate(counting_apply, jnp.float32(3.0), ds, batch_size=2)
    assert traces == [(2, 1, 1, 3)]


def test_padding_examples_cannot_count():
    # a model that gets every padded (all-zero) example right and every real one wrong
    def wrong_on_real(params, x, *, train, key):
        flat = x.reshape(x.shape[0], -1)
        return jnp.where(flat.sum(axis=1, keepdims=True) > 0, -flat, jnp.eye(3)[0])

    result = evaluate(wrong_on_real, None, _five(), batch_size=4)
    assert result["errors"] == 5 and result["accuracy"] == 0.0


def test_bad_input():
    ds = _five()
    with pytest.raises(TypeError, match="Dataset"):
        evaluate(identity_apply, 1.0, {"x": ds.x, "y": ds.y})
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        evaluate(identity_apply, 1.0, ds, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        evaluate(identity_apply, 1.0, ds, batch_size=2.0)
    with pytest.raises(TypeError, match="per_example must be a bool"):
        evaluate(identity_apply, 1.0, ds, per_example=1)
    empty = Dataset(
        x=np.zeros((0, 1, 1, 3), np.float32), y=np.zeros(0, np.int32), num_classes=3, name="empty"
    )
    with pytest.raises(ValueError, match="'empty' is empty"):
        evaluate(identity_apply, 1.0, empty)


def test_linen_model_with_hand_set_weights(toy):
    from jaxzip.models import MLP, linen_apply_fn

    model = MLP((), num_classes=2)
    params = {
        "Dense_0": {"kernel": jnp.array([[1.0, 0], [0, 0], [0, 0], [0, 1.0]]), "bias": jnp.zeros(2)}
    }
    result = evaluate(linen_apply_fn(model), params, toy, batch_size=10)
    assert result["accuracy"] == 1.0 and result["count"] == len(toy)


# Sequence datasets: TokenWindows (N, T) with logits (N, T, C).


def bigram_apply(params, x, *, train, key):
    """Each token's logits are a row of a table."""
    return params[x]


def _windows(n=5, t=4, vocab=3, seed=0):
    from jaxzip.data import TokenWindows

    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (n, t)).astype(np.int32)
    y = rng.integers(0, vocab, (n, t)).astype(np.int32)
    return TokenWindows(x=x, y=y, vocab_size=vocab, name="toy")


def test_windows_hand_worked_bits_per_token():
    from jaxzip.data import TokenWindows

    # table rows: token 0 -> p(0) = 1/2, p(1) = p(2) = 1/4; every label is 0: 1 bit a token
    table = jnp.log(jnp.array([[0.5, 0.25, 0.25]] * 3))
    w = TokenWindows(
        x=np.zeros((3, 2), np.int32), y=np.zeros((3, 2), np.int32), vocab_size=3, name="w"
    )
    r = evaluate(bigram_apply, table, w, batch_size=2)  # batches 2, 1+pad
    assert r["count"] == 6 and r["windows"] == 3 and r["errors"] == 0
    assert r["bits_per_token"] == pytest.approx(1.0, rel=1e-6)
    assert r["loss"] == pytest.approx(np.log(2.0), rel=1e-6)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_windows_every_token_counts_once_whatever_the_batch(batch_size):
    w = _windows()
    table = np.random.default_rng(3).normal(size=(3, 3))
    logp = table - np.log(np.exp(table).sum(-1, keepdims=True))
    ref = -logp[w.x, w.y].mean()
    acc = (table[w.x].argmax(-1) == w.y).mean()
    r = evaluate(bigram_apply, jnp.asarray(table, jnp.float32), w, batch_size=batch_size)
    assert r["loss"] == pytest.approx(ref, rel=1e-5)
    assert r["bits_per_token"] == pytest.approx(ref / np.log(2), rel=1e-5)
    assert r["accuracy"] == pytest.approx(acc) and r["count"] == w.y.size


def test_windows_with_classifier_logits_are_refused():
    pooled = lambda params, x, *, train, key: params[x].mean(axis=1)  # noqa: E731
    with pytest.raises(ValueError, match=r"logits must have shape \(N, T, C\)"):
        evaluate(pooled, jnp.zeros((3, 3)), _windows())
