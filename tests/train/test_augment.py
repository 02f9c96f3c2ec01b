from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip.train import RandomShift, init_state, make_train_step


def _shift_reference(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    for i in range(h):
        for j in range(w):
            si, sj = i - dy, j - dx
            if 0 <= si < h and 0 <= sj < w:
                out[i, j] = image[si, sj]
    return out


def test_every_output_is_a_zero_filled_translate_within_range():
    x = np.arange(1, 1 + 4 * 5 * 5, dtype=np.float32).reshape(4, 5, 5, 1)
    y = np.asarray(RandomShift(pixels=2)(jnp.asarray(x), key=jax.random.key(3)))
    for image, shifted in zip(x, y, strict=True):
        candidates = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(_shift_reference(image, dy, dx), shifted)
        ]
        assert candidates, "output is not a translate of its input by at most 2 pixels"


def test_offsets_differ_across_examples_and_keys():
    x = jnp.tile(jnp.arange(49.0).reshape(1, 7, 7, 1), (16, 1, 1, 1))
    y = RandomShift(pixels=3)(x, key=jax.random.key(0))
    distinct = {np.asarray(im).tobytes() for im in y}
    assert len(distinct) > 1
    assert not jnp.array_equal(y, RandomShift(pixels=3)(x, key=jax.random.key(1)))


def test_bad_input():
    with pytest.raises(ValueError, match="pixels must be an int >= 1, got 0"):
        RandomShift(pixels=0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        RandomShift(pixels=1)(jnp.ones((2, 3)), key=jax.random.key(0))
    with pytest.raises(TypeError, match="augment must be callable"):
        make_train_step(lambda p, x, *, train, key: x, optax.sgd(0.1), augment=3)


def test_train_step_applies_augmentation():
    seen = []

    def apply_fn(params, x, *, train, key):
        seen.append(x)
        return x.reshape(x.shape[0], -1) @ params

    tx = optax.sgd(0.0)
    x = jnp.arange(2 * 3 * 3, dtype=jnp.float32).reshape(2, 3, 3, 1) + 1.0
    batch = {"x": x, "y": jnp.array([0, 1])}

    def grads_of(augment):
        step = make_train_step(apply_fn, optax.sgd(1.0), augment=augment)
        state = init_state(jnp.zeros((9, 2)), tx)
        state = init_state(jnp.zeros((9, 2)), optax.sgd(1.0))
        new, _ = step(state, batch, jax.random.key(0))
        return new.params

    plain = grads_of(None)
    shifted = grads_of(RandomShift(pixels=1))
    # With every example shifted (probability 1 - (1/9)^2 per draw), the update differs.
    assert not jnp.array_equal(plain, shifted)
