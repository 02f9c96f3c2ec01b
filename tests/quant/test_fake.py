"""Tests for jaxzip/quant/_fake.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import (
    QuantSpec,
    dequantize,
    fake_quant,
    lsq_fake_quant,
    lsq_init_step,
    quantize,
)


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(bits=4, axes=(-1,)),
        QuantSpec(bits=3, signed=False, symmetric=False),
        QuantSpec(bits=4, group_size=2, group_axis=0),
    ],
)
def test_forward_equals_dequantize_quantize(spec):
    x = jax.random.normal(jax.random.key(0), (4, 3))
    np.testing.assert_allclose(fake_quant(x, spec), dequantize(quantize(x, spec)), atol=1e-6)


def test_ste_gradient_is_clipped_identity():
    spec = QuantSpec(bits=3)  # grid -3..3
    x = jnp.array([-2.0, -1.01, -0.3, 0.0, 0.7, 1.0, 1.2])
    fixed = (-1.0, 1.0)  # clip range [-1, 1]
    g = jax.grad(lambda a: jnp.sum(fake_quant(a, spec, fixed_range=fixed) * 2.0))(x)
    inside = (x >= -1.0) & (x <= 1.0)
    np.testing.assert_array_equal(g, np.where(inside, 2.0, 0.0))
    # asymmetric: clip range [(qmin - zp) * s, (qmax - zp) * s]
    spec = QuantSpec(bits=2, signed=False, symmetric=False)
    g = jax.grad(lambda a: fake_quant(a, spec, fixed_range=(0.0, 3.0)).sum())(
        jnp.array([-0.5, 0.0, 2.9, 3.0, 3.5])
    )
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])


def test_ste_gradient_with_calibrated_range_is_one():
    x = jax.random.normal(jax.random.key(1), (5, 4))
    g = jax.grad(lambda a: fake_quant(a, QuantSpec(bits=2, axes=(-1,))).sum())(x)
    np.testing.assert_array_equal(g, np.ones_like(x))


def test_traced_bits_vmap_matches_static_bits():
    x = jax.random.normal(jax.random.key(2), (6, 3))
    for spec in (QuantSpec(bits=8, axes=(-1,)), QuantSpec(bits=8, symmetric=False, signed=False)):
        bits = jnp.array([2, 4, 8])
        out = jax.vmap(lambda b, spec=spec: fake_quant(x, spec, bits=b))(bits)
        for i, b in enumerate([2, 4, 8]):
            static = QuantSpec(bits=b, axes=spec.axes, symmetric=spec.symmetric, signed=spec.signed)
            np.testing.assert_allclose(out[i], fake_quant(x, static), atol=1e-6)


def test_jit_and_eager_agree():
    x = jax.random.normal(jax.random.key(3), (4, 4))
    spec = QuantSpec(bits=5, symmetric=False)
    np.testing.assert_array_equal(jax.jit(lambda a: fake_quant(a, spec))(x), fake_quant(x, spec))


def test_exact_zeros_stay_zero_for_all_specs():
    x = jnp.array([0.0, 0.37, -1.3, 0.0, 2.2])
    for spec in (
        QuantSpec(bits=3),
        QuantSpec(bits=3, symmetric=False),
        QuantSpec(bits=5, signed=False, symmetric=False),
        QuantSpec(bits=4, signed=False),
    ):
        y = fake_quant(x, spec)
        assert float(y[0]) == 0.0 and float(y[3]) == 0.0, spec


def test_lsq_forward_and_gradients_hand_worked():
    spec = QuantSpec(bits=3)  # LSQ grid -3..3, Qp = 3
    x = jnp.array([0.26, -0.7, 1.0, -5.0])  # x/s = 1.04, -2.8, 4 (above), -20 (below)
    s = jnp.float32(0.25)
    np.testing.assert_allclose(lsq_fake_quant(x, s, spec), [0.25, -0.75, 0.75, -0.75])
    gx, gs = jax.grad(lambda a, b: lsq_fake_quant(a, b, spec).sum(), argnums=(0, 1))(x, s)
    np.testing.assert_array_equal(gx, [1.0, 1.0, 0.0, 0.0])
    y = np.asarray(x) / 0.25
    ds = [round(y[0]) - y[0], round(y[1]) - y[1], 3.0, -3.0]
    g = 1.0 / math.sqrt(4 * 3)
    assert float(gs) == pytest.approx(sum(ds) * g, rel=1e-5)


def test_lsq_per_channel_steps_and_init():
    x = jnp.array([[1.0, -2.0], [-3.0, 4.0]])
    spec = QuantSpec(bits=4, axes=(-1,))
    step = lsq_init_step(x, spec)
    np.testing.assert_allclose(step, [[2 * 2.0 / math.sqrt(7), 2 * 3.0 / math.sqrt(7)]], rtol=1e-6)
    gs = jax.grad(lambda st: lsq_fake_quant(x, st, spec).sum())(step)
    assert gs.shape == (1, 2)


def test_bad_input():
    with pytest.raises(ValueError, match="bits"):
        fake_quant(jnp.ones(2), QuantSpec(), bits=1)
    with pytest.raises(ValueError, match="bits"):
        fake_quant(jnp.ones(2), QuantSpec(), bits=9)
    with pytest.raises(ValueError, match="explicit key"):
        fake_quant(jnp.ones(2), QuantSpec(rounding="stochastic"))
    with pytest.raises(TypeError, match="floating-point"):
        fake_quant(jnp.ones(2, jnp.int8), QuantSpec())
    with pytest.raises(ValueError, match="does not broadcast"):
        lsq_fake_quant(jnp.ones((2, 3)), jnp.ones(2), QuantSpec(axes=(-1,)))
