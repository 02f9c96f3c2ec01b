"""Tests for jaxzip/distill/_combine.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.distill import combine_losses, hint_loss, kd_loss


def test_weighted_sum_and_terms():
    kd = kd_loss(temperature=2.0, alpha=0.5)
    loss = combine_losses({"kd": kd, "hint": hint_loss()}, weights={"hint": 3.0})
    s = {"logits": jnp.array([[1.0, 0.0, -1.0]]), "hint": jnp.zeros((1, 2))}
    t = {"logits": jnp.array([[0.0, 1.0, 0.0]]), "hint": jnp.ones((1, 2))}
    y = jnp.array([2])
    per_example, terms = loss(s, t, y)
    kd_alone, kd_terms = kd(s, t, y)
    np.testing.assert_allclose(per_example, kd_alone + 3.0 * 1.0, rtol=1e-6)
    assert set(terms) == {"kd", "kd/kd", "kd/ce", "hint", "hint/hint"}
    np.testing.assert_allclose(terms["kd/ce"], kd_terms["ce"])


def test_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        combine_losses({})
    with pytest.raises(ValueError, match="not in losses"):
        combine_losses({"kd": kd_loss(temperature=1.0, alpha=0.5)}, weights={"hint": 1.0})
    with pytest.raises(ValueError, match="weights"):
        combine_losses({"kd": kd_loss(temperature=1.0, alpha=0.5)}, weights={"kd": -1.0})
    with pytest.raises(TypeError, match="loss function"):
        combine_losses({"kd": 3})
    with pytest.raises(ValueError, match="'/'"):
        combine_losses({"a/b": kd_loss(temperature=1.0, alpha=0.5)})
