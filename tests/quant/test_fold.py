"""Tests for the scale-folding helpers (grouping kernels by input, scaling kernels and norms)."""

import jax.numpy as jnp
import numpy as np

from jaxzip.calib import KernelStats
from jaxzip.layout import KernelLayout
from jaxzip.quant._fold import input_groups, scale_kernels


def _stats(values):
    v = jnp.asarray(values, jnp.float32)
    return KernelStats(jnp.float32(4), jnp.zeros((0, 0)), v, v, v)


def test_input_groups_by_identical_statistics():
    stats = {"q": _stats([1, 2]), "k": _stats([1, 2]), "o": _stats([1, 3]), "m": _stats([1, 2, 3])}
    assert input_groups(stats) == [("q", "k"), ("o",), ("m",)]


def test_scale_kernels_hand_worked():
    lay = {"w": KernelLayout(shape=(2, 3, 2), in_axes=(0,), out_axes=(1, 2))}
    params = {"w": jnp.ones((2, 3, 2)), "ln": {"scale": jnp.array([2.0, 8.0])}}
    out = scale_kernels(params, {"w": jnp.array([2.0, 4.0])}, lay, {"ln/scale": [2.0, 4.0]})
    np.testing.assert_array_equal(out["w"][0], 2 * np.ones((3, 2)))
    np.testing.assert_array_equal(out["w"][1], 4 * np.ones((3, 2)))
    np.testing.assert_array_equal(out["ln"]["scale"], [1.0, 2.0])


def test_scale_kernels_on_a_stack_scales_each_layer_by_its_own_row():
    lay = {"w": KernelLayout(shape=(2, 3, 2), in_axes=(2,), out_axes=(0, 1), layer_axis=0)}
    params = {"w": jnp.ones((2, 3, 2)), "ln": jnp.ones((2, 2))}
    s = jnp.array([[2.0, 3.0], [5.0, 7.0]])  # (layers, n_in)
    out = scale_kernels(params, {"w": s}, lay, {"ln": s})
    np.testing.assert_array_equal(out["w"][1], [[5.0, 7.0]] * 3)
    np.testing.assert_array_equal(out["w"][0, 0], [2.0, 3.0])
    np.testing.assert_allclose(out["ln"], 1 / np.asarray(s))
