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


def first_structure_difference(
    a: PyTree, b: PyTree, names: tuple[str, str] | None = None
) -> str | None:
    """A message naming the first path at which two trees differ in structure or shape, or None.

    With ``names`` (what ``a`` and ``b`` are, e.g. ``("the model", "the file")``) the
    message says which tree has which path or shape.

    Example:
      >>> import numpy as np
      >>> first_structure_difference({"w": np.zeros(2)}, {"w": np.zeros(3)}, ("a", "b"))
      "at path 'w': shape (2,) in a, (3,) in b"
      >>> first_structure_difference({"w": np.zeros(2)}, {"v": np.zeros(2)})
      "path 'w' in one tree faces path 'v' in the other"
    """
    one, other = names or ("one tree", "the other")
    la, lb = leaves_with_paths(a), leaves_with_paths(b)
    for (pa, xa), (pb, xb) in zip(la, lb, strict=False):
        if pa != pb:
            return f"path {pa!r} in {one} faces path {pb!r} in {other}"
        if jnp.shape(xa) != jnp.shape(xb):
            if names:
                return f"at path {pa!r}: shape {jnp.shape(xa)} in {one}, {jnp.shape(xb)} in {other}"
            return f"at path {pa!r}: shape {jnp.shape(xa)} vs {jnp.shape(xb)}"
    if len(la) != len(lb):
        longer, shorter = (la, lb) if len(la) > len(lb) else (lb, la)
        where = "in only one tree" if not names else f"only in {(one, other)[longer is lb]}"
        return f"path {longer[len(shorter)][0]!r} exists {where}"
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
