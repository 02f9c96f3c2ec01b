"""Tests for jaxzip/distill/_common.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.distill import masked_mean


def test_masked_mean_hand_worked_and_all_false():
    v = jnp.array([1.0, 2.0, 6.0, jnp.inf])
    assert float(masked_mean(v, jnp.array([True, False, True, False]))) == 3.5
    assert float(masked_mean(v, jnp.zeros(4, bool))) == 0.0
    assert float(masked_mean(jnp.array([1.0, 3.0]))) == 2.0


def test_masked_mean_gradient_ignores_masked_nan():
    import jax

    g = jax.grad(lambda v: masked_mean(v * v, jnp.array([True, False])))(jnp.array([3.0, np.nan]))
    assert float(g[0]) == 6.0


def test_masked_mean_bad_mask_shape():
    with pytest.raises(ValueError, match=r"mask must have the shape of values \(3,\)"):
        masked_mean(jnp.zeros(3), jnp.ones(2, bool))
