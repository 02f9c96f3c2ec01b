"""Tests for jaxzip/models/_apply.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.models import MLP, init_params, linen_apply_fn, param_count


def test_linen_apply_fn_hand_worked():
    model = MLP((), num_classes=2)
    params = {
        "Dense_0": {"kernel": jnp.array([[1.0, 0.0], [0.0, 2.0]]), "bias": jnp.array([0.0, 1.0])}
    }
    x = jnp.array([[[[3.0]], [[4.0]]]])  # (1, 2, 1, 1)
    out = linen_apply_fn(model)(params, x, train=False, key=None)
    np.testing.assert_array_equal(out, [[3.0, 9.0]])


def test_linen_apply_fn_jits_like_eager(numpy_params):
    model = MLP((4,), num_classes=3)
    x = np.random.default_rng(0).uniform(size=(2, 3, 1, 1)).astype(np.float32)
    params = numpy_params(model, x.shape)
    apply_fn = linen_apply_fn(model)
    eager = apply_fn(params, x, train=False, key=None)
    jitted = jax.jit(lambda p, x: apply_fn(p, x, train=False, key=None))(params, x)
    np.testing.assert_allclose(eager, jitted, rtol=1e-6)


def test_init_params_is_the_params_collection_and_deterministic():
    model = MLP((3,), num_classes=2)
    x = jnp.ones((1, 2, 2, 1))
    init = jax.jit(lambda key: init_params(model, key, x))  # one compile for three calls
    a, b, c = init(jax.random.key(0)), init(jax.random.key(0)), init(jax.random.key(1))
    assert set(a) == {"Dense_0", "Dense_1"}
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["Dense_0"]["kernel"], c["Dense_0"]["kernel"])


@pytest.mark.parametrize("fn", [linen_apply_fn, lambda m: init_params(m, jax.random.key(0), 0)])
def test_rejects_non_linen_modules(fn):
    with pytest.raises(TypeError, match="linen Module"):
        fn(lambda x: x)


def test_param_count():
    tree = {
        "a": jnp.ones((2, 3)),
        "b": [np.zeros(4), 1.0],
        "c": jax.ShapeDtypeStruct((5, 5), jnp.float32),
    }
    assert param_count(tree) == 6 + 4 + 1 + 25
    assert param_count({}) == 0
