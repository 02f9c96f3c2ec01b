"""Fixtures for the train tests: a linear model as a plain pytree (``toy``: tests/conftest.py)."""

from __future__ import annotations

import jax.numpy as jnp
import pytest


def linear_apply(params, x, *, train, key):
    """A linear classifier on flattened images, as an ApplyFn over a plain dict."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


@pytest.fixture
def linear_params():
    return {"w": jnp.zeros((4, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}


@pytest.fixture
def linear():
    """The linear ApplyFn (one function object, so compiled evaluations are reused)."""
    return linear_apply
