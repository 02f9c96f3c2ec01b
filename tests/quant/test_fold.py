"""Tests for the scale-folding helpers (grouping kernels by input, scaling kernels and norms)."""

import jax.numpy as jnp
import numpy as np

from jaxzip.layout import KernelLayout
from jaxzip.quant._actstats import ActStats
from jaxzip.quant._fold import input_groups, scale_kernels


def _stats(values):
    v = jnp.asarray(values, jnp.float32)
    return ActStats(jnp.float32(4), v, v, jnp.zeros((v.size, v.size)))


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
