"""Tests for jaxzip/distill/_fit.py: ``fit`` is make_train_step run over epochs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxzip as jz
from jaxzip.distill import fit, kd_loss, make_train_step


def _linear(params, x, *, train, key):
    return x.reshape(len(x), -1) @ params["w"] + params["b"]


def _teacher():
    return {"w": 2.0 * jnp.eye(4)[:, :3], "b": jnp.zeros(3)}


@pytest.fixture
def ds():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(16, 2, 2, 1)).astype(np.float32)
    return jz.data.Dataset(x=x, y=rng.integers(0, 3, 16).astype(np.int32), num_classes=3, name="t")


def test_fit_is_the_distill_step_over_epochs(ds):
    """Same params and history as the step and run_epochs written out by hand."""
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
    tx, loss = optax.adam(0.1), kd_loss(temperature=2.0, alpha=0.7)
    shift = jz.train.RandomShift(pixels=1)
    kw = {"epochs": 3, "batch_size": 4, "key": jax.random.key(5), "progress": False}
    state, history = fit(
        _linear,
        params,
        tx,
        ds,
        teacher_apply=_linear,
        teacher_params=_teacher(),
        loss=loss,
        augment=shift,
        **kw,
    )
    step = make_train_step(_linear, _linear, tx, loss=loss, augment=shift)
    want, want_history = jz.train.run_epochs(
        lambda s, b, k: step(s, _teacher(), b, k),
        jz.train.init_state(params, tx),
        ds,
        desc="distill",
        **kw,
    )
    assert int(state.step) == 12
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    drop = ("seconds",)
    assert [{k: v for k, v in h.items() if k not in drop} for h in history] == [
        {k: v for k, v in h.items() if k not in drop} for h in want_history
    ]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert np.all(np.asarray(params["w"]) == 0)  # not consumed


def test_val_ds_adds_the_students_validation_figures(ds):
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
    state, history = fit(
        _linear,
        params,
        optax.sgd(0.5),
        ds,
        teacher_apply=_linear,
        teacher_params=_teacher(),
        loss=kd_loss(temperature=1.0, alpha=1.0),
        epochs=2,
        batch_size=8,
        key=jax.random.key(0),
        val_ds=ds,
        progress=False,
    )
    m = jz.train.evaluate(_linear, state.params, ds)
    assert history[-1]["val_accuracy"] == pytest.approx(float(m["accuracy"]))
    assert history[-1]["val_loss"] == pytest.approx(float(m["loss"]))


def test_bad_input_is_named(ds):
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
    kw = {"teacher_apply": _linear, "teacher_params": _teacher(), "progress": False}
    with pytest.raises(TypeError, match="loss must be a loss function"):
        fit(
            _linear,
            params,
            optax.sgd(0.1),
            ds,
            loss=None,
            epochs=1,
            batch_size=4,
            key=jax.random.key(0),
            **kw,
        )
    with pytest.raises(ValueError, match="batch_size"):
        fit(
            _linear,
            params,
            optax.sgd(0.1),
            ds,
            loss=kd_loss(temperature=1.0, alpha=1.0),
            epochs=1,
            batch_size=17,
            key=jax.random.key(0),
            **kw,
        )
