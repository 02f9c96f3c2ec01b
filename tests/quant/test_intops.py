"""Tests for jaxzip/quant/_intops.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxzip.quant import QuantSpec, dequantize, int_conv, int_dense, quantize

_X_SPECS = [
    QuantSpec(bits=8),
    QuantSpec(bits=8, signed=False, symmetric=False),  # uint8 with zero point (shifted)
    QuantSpec(bits=6, symmetric=False),
    QuantSpec(bits=8, axes=(0,)),  # per-row activations
]
_W_SPECS = [QuantSpec(bits=8, axes=(-1,)), QuantSpec(bits=4, symmetric=False, axes=(-1,))]


@pytest.mark.parametrize(("xspec", "wspec"), list(zip(_X_SPECS, _W_SPECS * 2, strict=True)))
def test_int_dense_matches_dequantized_float(xspec, wspec):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.nn.relu(jax.random.normal(kx, (5, 16))) - 0.2
    w = jax.random.normal(kw, (16, 7))
    b = jnp.linspace(-1, 1, 7)
    xq, wq = quantize(x, xspec), quantize(w, wspec)
    want = dequantize(xq) @ dequantize(wq) + b
    got = int_dense(xq, wq, bias=b)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(int_dense)(xq, wq, bias=b), got, rtol=1e-6, atol=1e-6)


def test_int_dense_hand_worked():
    from jaxzip.quant import QArray

    x = QArray(
        values=jnp.array([[3, 1]], jnp.int8),
        scale=jnp.full((1, 1), 0.5),
        zero_point=jnp.full((1, 1), 1, jnp.int32),
        bits=8,
    )
    w = QArray(
        values=jnp.array([[2, -1], [0, 4]], jnp.int8),
        scale=jnp.array([[1.0, 2.0]]),
        zero_point=jnp.zeros((1, 2), jnp.int32),
        bits=8,
        axes=(1,),
    )
    # x = [1.0, 0.0]; w = [[2, -2], [0, 8]] -> [2, -2]
    np.testing.assert_array_equal(int_dense(x, w), [[2.0, -2.0]])


@pytest.mark.parametrize(
    ("padding", "xspec"),
    [
        ("VALID", QuantSpec(bits=8)),
        ("SAME", QuantSpec(bits=8, signed=False, symmetric=False)),
        (((2, 0), (1, 1)), QuantSpec(bits=8, signed=False, symmetric=False)),
    ],
)
def test_int_conv_matches_dequantized_float(padding, xspec):
    kx, kw = jax.random.split(jax.random.key(1))
    x = jax.nn.relu(jax.random.normal(kx, (2, 9, 9, 3))) + 0.1  # zero point != 0 if asym
    w = jax.random.normal(kw, (3, 3, 3, 4))
    xq, wq = quantize(x, xspec), quantize(w, QuantSpec(bits=8, symmetric=False, axes=(-1,)))
    want = lax.conv_general_dilated(
        dequantize(xq),
        dequantize(wq),
        (2, 1),
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision="highest",
    )
    got = jax.jit(lambda a, b: int_conv(a, b, strides=(2, 1), padding=padding))(xq, wq)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_bad_input():
    xq = quantize(jnp.ones((2, 4)), QuantSpec())
    with pytest.raises(ValueError, match="expected x"):
        int_dense(xq, quantize(jnp.ones((3, 2)), QuantSpec()))
    with pytest.raises(ValueError, match="contraction axis"):
        int_dense(
            quantize(jnp.ones((2, 4)), QuantSpec(axes=(1,))),
            quantize(jnp.ones((4, 2)), QuantSpec()),
        )
    with pytest.raises(ValueError, match="grouped"):
        int_dense(xq, quantize(jnp.ones((4, 2)), QuantSpec(group_size=2, group_axis=0)))
    with pytest.raises(TypeError, match="expected a QArray"):
        int_dense(jnp.ones((2, 4)), xq)
    with pytest.raises(ValueError, match="per-tensor"):
        int_conv(
            quantize(jnp.ones((1, 4, 4, 2)), QuantSpec(axes=(3,))),
            quantize(jnp.ones((3, 3, 2, 1)), QuantSpec()),
        )
