"""Boundary checks shared by the pruning modules (structure, sparsity values, dtypes)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import PyTree
from jaxzip.paths import leaves_with_paths


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


def first_structure_difference(a: PyTree, b: PyTree) -> str | None:
    """A message naming the first path at which two trees differ in structure or shape, or None."""
    la, lb = leaves_with_paths(a), leaves_with_paths(b)
    for (pa, xa), (pb, xb) in zip(la, lb, strict=False):
        if pa != pb:
            return f"path {pa!r} in one tree faces path {pb!r} in the other"
        if jnp.shape(xa) != jnp.shape(xb):
            return f"at path {pa!r}: shape {jnp.shape(xa)} vs {jnp.shape(xb)}"
    if len(la) != len(lb):
        longer, shorter = (la, lb) if len(la) > len(lb) else (lb, la)
        return f"path {longer[len(shorter)][0]!r} exists in only one tree"
    if jax.tree.structure(a) != jax.tree.structure(b):
        return f"tree structures differ: {jax.tree.structure(a)} vs {jax.tree.structure(b)}"
    return None


def check_mask(params: PyTree, mask: PyTree, name: str = "mask") -> None:
    """Raises ``ValueError`` if ``mask`` does not have exactly ``params``' structure and shapes.

    Also raises if a mask leaf is not boolean.
    """
    diff = first_structure_difference(params, mask)
    if diff is not None:
        raise ValueError(f"{name}: expected the params' structure and shapes; {diff}")
    for path, leaf in leaves_with_paths(mask):
        dtype = getattr(leaf, "dtype", None) or np.asarray(leaf).dtype
        if dtype != np.bool_:
            raise ValueError(f"{name}: expected bool leaves, got dtype {dtype} at path {path!r}")


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
