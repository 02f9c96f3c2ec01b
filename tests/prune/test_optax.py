"""Tests for jaxzip/prune/_optax.py: keep_masked and gradual_pruning inside jitted steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip.prune import (
    Channel,
    GradualPruningState,
    NByM,
    apply_mask,
    gradual_pruning,
    keep_masked,
    magnitude_mask,
    polynomial_sparsity,
)


def _loss(params, x):
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    h = jnp.tanh(h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    return jnp.mean((h @ params["Dense_2"]["kernel"] - 1.0) ** 2)


def _make_step(tx):
    @jax.jit
    def step(params, opt_state, x):
        grads = jax.grad(_loss)(params, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def test_keep_masked_keeps_exact_zeros_through_100_adamw_steps(mlp_params):
    mask = magnitude_mask(mlp_params, sparsity=0.8)
    tx = optax.chain(optax.adamw(1e-2, weight_decay=0.1), keep_masked(mask))
    # Unmasked start: the first update zeroes pruned weights (w + (-w) == 0 exactly).
    params, state = mlp_params, tx.init(mlp_params)
    step = _make_step(tx)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16)), jnp.float32)
    before = params
    for _ in range(100):
        params, state = step(params, state, x)
    for p, m, b in zip(
        jax.tree.leaves(params), jax.tree.leaves(mask), jax.tree.leaves(before), strict=True
    ):
        p, m = np.asarray(p), np.asarray(m)
        assert np.all(p[~m] == 0.0) and not np.signbit(p[~m]).any()
        assert np.any(p[m] != np.asarray(b)[m])  # the kept weights did train


def test_masked_update_is_minus_params_bitwise():
    w = jnp.array([0.1, 1e-30, -3.3e38, 7.77, -0.0])
    mask = {"w": jnp.array([False, False, False, True, False])}
    tx = keep_masked(mask)
    updates, _ = tx.update({"w": jnp.full(5, 0.25)}, tx.init({"w": w}), {"w": w})
    new = optax.apply_updates({"w": w}, updates)["w"]
    assert np.asarray(new).tolist() == [0.0, 0.0, 0.0, pytest.approx(8.02), 0.0]


def test_gradual_pruning_follows_schedule_masks_inside_jit_and_does_not_retrace(mlp_params):
    sched = polynomial_sparsity(0.75, begin_step=0, end_step=8, update_every=2)
    tx = optax.chain(
        optax.sgd(1e-2, momentum=0.9),
        gradual_pruning(sched, update_every=2, where=r".*/kernel"),
    )
    traces = []

    @jax.jit
    def step(params, opt_state, x):
        traces.append(1)
        grads = jax.grad(_loss)(params, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, state = mlp_params, tx.init(mlp_params)
    x = jnp.ones((4, 16))
    for t in range(10):
        params, state = step(params, state, x)
        gp = state[1]
        assert isinstance(gp, GradualPruningState) and int(gp.count) == t + 1
        want = float(sched(t - t % 2))
        k = params["Dense_0"]["kernel"]
        assert int(np.sum(np.asarray(k) == 0)) == round(want * k.size)
        # Params after apply_updates are already masked, with the state's mask.
        masked = apply_mask(params, gp.mask)
        jax.tree.map(np.testing.assert_array_equal, params, masked)
    assert len(traces) == 1
    assert float(state[1].sparsity) == pytest.approx(0.75)


def test_gradual_pruning_jit_matches_eager(mlp_params):
    tx = gradual_pruning(lambda t: 0.5, update_every=1, structure=Channel())
    updates = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), mlp_params)
    eager, _ = tx.update(updates, tx.init(mlp_params), mlp_params)
    jitted, _ = jax.jit(tx.update)(updates, tx.init(mlp_params), mlp_params)
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)


def test_bad_use_raises_clear_errors(mlp_params):
    tx = keep_masked(jax.tree.map(lambda p: jnp.ones(p.shape, bool), mlp_params))
    state = tx.init(mlp_params)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(mlp_params, state)
    gp = gradual_pruning(lambda t: 0.5, update_every=1)
    with pytest.raises(ValueError, match="needs params"):
        gp.update(mlp_params, gp.init(mlp_params))
    with pytest.raises(ValueError, match="update_every"):
        gradual_pruning(lambda t: 0.5, update_every=0)
    with pytest.raises(ValueError, match="NByM"):
        gradual_pruning(lambda t: 0.5, update_every=1, structure=NByM(2, 4))
    with pytest.raises(ValueError, match="selects no leaf"):
        gradual_pruning(lambda t: 0.5, update_every=1, where="nothing").init(mlp_params)
    with pytest.raises(ValueError, match="Dense_0/kernel"):
        keep_masked({"Dense_0": {"kernel": jnp.ones((2, 2), bool)}}).init(mlp_params)


def test_keep_masked_state_does_not_alias_the_callers_mask():
    # Regression: fit/make_train_step donate the state; the caller's mask must survive.
    import jax.numpy as jnp
    import optax as _optax

    from jaxzip.prune import keep_masked as _keep_masked

    params = {"w": jnp.array([1.0, 2.0, 3.0])}
    mask = {"w": jnp.array([True, False, True])}
    tx = _optax.chain(_optax.sgd(0.1), _keep_masked(mask))
    state = tx.init(params)
    jax.jit(lambda s: s, donate_argnums=0)(state)
    assert not mask["w"].is_deleted()
