"""2x2 max pooling whose gradient is cheap on every backend, equal bit for bit to flax's."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["max_pool_2x2"]


def _windows(x: jax.Array) -> jax.Array:
    """``(N, H, W, C)`` → ``(N, H//2, 2, W//2, 2, C)``: the 2x2 windows (an odd last row or
    column dropped, as VALID pooling drops it)."""
    if x.ndim != 4:  # checked here, so that jvp and grad, which skip the primal, check too
        raise ValueError(f"max_pool_2x2: x must be images of shape (N, H, W, C), got {x.shape}")
    n, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)


def _first_max(x6: jax.Array) -> jax.Array:
    """Per window, True at the first element (row-major) equal to the window's max."""
    eq = x6 == x6.max(axis=(2, 4), keepdims=True)
    e00, e01, e10, e11 = eq[:, :, 0, :, 0], eq[:, :, 0, :, 1], eq[:, :, 1, :, 0], eq[:, :, 1, :, 1]
    s01 = e01 & ~e00
    s10 = e10 & ~(e00 | e01)
    s11 = e11 & ~(e00 | e01 | e10)
    return jnp.stack([jnp.stack([e00, s01], axis=3), jnp.stack([s10, s11], axis=3)], axis=2)


@jax.custom_jvp
def max_pool_2x2(x: jax.Array) -> jax.Array:
    """``flax.linen.max_pool(x, (2, 2), strides=(2, 2))`` with a gradient made of elementwise ops.

    The reference CNNs (:class:`LeNet5`, :class:`SmallCNN`) pool with it; a model of
    your own can call it in place of flax's 2x2 pooling and train to the same params.

    The values, the gradient and the forward-mode derivative equal flax's bit for
    bit, ties included: the derivative flows to the first maximal element of each
    window in row-major order, as XLA's ``select_and_scatter`` (flax's gradient)
    sends it. That gradient is a scatter over windows, slow on XLA's CPU backend
    (about 11 ms of a LeNet-5 training step's 84 at batch 128 on 2 cores); here it
    is a compare and a select over the reshaped windows (about 1 ms):
    ``experiments/benchmarks/max_pool.py`` measures both.

    Args:
      x: images ``(N, H, W, C)``; an odd last row or column is dropped (VALID).

    Returns:
      ``(N, H // 2, W // 2, C)``: the max of each 2x2 window.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 3.0], [3.0, 2.0]]).reshape(1, 2, 2, 1)
      >>> float(max_pool_2x2(x)[0, 0, 0, 0])
      3.0
      >>> import jax
      >>> jax.grad(lambda x: max_pool_2x2(x).sum())(x)[0, :, :, 0].tolist()  # the first 3 only
      [[0.0, 1.0], [0.0, 0.0]]
    """
    return _windows(x).max(axis=(2, 4))


@max_pool_2x2.defjvp
def _max_pool_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]):
    (x,), (t,) = primals, tangents
    x6 = _windows(x)
    picked = jnp.where(_first_max(x6), _windows(t), jnp.zeros((), t.dtype))
    return x6.max(axis=(2, 4)), picked.sum(axis=(2, 4))
