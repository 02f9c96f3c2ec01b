"""Checks that one pytree has another's structure: masks and updates against params.

Shared by the units above (``prune`` masks, ``quant``'s GPTQ with a keep-mask), so each
names the first differing path the same way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import PyTree
from jaxzip.paths._paths import leaves_with_paths


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
