"""PRNG keys: the one check that an argument is a key, and keys derived by name."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np

__all__ = ["check_key", "named_key"]


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


def named_key(key: jax.Array, name: str) -> jax.Array:
    """The key of the consumer called ``name``, derived from a root ``key``.

    ``jax.random.fold_in(key, h)`` where ``h`` is the first 32 bits of the
    SHA-256 of ``name`` (stable across processes and Python versions, unlike
    ``hash()``). Different names give independent keys; the same root key and
    name always give the same key. This is how one run's single root key (the
    config's ``seed``) is split among its consumers, with no integer offsets.

    Args:
      key: the root PRNG key.
      name: a non-empty string naming the consumer, e.g. ``"train"`` or ``"distill/init"``.

    Returns:
      A PRNG key of the same kind as ``key``.

    Raises:
      TypeError: ``key`` is not a PRNG key, or ``name`` not a non-empty string.

    Example:
      >>> import jax
      >>> root = jax.random.key(0)
      >>> a, b = named_key(root, "train"), named_key(root, "train")
      >>> bool((jax.random.key_data(a) == jax.random.key_data(b)).all())
      True
      >>> c = named_key(root, "model")
      >>> bool((jax.random.key_data(a) == jax.random.key_data(c)).all())
      False
    """
    check_key("named_key", key)
    if not isinstance(name, str) or not name:
        raise TypeError(f"named_key: name must be a non-empty str, got {name!r}")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return jax.random.fold_in(key, np.uint32(int.from_bytes(digest[:4], "little")))
