"""Tests for jaxzip/quant/_calibrate.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import (
    MinMax,
    MSEClip,
    Percentile,
    QuantSpec,
    calibrate,
    compute_scale,
    dequantize,
    quantize,
)


def test_minmax_hand_worked():
    x = jnp.array([[1.0, -4.0], [2.0, 0.5]])
    lo, hi = calibrate(x, QuantSpec(axes=(-1,)))
    np.testing.assert_array_equal(lo, [[-2.0, -4.0]])
    np.testing.assert_array_equal(hi, [[2.0, 4.0]])
    lo, hi = calibrate(x, QuantSpec(symmetric=False, axes=(0,)))
    np.testing.assert_array_equal(lo, [[-4.0], [0.5]])
    np.testing.assert_array_equal(hi, [[1.0], [2.0]])


def test_percentile_hand_worked():
    x = jnp.arange(101.0)  # percentiles equal their values
    lo, hi = calibrate(x, QuantSpec(symmetric=False), calibration=Percentile(percentile=90.0))
    assert (float(lo[0]), float(hi[0])) == (10.0, 90.0)


def test_compute_scale_hand_worked():
    s, z = compute_scale(jnp.array(-2.0), jnp.array(1.0), QuantSpec(bits=3))
    assert (float(s), int(z)) == (pytest.approx(2 / 3), 0)
    s, z = compute_scale(0.5, 2.0, QuantSpec(bits=2, signed=False, symmetric=False))
    # the range widens to include 0: [0, 2] over 3 steps
    assert (float(s), int(z)) == (pytest.approx(2 / 3), 0)
    s, _ = compute_scale(0.0, 0.0, QuantSpec())  # zero-width range: scale 1
    assert float(s) == 1.0


def test_mse_clip_never_worse_than_minmax_and_helps_heavy_tails():
    x = jax.random.laplace(jax.random.key(0), (512, 2))
    spec = QuantSpec(bits=3, axes=(-1,))

    def mse(cal):
        return np.mean((np.asarray(dequantize(quantize(x, spec, calibration=cal))) - x) ** 2, 0)

    base, best = mse(MinMax()), mse(MSEClip(num_ratios=16, min_ratio=0.1))
    assert np.all(best <= base + 1e-7)
    assert np.all(best < 0.8 * base)  # clipping the long tail pays off at 3 bits


def test_mse_clip_is_jittable():
    x = jax.random.normal(jax.random.key(2), (8, 3))
    spec = QuantSpec(bits=4, axes=(-1,))
    cal = MSEClip(num_ratios=8)
    eager = calibrate(x, spec, calibration=cal)
    jitted = jax.jit(lambda a: calibrate(a, spec, calibration=cal))(x)
    np.testing.assert_allclose(eager[1], jitted[1], rtol=1e-6)


def test_bad_input():
    with pytest.raises(TypeError, match="calibration"):
        calibrate(jnp.ones(3), QuantSpec(), calibration=Percentile)
    with pytest.raises(ValueError, match="NaN or Inf"):
        calibrate(np.array([np.nan], np.float32), QuantSpec())
