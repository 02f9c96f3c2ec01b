"""Numerical safety of distillation: losses at extreme temperatures and logits, in float32 and
bfloat16, against float64 references; the NaN/Inf guard of the distillation train steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip.distill import (
    dkd_loss,
    kd_loss,
    kl_divergence,
    make_train_step,
    make_vmapped_train_step,
    soft_cross_entropy,
    stack_states,
)
from jaxzip.train import init_state, raise_if_nonfinite

TEMPERATURES = [0.05, 100.0, 1000.0]
DTYPES = [jnp.float32, jnp.bfloat16]
# Logits up to 1e4 (exact in bfloat16's 8-bit mantissa only for the round values used here).
S = np.array(
    [[1e4, -1e4, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [50.0, 48.0, -3.0, 2.0], [-1e4, 1e4, 1e4, -5.0]]
)
T = np.array(
    [
        [-1e4, 1e4, 5.0, 0.0],
        [300.0, -300.0, 0.0, 1.0],
        [48.0, 50.0, 1.0, 2.0],
        [1e4, -1e4, 1e4, 7.0],
    ]
)
Y = np.array([1, 0, 2, 3], np.int32)


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _kl64(s, t, temperature):
    ls, lt = _log_softmax64(s / temperature), _log_softmax64(t / temperature)
    pt = np.exp(lt)
    return np.where(pt > 0, pt * (lt - ls), 0.0).sum(-1)


def _inputs(dtype):
    s, t = jnp.asarray(S, dtype), jnp.asarray(T, dtype)
    # the float64 reference sees exactly the (rounded) inputs the loss sees
    return s, t, np.asarray(s, np.float64), np.asarray(t, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_kl_and_soft_ce_match_float64(temperature, dtype):
    s, t, s64, t64 = _inputs(dtype)
    kl = kl_divergence(s, t, temperature=temperature)
    want = _kl64(s64, t64, temperature)
    assert kl.dtype == jnp.float32
    np.testing.assert_allclose(kl, want, rtol=2e-4, atol=1e-6)
    lt = _log_softmax64(t64 / temperature)
    ce = -(np.exp(lt) * _log_softmax64(s64 / temperature)).sum(-1)
    np.testing.assert_allclose(soft_cross_entropy(s, t, temperature=temperature), ce, rtol=2e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_kd_loss_value_and_gradient_match_float64(temperature, dtype):
    s, t, s64, t64 = _inputs(dtype)
    alpha = 0.9
    loss = kd_loss(temperature=temperature, alpha=alpha)
    per_example, terms = loss(s, t, Y)
    ce64 = -_log_softmax64(s64)[np.arange(4), Y]
    kd64 = temperature**2 * _kl64(s64, t64, temperature)
    np.testing.assert_allclose(terms["kd"], kd64, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(per_example, alpha * kd64 + (1 - alpha) * ce64, rtol=2e-4)
    # d/ds: alpha * T * (softmax(s/T) - softmax(t/T)) + (1 - alpha) * (softmax(s) - onehot)
    grad = jax.grad(lambda a: loss(a, t, Y)[0].sum())(s.astype(jnp.float32))
    p_s, p_t = np.exp(_log_softmax64(s64 / temperature)), np.exp(_log_softmax64(t64 / temperature))
    want = alpha * temperature * (p_s - p_t) + (1 - alpha) * (
        np.exp(_log_softmax64(s64)) - np.eye(4)[Y]
    )
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, want, rtol=1e-3, atol=1e-4 * max(1.0, temperature))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_dkd_loss_is_finite_with_finite_gradients(temperature, dtype):
    s, t, _, _ = _inputs(dtype)
    loss = dkd_loss(temperature=temperature)
    per_example, terms = loss(s, t, Y)
    assert np.all(np.isfinite(per_example)) and all(np.all(np.isfinite(v)) for v in terms.values())
    assert np.all(np.asarray(terms["tckd"]) >= -1e-3) and np.all(np.asarray(terms["nckd"]) >= -1e-3)
    gs, gt = jax.grad(lambda a, b: loss(a, b, Y)[0].sum(), argnums=(0, 1))(s, t)
    assert np.all(np.isfinite(np.asarray(gs, np.float32)))
    assert np.all(np.isfinite(np.asarray(gt, np.float32)))


def test_identical_extreme_logits_give_zero_divergence():
    z = jnp.asarray(S, jnp.float32)
    for temperature in TEMPERATURES:
        np.testing.assert_allclose(kl_divergence(z, z, temperature=temperature), 0.0, atol=1e-6)
        per_example, _ = dkd_loss(temperature=temperature, ce_weight=0.0)(z, z, Y)
        np.testing.assert_allclose(per_example, 0.0, atol=1e-6)


# --- the NaN/Inf guard of the distillation steps ------------------------------------------


def _linear(params, x, *, train, key):
    return x @ params["w"]


def _batch(x):
    return {"x": jnp.asarray(x, jnp.float32), "y": jnp.array([0, 1])}


def test_distill_step_guard_keeps_state_and_names_the_paths():
    tx = optax.sgd(0.1)
    loss = kd_loss(temperature=2.0, alpha=0.5)
    step = make_train_step(_linear, _linear, tx, loss=loss, check_finite=True)
    state = init_state({"w": jnp.zeros((2, 2))}, tx)
    teacher = {"w": 3.0 * jnp.eye(2)}
    state, metrics = step(state, teacher, _batch(np.eye(2)), jax.random.key(0))
    assert bool(metrics["finite"]) and int(state.step) == 1
    assert not np.any(np.asarray(metrics["nonfinite"]["grads"]))
    raise_if_nonfinite(metrics, state, where="step 1")  # passes
    before = np.asarray(state.params["w"])
    state, metrics = step(state, teacher, _batch([[np.nan, 0.0], [0.0, 1.0]]), jax.random.key(0))
    assert not bool(metrics["finite"]) and int(state.step) == 1
    np.testing.assert_array_equal(state.params["w"], before)
    with pytest.raises(ValueError, match=r"step 2: loss is NaN; gradient 'w' has \d+ NaN") as e:
        raise_if_nonfinite(metrics, state, where="step 2")
    assert e.value.paths == ("w",) and e.value.state is state


def test_distill_step_without_guard_has_no_extra_metrics():
    tx = optax.sgd(0.1)
    step = make_train_step(_linear, _linear, tx, loss=kd_loss(temperature=2.0, alpha=0.5))
    state = init_state({"w": jnp.zeros((2, 2))}, tx)
    _, metrics = step(state, {"w": jnp.eye(2)}, _batch(np.eye(2)), jax.random.key(0))
    assert sorted(metrics) == ["accuracy", "ce", "kd", "loss"]
    with pytest.raises(ValueError, match="check_finite=True"):
        raise_if_nonfinite(metrics, state, where="step 1")
    with pytest.raises(TypeError, match="check_finite must be a bool"):
        make_train_step(
            _linear, _linear, tx, loss=kd_loss(temperature=2.0, alpha=0.5), check_finite=1
        )


def test_vmapped_guard_only_holds_back_the_bad_student():
    tx = optax.sgd(0.1)
    step = make_vmapped_train_step(_linear, _linear, tx, make_loss=kd_loss, check_finite=True)
    bad_w = jnp.array([[np.nan, 0.0], [0.0, 0.0]])
    states = stack_states([init_state({"w": jnp.zeros((2, 2))}, tx), init_state({"w": bad_w}, tx)])
    hparams = {"temperature": jnp.array([1.0, 2.0]), "alpha": jnp.array([0.5, 0.5])}
    keys = jax.random.split(jax.random.key(0), 2)
    states, metrics = step(states, {"w": jnp.eye(2)}, _batch(np.eye(2)), keys, hparams)
    assert np.asarray(metrics["finite"]).tolist() == [True, False]
    assert metrics["nonfinite"]["params"].shape == (2, 1, 2)
    assert np.asarray(states.step).tolist() == [1, 0]
    np.testing.assert_array_equal(states.params["w"][1], bad_w)  # held back, not advanced
    with pytest.raises(ValueError, match=r"step 1 \(students \[1\]\): loss is NaN"):
        raise_if_nonfinite(metrics, states, where="step 1")
