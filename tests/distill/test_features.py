"""Tests for jaxzip/distill/_features.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.distill import (
    apply_regressor,
    attention_loss,
    attention_map,
    hint_loss,
    init_regressor,
)


def test_hint_hand_worked_and_mask():
    s = {"hint": jnp.array([[0.0, 2.0], [1.0, 1.0]])}
    t = {"hint": jnp.array([[1.0, 0.0], [1.0, 1.0]])}
    per_example, _ = hint_loss()(s, t, None)
    np.testing.assert_allclose(per_example, [2.5, 0.0])  # (1 + 4) / 2
    masked, _ = hint_loss()(s, t, None, mask=jnp.array([False, True]))
    np.testing.assert_allclose(masked, [0.0, 0.0])


def test_regressor_maps_widths_and_is_trainable():
    reg = init_regressor(jax.random.key(0), 3, 5)
    feats = jnp.ones((2, 3))
    loss = hint_loss(student_key="s", teacher_key="t")
    grads = jax.grad(
        lambda r: loss({"s": apply_regressor(r, feats)}, {"t": jnp.zeros((2, 5))}, None)[0].sum()
    )(reg)
    assert grads["kernel"].shape == (3, 5) and float(jnp.abs(grads["kernel"]).sum()) > 0


def test_hint_shape_mismatch_names_the_regressor():
    with pytest.raises(ValueError, match="apply_regressor"):
        hint_loss()({"hint": jnp.ones((2, 3))}, {"hint": jnp.ones((2, 5))}, None)
    with pytest.raises(ValueError, match="key 'hint'"):
        hint_loss()(jnp.ones((2, 3)), {"hint": jnp.ones((2, 3))}, None)


def test_bad_regressor_widths():
    with pytest.raises(ValueError, match="in_features"):
        init_regressor(jax.random.key(0), 0, 5)
    with pytest.raises(ValueError, match="in_features"):
        apply_regressor(init_regressor(jax.random.key(0), 3, 5), jnp.ones((2, 4)))


def test_attention_map_hand_worked_and_float64_reference():
    f = np.random.default_rng(0).normal(size=(2, 3, 3, 4))
    a = (np.abs(f) ** 2).mean(-1).reshape(2, -1)
    want = a / np.linalg.norm(a, axis=-1, keepdims=True)
    np.testing.assert_allclose(attention_map(f.astype(np.float32)), want, rtol=1e-5)
    np.testing.assert_allclose(attention_map(jnp.zeros((1, 2, 2, 1))), 0.0)  # no NaN


def test_attention_loss_hand_worked_and_channel_mismatch_allowed():
    loss = attention_loss(student_key="f", teacher_key="g")
    s = {"f": jnp.ones((1, 2, 2, 3))}
    t = {"g": jnp.ones((1, 2, 2, 8)).at[0, 0, 0].set(0.0)}
    per_example, terms = loss(s, t, None)
    assert float(per_example[0]) == pytest.approx(2 - 2 * 1.5 / np.sqrt(3), rel=1e-5)
    assert set(terms) == {"attention"}
    g = jax.grad(lambda x: loss({"f": x}, {"g": x}, None)[0].sum())(jnp.ones((1, 2, 2, 3)))
    assert np.all(np.isfinite(g))  # equal maps: finite (zero) gradient


def test_attention_bad_input():
    with pytest.raises(ValueError, match="p must be"):
        attention_loss(student_key="f", teacher_key="f", p=0.0)
    loss = attention_loss(student_key="f", teacher_key="f")
    with pytest.raises(ValueError, match="same N, H, W"):
        loss({"f": jnp.ones((1, 2, 2, 3))}, {"f": jnp.ones((1, 4, 4, 3))}, None)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        attention_map(jnp.ones((2, 3)))
