"""Tests for jaxzip/quant/_collect.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import MSEClip, Percentile, QuantSpec, fake_quant, make_range_collector


def test_minmax_collector_hand_worked_per_channel():
    c = make_range_collector(QuantSpec(bits=8, symmetric=False, axes=(-1,)))
    s = c.init(jnp.zeros((4, 2)))
    s = c.update(s, jnp.array([[0.0, -1.0], [2.0, 1.0]]))
    s = jax.jit(c.update)(s, jnp.array([[-3.0, 0.5], [1.0, 0.25]]))
    lo, hi = c.ranges(s)
    assert int(s.count) == 2
    np.testing.assert_array_equal(lo, [[-3.0, -1.0]])
    np.testing.assert_array_equal(hi, [[2.0, 1.0]])


def test_percentile_collector_averages_batches():
    c = make_range_collector(QuantSpec(bits=8), calibration=Percentile(percentile=100.0))
    s = c.init(jnp.zeros(3))
    for b in (jnp.array([1.0, -2.0, 0.5]), jnp.array([4.0, 0.0, 1.0])):
        s = c.update(s, b)
    lo, hi = c.ranges(s)
    assert float(hi[0]) == 3.0 and float(lo[0]) == -3.0  # mean of absmax 2 and 4


def test_ranges_apply_as_static_activation_range():
    c = make_range_collector(QuantSpec(bits=4, signed=False, symmetric=False))
    s = c.update(c.init(jnp.zeros(4)), jnp.array([0.0, 1.5, 3.0, 0.75]))
    spec = QuantSpec(bits=4, signed=False, symmetric=False)
    y = fake_quant(jnp.array([0.2, 5.0]), spec, fixed_range=c.ranges(s))
    np.testing.assert_allclose(y, [0.2, 3.0], rtol=1e-6)  # 5.0 clips to the collected max


def test_bad_input():
    with pytest.raises(TypeError, match="MinMax"):
        make_range_collector(QuantSpec(), calibration=MSEClip())
    c = make_range_collector(QuantSpec(axes=(-1,)))
    s = c.init(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="seen no batch"):
        c.ranges(s)
    with pytest.raises(ValueError, match="state holds"):
        c.update(s, jnp.ones((2, 4)))
