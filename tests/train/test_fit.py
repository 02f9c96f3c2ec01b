"""Tests for jaxzip/train/_fit.py."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest

from jaxzip.train import fit

KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}


def test_history_and_learning(toy, linear, linear_params):
    state, history = fit(
        linear,
        linear_params,
        optax.sgd(1.0),
        toy,
        epochs=3,
        batch_size=8,
        seed=0,
        val_ds=toy,
        progress=False,
    )
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(set(h) == KEYS for h in history)
    assert all(isinstance(h[k], float) for h in history for k in KEYS - {"epoch"})
    assert int(state.step) == 3 * (32 // 8)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] == 1.0
    assert history[0]["train_loss"] < np.log(2.0)  # the mean over the epoch's 4 steps


def test_same_seed_same_result_other_seed_other_order(toy, linear, linear_params):
    def run(seed):
        args = {"epochs": 1, "batch_size": 5, "seed": seed, "progress": False}
        return fit(linear, linear_params, optax.sgd(1.0), toy, **args)[0].params

    a, b, c = run(0), run(0), run(1)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["w"], c["w"])


def test_drops_the_incomplete_batch_and_leaves_params_usable(toy, linear, linear_params):
    state, history = fit(
        linear,
        linear_params,
        optax.sgd(1.0),
        toy,
        epochs=1,
        batch_size=10,
        seed=0,
        progress=False,
    )
    assert int(state.step) == 3  # 32 examples, batches of 10: the last 2 are dropped
    assert history[0]["val_loss"] is None and history[0]["val_accuracy"] is None
    np.testing.assert_array_equal(linear_params["w"], 0.0)


def test_progress_goes_to_stderr(toy, linear, linear_params, capsys):
    fit(
        linear,
        linear_params,
        optax.sgd(1.0),
        toy,
        epochs=1,
        batch_size=8,
        seed=0,
        val_ds=toy,
        progress=True,
    )
    out, err = capsys.readouterr()
    assert out == ""
    assert "epoch 1/1" in err and "loss=" in err and "val_acc=1.0000" in err


def test_silent_without_progress(toy, linear, linear_params, capsys):
    fit(linear, linear_params, optax.sgd(1.0), toy, epochs=1, batch_size=8, seed=0, progress=False)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs must be at least 1"),
        ({"epochs": 1.5}, TypeError, "epochs must be an int"),
        ({"batch_size": 33}, ValueError, "batch_size=33 exceeds the 32"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"seed": -1}, ValueError, "seed must be at least 0"),
        ({"seed": None}, TypeError, "seed must be an int"),
        ({"val_ds": "val"}, TypeError, r"val_ds must be a jaxzip\.data\.Dataset"),
    ],
)
def test_bad_arguments(kwargs, error, match, toy, linear, linear_params):
    args = {"epochs": 1, "batch_size": 8, "seed": 0, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        fit(linear, linear_params, optax.sgd(1.0), toy, **args)


def test_train_ds_must_be_a_dataset(toy, linear, linear_params):
    with pytest.raises(TypeError, match=r"train_ds must be a jaxzip\.data\.Dataset"):
        fit(linear, linear_params, optax.sgd(1.0), (toy.x, toy.y), epochs=1, batch_size=8, seed=0)
