"""Fixtures for the model tests.

Parameters are made with numpy from the shapes of ``jax.eval_shape(init)``: JAX's
random initializers compile one program per shape, which dominates the run time
of small tests on a busy CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.models import init_params


def _abstract_params(model, input_shape):
    return jax.eval_shape(lambda: init_params(model, jax.random.key(0), jnp.zeros(input_shape)))


def _param_shapes(model, input_shape):
    params = _abstract_params(model, input_shape)
    return params, jax.tree.map(lambda s: s.shape, params)


def _numpy_params(model, input_shape, seed=0):
    shapes = _abstract_params(model, input_shape)
    rng = np.random.default_rng(seed)

    def draw(s):
        fan_in = int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 1
        return (rng.standard_normal(s.shape) / np.sqrt(fan_in)).astype(s.dtype)

    return jax.tree.map(draw, shapes)


@pytest.fixture
def numpy_params():
    """``numpy_params(model, input_shape, seed=0)``: random params without JAX's initializers."""
    return _numpy_params


@pytest.fixture
def param_shapes():
    """``param_shapes(model, input_shape)``: ``(abstract params, {path: shape} tree)``,
    from ``jax.eval_shape`` (nothing is computed)."""
    return _param_shapes
