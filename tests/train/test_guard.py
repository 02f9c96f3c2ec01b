"""Tests for jaxzip/train/_guard.py: the NaN/Inf guard of make_train_step and fit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip._errors import NonFiniteError
from jaxzip.data import Dataset
from jaxzip.train import fit, init_state, make_train_step, raise_if_nonfinite


def _batch(ds, n=8):
    return {"x": ds.x[:n], "y": ds.y[:n]}


def test_checked_step_equals_unchecked_step_on_finite_data(toy, linear, linear_params):
    tx = optax.adam(0.1)
    plain, checked = make_train_step(linear, tx), make_train_step(linear, tx, check_finite=True)
    s1, m1 = plain(init_state(linear_params, tx), _batch(toy), jax.random.key(0))
    s2, m2 = checked(init_state(linear_params, tx), _batch(toy), jax.random.key(0))
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert sorted(m1) == ["accuracy", "loss"]
    assert sorted(m2) == ["accuracy", "finite", "loss", "nonfinite"] and bool(m2["finite"])
    counts = m2["nonfinite"]
    assert counts["loss"].shape == (1, 2) and counts["grads"].shape == (2, 2)
    assert not any(np.asarray(c).any() for c in counts.values())
    raise_if_nonfinite(m2, s2, where="step 1")  # finite: returns


def test_bad_step_keeps_the_state_and_reports_paths(toy, linear, linear_params):
    tx = optax.sgd(0.1)
    step = make_train_step(linear, tx, check_finite=True)
    state, _ = step(init_state(linear_params, tx), _batch(toy), jax.random.key(0))
    before = jax.tree.map(np.asarray, state)
    x = np.array(toy.x[:8])
    x[3, 0, 0, 0] = np.inf  # one input pixel: its Inf logit makes the loss and gradients NaN
    state, metrics = step(state, {"x": x, "y": toy.y[:8]}, jax.random.key(1))
    assert not bool(metrics["finite"])
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)  # step 2 was not applied
    assert int(state.step) == 1
    with pytest.raises(
        NonFiniteError,
        match=r"^step 2: loss is NaN; gradient 'b' has \d+ NaN; gradient 'w' has \d+ NaN",
    ) as e:
        raise_if_nonfinite(metrics, state, where="step 2")
    assert e.value.paths == ("b", "w") and e.value.state is state
    assert "the state holds the last finite params" in str(e.value)


def test_bad_arguments(linear, linear_params):
    with pytest.raises(TypeError, match="check_finite must be a bool"):
        make_train_step(linear, optax.sgd(0.1), check_finite="yes")
    state = init_state(linear_params, optax.sgd(0.1))
    with pytest.raises(ValueError, match="build the step with check_finite=True"):
        raise_if_nonfinite({"loss": jnp.zeros(())}, state, where="step 1")


def test_fit_stops_at_the_first_bad_step_with_the_last_finite_state(linear, linear_params):
    # A huge learning rate overflows the logits after a few steps: the loss goes Inf/NaN.
    rng = np.random.default_rng(0)
    ds = Dataset(
        x=rng.uniform(size=(8, 2, 2, 1)).astype(np.float32),
        y=rng.integers(0, 2, 8).astype(np.int32),
        num_classes=2,
        name="toy",
    )

    def sgd(lr, *, epochs, check_finite):
        return fit(
            linear,
            linear_params,
            optax.sgd(lr),
            ds,
            epochs=epochs,
            batch_size=4,
            key=jax.random.key(0),
            progress=False,
            check_finite=check_finite,
        )

    with pytest.raises(NonFiniteError, match=r"^fit: step (\d+) \(epoch \d+, batch \d+\): ") as e:
        sgd(1e38, epochs=20, check_finite=True)
    bad_step = int(str(e.value).split()[2])
    assert bad_step >= 2  # the first steps are finite
    state = e.value.state
    assert int(state.step) == bad_step - 1
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.params))
    assert set(e.value.paths) <= {"b", "w"}  # empty when only the loss overflowed
    assert "loss is" in str(e.value) or e.value.paths
    with pytest.raises(TypeError, match="check_finite must be a bool"):
        sgd(0.1, epochs=1, check_finite=None)
