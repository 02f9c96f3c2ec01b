"""``where=``: the one selection mechanism of jaxzip.

A *where* is one of

* a regex (``str`` or compiled pattern), **full-matched** against the leaf's
  ``/``-joined key path (``"Dense_0/kernel"``);
* a predicate ``(path, leaf) -> bool`` (for example :func:`min_ndim`);
* a sequence of these, meaning *any of*.

:func:`select` turns a where into a bool tree with the tree's structure. A where
that selects nothing is an error (it is almost always a typo), unless the caller
passes ``allow_empty=True``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxzip._types import PyTree, Where
from jaxzip.paths._paths import keystr, leaves_with_paths

_MAX_SHOWN = 8


def _check_where(where: Any, *, _top: bool = True) -> None:
    if isinstance(where, str):
        try:
            re.compile(where)
        except re.error as e:
            raise ValueError(f"where: invalid regex {where!r}: {e}") from None
        return
    if isinstance(where, re.Pattern) or callable(where):
        return
    if isinstance(where, Sequence) and not isinstance(where, bytes):
        if _top and len(where) == 0:
            raise ValueError("where: expected a regex, a predicate or a non-empty sequence, got []")
        for w in where:
            _check_where(w, _top=False)
        return
    raise TypeError(
        "where: expected a regex string, a compiled pattern, a predicate "
        f"(path, leaf) -> bool, or a sequence of these; got {type(where).__name__} {where!r}"
    )


def _matches(where: Any, path: str, leaf: Any) -> bool:
    if isinstance(where, str):
        return re.fullmatch(where, path) is not None
    if isinstance(where, re.Pattern):
        return where.fullmatch(path) is not None
    if callable(where):
        return bool(where(path, leaf))
    return any(_matches(w, path, leaf) for w in where)


def describe(where: Where) -> str:
    """A short human-readable form of a where, for error messages.

    Example:
      >>> print(describe([r".*/kernel", min_ndim(2)]))
      any of ['.*/kernel', min_ndim(2)]
    """
    if isinstance(where, str):
        return repr(where)
    if isinstance(where, re.Pattern):
        return repr(where.pattern)
    if callable(where):
        return (
            repr(where)
            if dataclasses.is_dataclass(where)
            else getattr(where, "__name__", repr(where))
        )
    return "any of [" + ", ".join(describe(w) for w in where) + "]"


def matches(where: Where, path: str, leaf: Any = None) -> bool:
    """Whether one ``(path, leaf)`` is selected by ``where``.

    Example:
      >>> matches(r".*/kernel", "Dense_0/kernel")
      True
      >>> matches(r"kernel", "Dense_0/kernel")  # full match, not search
      False
    """
    _check_where(where)
    return _matches(where, path, leaf)


def select(tree: PyTree, where: Where, *, allow_empty: bool = False) -> PyTree:
    """Returns a bool tree with ``tree``'s structure: True where ``where`` selects the leaf.

    Args:
      tree: any pytree (linen params, nnx ``State`` or pure dict, lists, tuples,
        registered dataclasses).
      where: a regex full-matched on the ``/``-joined path, a predicate
        ``(path, leaf) -> bool``, or a sequence of these (any-of).
      allow_empty: if False (the default), selecting no leaf raises.

    Returns:
      A pytree of Python bools with the structure of ``tree``.

    Raises:
      ValueError: ``where`` selects nothing (the message names the pattern and
        some existing paths), or a regex is invalid.
      TypeError: ``where`` is not a regex, predicate or sequence.

    Example:
      >>> params = {"Dense_0": {"kernel": 1.0, "bias": 0.0}}
      >>> select(params, r".*/kernel")
      {'Dense_0': {'bias': False, 'kernel': True}}
    """
    _check_where(where)
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    picked = [_matches(where, keystr(p), leaf) for p, leaf in flat]
    if not allow_empty and not any(picked):
        raise_no_match(tree, where)
    return jax.tree_util.tree_unflatten(treedef, picked)


def selected_paths(tree: PyTree, where: Where, *, allow_empty: bool = False) -> list[str]:
    """The paths of the leaves that ``where`` selects, in flattening order.

    Example:
      >>> selected_paths({"a": {"kernel": 1, "bias": 2}, "b": {"kernel": 3}}, r".*/kernel")
      ['a/kernel', 'b/kernel']
    """
    mask = select(tree, where, allow_empty=allow_empty)
    return [
        p
        for (p, _), keep in zip(leaves_with_paths(tree), jax.tree.leaves(mask), strict=True)
        if keep
    ]


def raise_no_match(tree: PyTree, where: Where, what: str = "where") -> None:
    """Raises the standard "selects nothing" ``ValueError`` for ``where`` on ``tree``."""
    paths = [p for p, _ in leaves_with_paths(tree)]
    shown = ", ".join(repr(p) for p in paths[:_MAX_SHOWN])
    more = f" (and {len(paths) - _MAX_SHOWN} more)" if len(paths) > _MAX_SHOWN else ""
    hint = f"existing paths: {shown}{more}" if paths else "the tree has no leaves"
    raise ValueError(
        f"{what}={describe(where)} selects no leaf; regexes are full-matched against "
        f"'/'-joined paths; {hint}. Pass allow_empty=True if this is intended."
    )


# --- predicates -------------------------------------------------------------
# Frozen dataclasses so that they are hashable and print readably (like nnx filters).


def _ndim(leaf: Any) -> int:
    return int(np.ndim(leaf)) if not hasattr(leaf, "ndim") else int(leaf.ndim)


@dataclasses.dataclass(frozen=True)
class min_ndim:
    """Selects array leaves with at least ``n`` dimensions (kernels, not biases).

    Example:
      >>> select({"k": jax.numpy.ones((2, 2)), "b": jax.numpy.ones(2)}, min_ndim(2))
      {'b': False, 'k': True}
    """

    n: int

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"min_ndim: n must be a non-negative int, got {self.n!r}")

    def __call__(self, path: str, leaf: Any) -> bool:
        return _ndim(leaf) >= self.n

    def __repr__(self) -> str:
        return f"min_ndim({self.n})"


@dataclasses.dataclass(frozen=True)
class is_float:
    """Selects leaves with a floating-point dtype.

    Example:
      >>> select({"w": jax.numpy.ones(2), "step": jax.numpy.int32(0)}, is_float())
      {'step': False, 'w': True}
    """

    def __call__(self, path: str, leaf: Any) -> bool:
        dtype = getattr(leaf, "dtype", None)
        return dtype is not None and jax.numpy.issubdtype(dtype, jax.numpy.floating)

    def __repr__(self) -> str:
        return "is_float()"


@dataclasses.dataclass(frozen=True)
class all_of:
    """Selects leaves that every one of the given wheres selects.

    Example:
      >>> tree = {"a": {"kernel": jax.numpy.ones((2, 2))}, "b": {"kernel": jax.numpy.ones(2)}}
      >>> selected_paths(tree, all_of(r".*/kernel", min_ndim(2)))
      ['a/kernel']
    """

    wheres: tuple[Any, ...]

    def __init__(self, *wheres: Where) -> None:
        if not wheres:
            raise ValueError("all_of: expected at least one where, got none")
        for w in wheres:
            _check_where(w)
        object.__setattr__(self, "wheres", tuple(wheres))

    def __call__(self, path: str, leaf: Any) -> bool:
        return all(_matches(w, path, leaf) for w in self.wheres)

    def __repr__(self) -> str:
        return "all_of(" + ", ".join(describe(w) for w in self.wheres) + ")"


@dataclasses.dataclass(frozen=True)
class not_:
    """Selects the leaves that ``where`` does not select.

    Example:
      >>> selected_paths({"a": 1, "b": 2}, not_("a"))
      ['b']
    """

    where: Any

    def __post_init__(self) -> None:
        _check_where(self.where)

    def __call__(self, path: str, leaf: Any) -> bool:
        return not _matches(self.where, path, leaf)

    def __repr__(self) -> str:
        return f"not_({describe(self.where)})"
