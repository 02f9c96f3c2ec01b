"""Small param trees shaped like the reference models (LeNet-300-100-like MLP, LeNet-5-like CNN)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest


def _tree(shapes: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        name: {
            "kernel": jnp.asarray(rng.normal(size=k), jnp.float32),
            "bias": jnp.asarray(0.1 * rng.normal(size=k[-1]), jnp.float32),
        }
        for name, k in shapes.items()
    }


@pytest.fixture
def mlp_params() -> dict:
    """A tiny 3-layer MLP: 16 -> 12 -> 8 -> 4."""
    return _tree({"Dense_0": (16, 12), "Dense_1": (12, 8), "Dense_2": (8, 4)}, seed=0)


@pytest.fixture
def cnn_params() -> dict:
    """A tiny LeNet-5-like CNN on 14x14x1: conv3(4), pool, conv3(6), pool, flatten (2*2*6), dense."""
    return _tree(
        {"Conv_0": (3, 3, 1, 4), "Conv_1": (3, 3, 4, 6), "Dense_0": (24, 8), "Dense_1": (8, 3)},
        seed=1,
    )
