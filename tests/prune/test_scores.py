"""Tests for jaxzip/prune/_scores.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.prune import (
    accumulate_movement,
    init_movement,
    magnitude_scores,
    random_scores,
    saliency_scores,
)


def test_magnitude_and_saliency_hand_worked():
    p = {"a": jnp.array([-2.0, 0.5]), "b": jnp.array([[3.0]])}
    g = {"a": jnp.array([1.0, -4.0]), "b": jnp.array([[-0.5]])}
    assert magnitude_scores(p)["a"].tolist() == [2.0, 0.5]
    s = saliency_scores(p, g)
    assert s["a"].tolist() == [2.0, 2.0] and s["b"].tolist() == [[1.5]]


def test_random_scores_depend_only_on_key():
    p = {"a": jnp.zeros((3, 2)), "b": jnp.zeros(4)}
    s1 = random_scores(p, key=jax.random.key(1))
    s2 = random_scores(p, key=jax.random.key(1))
    s3 = random_scores(p, key=jax.random.key(2))
    jax.tree.map(np.testing.assert_array_equal, s1, s2)
    assert not np.array_equal(s1["a"], s3["a"])
    assert s1["a"].shape == (3, 2) and float(s1["b"].min()) >= 0.0


def test_movement_accumulates_minus_w_g_over_steps():
    p1, g1 = {"w": jnp.array([1.0, -1.0])}, {"w": jnp.array([-1.0, -1.0])}
    p2, g2 = {"w": jnp.array([2.0, -0.5])}, {"w": jnp.array([-0.5, 2.0])}
    m = accumulate_movement(init_movement(p1), p1, g1)
    m = accumulate_movement(m, p2, g2)
    # -(1*-1 + 2*-0.5) = 2 ; -(-1*-1 + -0.5*2) = 0
    assert m["w"].tolist() == [2.0, 0.0]
    jitted = jax.jit(accumulate_movement)(init_movement(p1), p1, g1)
    assert jitted["w"].tolist() == [1.0, -1.0]


def test_mismatched_grads_name_the_path():
    with pytest.raises(ValueError, match=r"grads.*'w'"):
        saliency_scores({"w": jnp.ones(2)}, {"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="grads"):
        accumulate_movement({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, {"v": jnp.ones(2)})
