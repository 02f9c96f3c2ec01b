"""Tests for jaxzip/distill/_vmap.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip.distill import (
    kd_loss,
    make_train_step,
    make_vmapped_train_step,
    stack_states,
    unstack_states,
)
from jaxzip.train import init_state


def _linear(params, x, *, train, key):
    h = x.reshape(x.shape[0], -1) @ params["w"] + params["b"]
    if train:  # key-dependent noise, so the per-student keys matter
        h = h + 0.01 * jax.random.normal(key, h.shape)
    return h


def _params(seed):
    return {"w": 0.5 * jax.random.normal(jax.random.key(seed), (4, 3)), "b": jnp.zeros(3)}


def _batch(seed):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(8, 2, 2, 1)).astype(np.float32),
        "y": rng.integers(0, 3, 8).astype(np.int32),
    }


def test_each_vmapped_student_equals_its_separately_trained_twin():
    tx = optax.adam(0.05)
    temps, alphas, seeds = [1.0, 2.0, 4.0], [0.9, 0.5, 0.0], [0, 1, 2]
    teacher = _params(10)
    vstep = make_vmapped_train_step(_linear, _linear, tx, make_loss=kd_loss)
    states = stack_states([init_state(_params(s), tx) for s in seeds])
    keys = jax.random.split(jax.random.key(7), 3)
    hparams = {"temperature": np.array(temps), "alpha": np.array(alphas)}
    for i in range(3):
        states, vmetrics = vstep(states, teacher, _batch(i), keys, hparams)
    for k, twin in enumerate(unstack_states(states)):
        step = make_train_step(
            _linear, _linear, tx, loss=kd_loss(temperature=temps[k], alpha=alphas[k])
        )
        state = init_state(_params(seeds[k]), tx)
        for i in range(3):
            state, metrics = step(state, teacher, _batch(i), keys[k])
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            twin.params,
            state.params,
        )
        assert float(vmetrics["loss"][k]) == pytest.approx(float(metrics["loss"]), rel=1e-5)
        assert int(twin.step) == 3


def test_stack_states_bad_input():
    tx = optax.sgd(0.1)
    with pytest.raises(ValueError, match="non-empty"):
        stack_states([])
    with pytest.raises(ValueError, match="states\\[1\\] differs"):
        stack_states([init_state(jnp.zeros(3), tx), init_state(jnp.zeros(4), tx)])
    with pytest.raises(TypeError, match="TrainState"):
        stack_states([jnp.zeros(3)])


def test_vmapped_step_bad_input():
    tx = optax.sgd(0.1)
    vstep = make_vmapped_train_step(_linear, _linear, tx, make_loss=kd_loss)
    states = stack_states([init_state(_params(0), tx)] * 2)
    keys = jax.random.split(jax.random.key(0), 2)
    ok = {"temperature": np.array([1.0, 2.0]), "alpha": np.array([0.5, 0.5])}
    with pytest.raises(ValueError, match="temperature"):
        vstep(states, _params(1), _batch(0), keys, {**ok, "temperature": np.array([1.0, 0.0])})
    with pytest.raises(ValueError, match="alpha"):
        vstep(states, _params(1), _batch(0), keys, {**ok, "alpha": np.array([0.5, 2.0])})
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        vstep(states, _params(1), _batch(0), keys, {**ok, "alpha": np.array([0.5])})
    with pytest.raises(ValueError, match="2 PRNG keys"):
        vstep(states, _params(1), _batch(0), keys[:1], ok)
    with pytest.raises(ValueError, match="stack_states"):
        vstep(init_state(_params(0), tx), _params(1), _batch(0), keys, ok)
