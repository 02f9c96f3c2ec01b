"""Type aliases shared across jaxzip (STYLE.md rule 8: one place for them)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import jax

PyTree: TypeAlias = Any
"""Any JAX pytree: nested dicts, lists, tuples, registered dataclasses, nnx ``State``."""

Params: TypeAlias = PyTree
"""A parameter pytree (linen ``variables["params"]``, nnx ``State`` or pure dict, ...)."""

Mask: TypeAlias = PyTree
"""A bool pytree with exactly the params' structure."""

KeyPath: TypeAlias = tuple[Any, ...]
"""A JAX key path as returned by ``jax.tree_util.tree_flatten_with_path``."""

Predicate: TypeAlias = Callable[[str, Any], bool]
"""A leaf predicate ``(path, leaf) -> bool`` where ``path`` is the ``/``-joined key path."""

Where: TypeAlias = "str | re.Pattern[str] | Predicate | Sequence[Where]"
"""A selection: regex (full match on the path), predicate, or a sequence meaning any-of."""

Array: TypeAlias = jax.Array
