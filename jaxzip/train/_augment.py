"""Data augmentation inside the jitted train step."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomShift:
    """Translates each image by a random whole number of pixels, filling with zeros.

    Each example of the batch gets its own offset, drawn uniformly from
    ``[-pixels, pixels]`` along height and width. It runs inside the jitted
    train step (no host work), on images of shape ``(N, H, W, C)``.

    Attributes:
      pixels: the largest shift along each axis (at least 1).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.arange(9.0).reshape(1, 3, 3, 1)
      >>> y = RandomShift(pixels=1)(x, key=jax.random.key(0))
      >>> y.shape, bool(jnp.isin(y, jnp.arange(9.0)).all())
      ((1, 3, 3, 1), True)
    """

    pixels: int

    def __post_init__(self) -> None:
        if isinstance(self.pixels, bool) or not isinstance(self.pixels, int) or self.pixels < 1:
            raise ValueError(f"RandomShift: pixels must be an int >= 1, got {self.pixels!r}")

    def __call__(self, x: jax.Array, *, key: jax.Array) -> jax.Array:
        """Returns the shifted batch (same shape and dtype as ``x``)."""
        if x.ndim != 4:
            raise ValueError(f"RandomShift: expected images of shape (N, H, W, C), got {x.shape}")
        p = self.pixels
        n, h, w, c = x.shape
        padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        offsets = jax.random.randint(key, (n, 2), 0, 2 * p + 1)

        def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

        return jax.vmap(crop)(padded, offsets)
