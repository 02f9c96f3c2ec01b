"""Boundary checks shared by the pruning modules (structure, sparsity values, dtypes)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """Whether ``x`` has a value known now (not a tracer under jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def check_sparsity(value: Any, name: str = "sparsity") -> None:
    """Raises ``ValueError`` unless ``value`` is a scalar in ``[0, 1)``; traced values are skipped."""
    if not is_concrete(value):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name}: expected a scalar, got shape {jnp.shape(value)}")
        return
    arr = np.asarray(value)
    if arr.ndim != 0 or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name}: expected a real scalar in [0, 1), got {value!r}")
    if not 0.0 <= float(arr) < 1.0:
        raise ValueError(f"{name}: expected a value in [0, 1), got {float(arr)!r}")


def check_float(path: str, leaf: Any, what: str) -> None:
    """Raises ``ValueError`` if a selected leaf is not floating point."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is None:
        dtype = np.asarray(leaf).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{what}: leaf {path!r} is selected but has dtype {dtype}; only floating-point "
            "leaves can be pruned (narrow `where`)"
        )
