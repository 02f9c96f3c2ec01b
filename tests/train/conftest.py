"""Fixtures for the train tests: a tiny separable dataset and a linear model as a plain pytree."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.data import Dataset


def make_toy(n: int = 32, seed: int = 0) -> Dataset:
    """Two linearly separable classes of 2x2 images: the bright pixel is pixel 0 or pixel 3."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.int32)
    x = rng.uniform(0.0, 0.3, (n, 4)).astype(np.float32)
    x[np.arange(n), 3 * y] = 1.0
    return Dataset(x=x.reshape(n, 2, 2, 1), y=y, num_classes=2, name="toy")


def linear_apply(params, x, *, train, key):
    """A linear classifier on flattened images, as an ApplyFn over a plain dict."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


@pytest.fixture
def toy() -> Dataset:
    return make_toy()


@pytest.fixture
def linear_params():
    return {"w": jnp.zeros((4, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}


@pytest.fixture
def linear():
    """The linear ApplyFn (one function object, so compiled evaluations are reused)."""
    return linear_apply
