"""Tests for jaxzip/quant/_qarray.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import QArray, QuantSpec, dequantize, quantize


def test_dequantize_hand_worked_with_zero_point_and_groups():
    # values (2, 4), groups of 2 along axis 1 -> scale/zero_point shape (1, 2)
    q = QArray(
        values=jnp.array([[0, 1, 2, 3], [4, 5, 6, 7]], jnp.uint8),
        scale=jnp.array([[0.5, 2.0]]),
        zero_point=jnp.array([[1, 5]], jnp.int32),
        bits=4,
        axes=(),
        group_size=2,
        group_axis=1,
    )
    want = [[-0.5, 0.0, -6.0, -4.0], [1.5, 2.0, 2.0, 4.0]]
    np.testing.assert_array_equal(dequantize(q), want)


def test_qarray_is_a_pytree_with_static_metadata():
    q = quantize(jnp.arange(6.0).reshape(2, 3) - 2.0, QuantSpec(bits=4, axes=(-1,)))
    leaves, treedef = jax.tree.flatten(q)
    assert len(leaves) == 3  # values, scale, zero_point
    q2 = jax.tree.unflatten(treedef, leaves)
    assert (q2.bits, q2.axes, q2.shape) == (4, (1,), (2, 3))
    out = jax.jit(dequantize)(q)  # static fields pass through jit
    np.testing.assert_array_equal(out, dequantize(q))


def test_dequantize_restores_dtype():
    x = jnp.array([0.5, -1.0], jnp.bfloat16)
    assert dequantize(quantize(x, QuantSpec(bits=8))).dtype == jnp.bfloat16


def test_dequantize_rejects_non_quantized():
    with pytest.raises(TypeError, match="expected a QArray or KMeansArray"):
        dequantize(jnp.ones(3))
