"""Tests for jaxzip/models/_pool.py: max_pool_2x2 equals flax's 2x2 max pool bit for bit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.models import max_pool_2x2


def flax_pool(x):
    return nn.max_pool(x, (2, 2), strides=(2, 2))


def with_ties(shape, seed=0):
    """Random images with the ties pooling meets: a flat (zero-padded) corner, equal rows."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x[:, :4, :4] = 0.5
    x[:, 3, :] = x[:, 2, :]
    x[:, :, 1] = x[:, :, 0]
    return jnp.asarray(x)


def test_hand_worked_window():
    x = jnp.array([[1.0, 3.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
    assert max_pool_2x2(x).tolist() == [[[[3.0]]]]
    grad = jax.grad(lambda x: max_pool_2x2(x).sum())(x)
    assert grad[0, :, :, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]  # the first 3, row-major


@pytest.mark.parametrize("shape", [(4, 24, 24, 3), (2, 8, 8, 5), (3, 7, 9, 2)])
def test_values_gradients_and_jvps_equal_flax_bit_for_bit(shape):
    x = with_ties(shape)
    out, vjp = jax.vjp(max_pool_2x2, x)
    ref, ref_vjp = jax.vjp(flax_pool, x)
    assert out.shape == ref.shape and bool((out == ref).all())
    g = jax.random.normal(jax.random.key(1), ref.shape)
    assert bool((vjp(g)[0] == ref_vjp(g)[0]).all())
    t = jax.random.normal(jax.random.key(2), shape)
    assert bool((jax.jvp(max_pool_2x2, (x,), (t,))[1] == jax.jvp(flax_pool, (x,), (t,))[1]).all())


def test_each_window_sends_its_gradient_to_exactly_one_element():
    x = with_ties((2, 6, 6, 3))
    grad = jax.grad(lambda x: max_pool_2x2(x).sum())(x)
    per_window = np.asarray(grad).reshape(2, 3, 2, 3, 2, 3).sum(axis=(2, 4))
    assert np.array_equal(per_window, np.ones((2, 3, 3, 3)))
    assert set(np.unique(np.asarray(grad)).tolist()) == {0.0, 1.0}


def test_jit_and_eager_agree_and_the_second_call_does_not_retrace():
    x = with_ties((2, 8, 8, 4))
    traces = []

    def loss(x):
        traces.append(1)
        return (max_pool_2x2(x) ** 2).sum()

    step = jax.jit(jax.grad(loss))
    first = step(x)
    assert bool((step(x + 1.0) == jax.grad(lambda x: (max_pool_2x2(x) ** 2).sum())(x + 1.0)).all())
    assert bool((first == jax.grad(lambda x: (flax_pool(x) ** 2).sum())(x)).all())
    assert len(traces) == 1


def test_not_images_is_an_error_in_every_mode():
    x = jnp.ones((4, 4))
    for call in (
        lambda: max_pool_2x2(x),
        lambda: jax.grad(lambda v: max_pool_2x2(v).sum())(x),
        lambda: jax.jvp(max_pool_2x2, (x,), (x,)),
    ):
        with pytest.raises(ValueError, match=r"max_pool_2x2: x must be images .* got \(4, 4\)"):
            call()
