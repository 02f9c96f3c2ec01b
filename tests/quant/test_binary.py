"""Tests for jaxzip/quant/_binary.py."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import binarize, dequantize, ternarize


def test_binarize_hand_worked_per_channel():
    x = jnp.array([[0.5, -2.0], [-1.5, 1.0]])
    q = binarize(x, axes=(-1,))
    assert q.bits == 1 and set(np.unique(np.asarray(q.values)).tolist()) <= {-1, 1}
    np.testing.assert_allclose(dequantize(q), [[1.0, -1.5], [-1.0, 1.5]])


def test_ternarize_hand_worked():
    x = jnp.array([0.1, -2.0, 1.0, 0.0, 0.5])  # mean|x| = 0.72, delta = 0.504
    q = ternarize(x)
    np.testing.assert_array_equal(q.values, [0, -1, 1, 0, 0])
    np.testing.assert_allclose(dequantize(q), [0.0, -1.5, 1.5, 0.0, 0.0])


def test_ternarize_keeps_pruned_zeros():
    x = jnp.array([[0.0, 3.0], [-2.0, 0.0], [0.0, 0.1]])
    y = dequantize(ternarize(x, axes=(-1,)))
    assert np.all(np.asarray(y)[np.asarray(x) == 0] == 0.0)


def test_bad_input():
    with pytest.raises(TypeError, match="floating-point"):
        binarize(jnp.ones(3, jnp.int32))
    with pytest.raises(ValueError, match="out of range"):
        ternarize(jnp.ones(3), axes=(1,))
    with pytest.raises(ValueError, match="threshold"):
        ternarize(jnp.ones(3), threshold=-1.0)
