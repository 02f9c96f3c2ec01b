"""Key paths: turning JAX key paths into ``/``-joined strings."""

from __future__ import annotations

from typing import Any

import jax

from jaxzip._types import KeyPath, PyTree


def _key_name(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def keystr(path: KeyPath) -> str:
    """Joins a JAX key path with ``/``: ``(DictKey('Dense_0'), DictKey('kernel'))`` → ``"Dense_0/kernel"``.

    Dict keys, attribute names (registered dataclasses) and sequence indices all
    become plain path components. The trailing ``.value`` attribute that flax nnx
    ``Variable`` leaves add is dropped, so an nnx ``State`` and the pure dict from
    ``nnx.to_pure_dict`` give the same paths.

    Args:
      path: a key path from ``jax.tree_util.tree_flatten_with_path``.

    Returns:
      The ``/``-joined path string (``""`` for the root leaf).

    Example:
      >>> import jax
      >>> [keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path({"a": [1, {"b": 2}]})]
      ['a/0', 'a/1/b']
    """
    keys = list(path)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return "/".join(_key_name(k) for k in keys)


def leaves_with_paths(tree: PyTree) -> list[tuple[str, Any]]:
    """Returns ``[(path, leaf), ...]`` for every leaf of ``tree``, in flattening order.

    Example:
      >>> leaves_with_paths({"Dense_0": {"bias": 0.0, "kernel": 1.0}})
      [('Dense_0/bias', 0.0), ('Dense_0/kernel', 1.0)]
    """
    return [(keystr(p), leaf) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def leaf_paths(tree: PyTree) -> list[str]:
    """Returns the ``/``-joined path of every leaf of ``tree``, in flattening order.

    Example:
      >>> leaf_paths({"b": 1, "a": (2, 3)})
      ['a/0', 'a/1', 'b']
    """
    return [p for p, _ in leaves_with_paths(tree)]


def map_with_paths(fn: Any, tree: PyTree, *rest: PyTree) -> PyTree:
    """Like ``jax.tree.map`` but ``fn`` receives the ``/``-joined path first.

    Example:
      >>> map_with_paths(lambda p, x: p + "=" + str(x), {"a": 1, "b": [2]})
      {'a': 'a=1', 'b': ['b/0=2']}
    """
    return jax.tree_util.tree_map_with_path(lambda p, *xs: fn(keystr(p), *xs), tree, *rest)
