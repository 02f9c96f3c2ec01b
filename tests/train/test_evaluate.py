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
