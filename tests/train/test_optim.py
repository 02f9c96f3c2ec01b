"""Tests for jaxzip/train/_optim.py."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxzip.train import kernel_mask

PARAMS = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}


def test_kernel_mask():
    assert kernel_mask(PARAMS) == {"Dense_0": {"bias": False, "kernel": True}}
    assert kernel_mask({"b": jnp.ones(3)}) == {"b": False}  # no kernels is fine


def test_kernel_mask_as_optax_mask():
    tx = optax.add_decayed_weights(0.5, mask=kernel_mask)
    zeros = {"k": jnp.zeros((1, 1)), "b": jnp.zeros(1)}
    updates, _ = tx.update(zeros, tx.init(zeros), {"k": jnp.ones((1, 1)), "b": jnp.ones(1)})
    assert float(updates["k"][0, 0]) == 0.5 and float(updates["b"][0]) == 0.0
