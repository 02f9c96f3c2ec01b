"""NaN/Inf detection: host-side checks at the boundary of compression functions, traced flags.

Two halves. :func:`check_finite` runs on the host, outside any trace: one fused
reduction per floating-point leaf (on the device for JAX arrays, with numpy for
numpy arrays), one transfer of the results, and only for a failing tree a count
of the NaN and Inf values in the first few bad leaves; it raises
:class:`jaxzip._errors.NonFiniteError` naming the function and the paths. Leaves
that are tracers (the caller jitted or vmapped the function) are skipped: under
a trace no value is known, so the check only happens eagerly.

:func:`finite_flags` and :func:`nonfinite_counts` are traced code for inside a
jitted step (one bool, or one ``[NaN, Inf]`` count pair, per leaf);
:func:`nonfinite_paths` and :func:`describe_counts` turn their results back into
paths and messages on the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._errors import NonFiniteError
from jaxzip._types import PyTree
from jaxzip.paths import leaf_paths, leaves_with_paths

SHOWN = 3
"""How many bad leaves a message describes in detail (all are listed in ``paths``)."""

_all_finite = jax.jit(lambda x: jnp.all(jnp.isfinite(x)))
_no_nan = jax.jit(lambda x: jnp.logical_not(jnp.any(jnp.isnan(x))))


def _is_inexact(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return isinstance(x, (float, complex))
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def finite_flags(tree: PyTree) -> jax.Array:
    """One bool per leaf (flattening order): True where every value of the leaf is finite.

    Traceable (one reduction per float leaf, fused by XLA); non-float leaves are
    True. Turn the result into paths with :func:`nonfinite_paths`.

    Args:
      tree: any pytree of arrays (concrete or traced).

    Returns:
      A bool array of shape ``(number of leaves,)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> jax.jit(finite_flags)({"a": jnp.array([1.0, jnp.nan]), "b": jnp.ones(2), "n": 3})
      Array([False,  True,  True], dtype=bool)
    """
    flags = [
        jnp.all(jnp.isfinite(x)) if _is_inexact(x) else jnp.asarray(True)
        for x in jax.tree.leaves(tree)
    ]
    return jnp.stack(flags) if flags else jnp.zeros((0,), bool)


def nonfinite_counts(tree: PyTree) -> jax.Array:
    """The number of NaN and of Inf values of each leaf, for inside a jitted step.

    Args:
      tree: any pytree of arrays (concrete or traced).

    Returns:
      An int32 array of shape ``(number of leaves, 2)``: ``[:, 0]`` counts NaN,
      ``[:, 1]`` counts ±Inf (zeros for non-float leaves).

    Example:
      >>> import jax.numpy as jnp
      >>> nonfinite_counts({"a": jnp.array([jnp.nan, jnp.inf, -jnp.inf]), "b": jnp.ones(2)})
      Array([[1, 2],
             [0, 0]], dtype=int32)
    """
    rows = [
        jnp.stack([jnp.sum(jnp.isnan(x), dtype=jnp.int32), jnp.sum(jnp.isinf(x), dtype=jnp.int32)])
        if _is_inexact(x)
        else jnp.zeros((2,), jnp.int32)
        for x in jax.tree.leaves(tree)
    ]
    return jnp.stack(rows) if rows else jnp.zeros((0, 2), jnp.int32)


def _per_leaf(tree: PyTree, values: Any, trailing: int, what: str) -> tuple[list[str], np.ndarray]:
    paths = leaf_paths(tree)
    arr = np.asarray(values)
    if arr.ndim < 1 + trailing or arr.shape[arr.ndim - 1 - trailing] != len(paths):
        raise ValueError(
            f"{what}: expected one entry per leaf of the tree ({len(paths)} leaves) on axis "
            f"{-1 - trailing}, got shape {arr.shape}"
        )
    return paths, arr


def nonfinite_paths(tree: PyTree, flags: Any) -> list[str]:
    """The paths of the leaves whose flag (from :func:`finite_flags`) is False.

    Args:
      tree: the tree the flags were computed from (or any tree of its structure).
      flags: bool array of shape ``(..., number of leaves)``; leading axes (e.g.
        students of a vmapped step) are reduced: a leaf is reported if any is False.

    Returns:
      The ``/``-joined paths, in flattening order.

    Raises:
      ValueError: ``flags`` does not have one entry per leaf on its last axis.

    Example:
      >>> import jax.numpy as jnp
      >>> tree = {"a": jnp.array([1.0, jnp.inf]), "b": jnp.ones(2)}
      >>> nonfinite_paths(tree, finite_flags(tree))
      ['a']
    """
    paths, arr = _per_leaf(tree, flags, 0, "nonfinite_paths: flags")
    ok = np.all(arr.astype(bool).reshape(-1, len(paths)), axis=0)
    return [p for p, good in zip(paths, ok, strict=True) if not good]


def _display(name: str, path: str) -> str:
    if name and path:
        return f"{name}/{path}"
    return name or path or "value"


def describe_counts(tree: PyTree, counts: Any, *, label: str) -> tuple[list[str], list[str]]:
    """Phrases for the leaves with NaN/Inf counts (from :func:`nonfinite_counts`).

    Args:
      tree: the tree the counts were computed from (or any tree of its structure).
      counts: int array of shape ``(..., number of leaves, 2)``; leading axes are summed.
      label: what the tree is, e.g. ``"gradient"``; it starts every phrase.

    Returns:
      ``(phrases, paths)``: ``"gradient 'w' has 2 NaN, 1 Inf"`` for each bad leaf
      and the bad leaves' paths, in flattening order.

    Raises:
      ValueError: ``counts`` does not have shape ``(..., leaves, 2)``.

    Example:
      >>> import jax.numpy as jnp
      >>> g = {"b": jnp.zeros(2), "w": jnp.array([jnp.nan, jnp.nan, jnp.inf])}
      >>> describe_counts(g, nonfinite_counts(g), label="gradient")
      (["gradient 'w' has 2 NaN, 1 Inf"], ['w'])
    """
    paths, arr = _per_leaf(tree, counts, 1, "describe_counts: counts")
    if arr.shape[-1] != 2:
        raise ValueError(f"describe_counts: counts must end in an axis of 2, got {arr.shape}")
    total = arr.reshape(-1, len(paths), 2).sum(axis=0)
    phrases, bad = [], []
    for path, (nan, inf) in zip(paths, total.tolist(), strict=True):
        if nan or inf:
            parts = [f"{nan} NaN"] * bool(nan) + [f"{inf} Inf"] * bool(inf)
            phrases.append(f"{label} {_display('', path)!r} has {', '.join(parts)}")
            bad.append(path)
    return phrases, bad


def _host_values(leaf: Any) -> np.ndarray:
    arr = np.asarray(leaf)
    return arr if np.issubdtype(arr.dtype, np.inexact) else arr.astype(np.float32)


def _on_host(x: jax.Array) -> bool:
    """Whether ``x`` lives on CPU devices only (numpy reads it without a copy or a compile)."""
    return x.is_fully_addressable and all(d.platform == "cpu" for d in x.devices())


def _leaf_ok(leaf: Any, allow_inf: bool) -> Any:
    """A (device or host) bool: whether ``leaf`` passes, or None for leaves not checked."""
    if isinstance(leaf, jax.core.Tracer) or not _is_inexact(leaf) or np.size(leaf) == 0:
        return None
    if isinstance(leaf, jax.Array) and not _on_host(leaf):
        return (_no_nan if allow_inf else _all_finite)(leaf)
    if isinstance(leaf, (float, complex)):
        return not math.isnan(abs(leaf)) and (allow_inf or not math.isinf(abs(leaf)))
    values = _host_values(leaf)
    return not np.isnan(values).any() if allow_inf else bool(np.isfinite(values).all())


def check_finite(tree: PyTree, *, where: str, name: str = "", allow_inf: bool = False) -> None:
    """Raises :class:`~jaxzip._errors.NonFiniteError` if a float leaf of ``tree`` holds NaN/Inf.

    Host-side, for the boundary of a function: one fused reduction per float
    leaf (numpy for numpy and CPU arrays, a jitted reduction on an accelerator)
    and one transfer of the results; leaves that are tracers are skipped
    (a function the caller jits checks nothing). Integer and bool leaves pass.

    Args:
      where: the function doing the check, named in the message (``"quantize_params"``).
      name: a prefix for the paths in the message (``"x"`` for a lone array).
      allow_inf: accept ±Inf and reject only NaN (for scores, where -Inf means
        "prune first").

    Raises:
      NonFiniteError: naming the first few bad leaves by path with their NaN and
        Inf counts; its ``paths`` attribute lists every bad leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> check_finite({"w": jnp.ones(3)}, where="demo")  # passes silently
      >>> check_finite({"w": jnp.array([1.0, jnp.nan, jnp.inf])}, where="demo")
      Traceback (most recent call last):
      ...
      jaxzip._errors.NonFiniteError: w: holds 2 NaN or Inf value(s) (1 NaN, 1 Inf, of 3); \
demo expects finite values
    """
    check_finite_items([(name, tree)], where=where, allow_inf=allow_inf)


def check_finite_items(
    items: Sequence[tuple[str, PyTree]], *, where: str, allow_inf: bool = False
) -> None:
    """:func:`check_finite` of ``[(path, subtree), ...]``, the paths joined with the subtrees'.

    For callers that flatten a tree their own way (the codec, whose dict keys need
    not be sortable): every bad leaf of every item is reported at once.

    Example:
      >>> import numpy as np
      >>> check_finite_items([("a/b", np.ones(2)), ("c", [1.0, float("inf")])], where="demo")
      Traceback (most recent call last):
      ...
      jaxzip._errors.NonFiniteError: c/1: holds 1 NaN or Inf value(s) (0 NaN, 1 Inf, of 1); \
demo expects finite values
    """
    pending = []
    with jax.ensure_compile_time_eval():  # concrete leaves inside a caller's trace
        for prefix, tree in items:
            for path, leaf in leaves_with_paths(tree):
                ok = _leaf_ok(leaf, allow_inf)
                if ok is not None:
                    pending.append((_display(prefix, path), leaf, ok))
        if not pending:
            return
        oks = jax.device_get([ok for _, _, ok in pending])
    bad = [(path, leaf) for (path, leaf, _), ok in zip(pending, oks, strict=True) if not ok]
    if bad:
        raise NonFiniteError(
            nonfinite_message(bad, where=where, allow_inf=allow_inf),
            paths=tuple(p for p, _ in bad),
        )


def nonfinite_message(
    bad: Sequence[tuple[str, Any]], *, where: str, allow_inf: bool = False
) -> str:
    """The message of :func:`check_finite` for ``[(path, leaf), ...]`` known to be bad."""
    details = []
    for path, leaf in bad[:SHOWN]:
        values = _host_values(leaf)
        nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        if allow_inf:
            details.append(f"{path}: holds {nan} NaN value(s) (of {values.size})")
        else:
            details.append(
                f"{path}: holds {nan + inf} NaN or Inf value(s) "
                f"({nan} NaN, {inf} Inf, of {values.size})"
            )
    if len(bad) > SHOWN:
        more = [p for p, _ in bad[SHOWN:]]
        shown = more[:8] + (["..."] if len(more) > 8 else [])
        details.append(f"and {len(more)} more leaves: {', '.join(shown)}")
    expected = "values without NaN" if allow_inf else "finite values"
    return f"{'; '.join(details)}; {where} expects {expected}"
