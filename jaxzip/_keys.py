"""The one check that an argument is a JAX PRNG key."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["check_key"]


def check_key(where: str, key: Any) -> None:
    """Raises ``TypeError`` unless ``key`` is a PRNG key (typed, or raw ``uint32`` data).

    Example:
      >>> import jax
      >>> check_key("f", jax.random.key(0))
      >>> check_key("f", 0)
      Traceback (most recent call last):
      ...
      TypeError: f: key must be a PRNG key such as jax.random.key(0), got int 0
    """
    is_key = isinstance(key, jax.Array) and (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.dtype == np.uint32
    )
    if not is_key:
        raise TypeError(
            f"{where}: key must be a PRNG key such as jax.random.key(0), "
            f"got {type(key).__name__} {key!r}"
        )
