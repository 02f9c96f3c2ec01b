"""Shared pieces of the auto package: checking eval results, building one candidate."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import prune as jz_prune
from jaxzip import quant as jz_quant
from jaxzip._types import Mask, Params, Where
from jaxzip.auto._journal import config_hash
from jaxzip.paths import leaves_with_paths, selected_paths

EvalFn = Callable[[Params], Any]
"""``eval_fn(params) -> float``: validation accuracy (higher is better)."""


def check_score(value: Any, what: str = "eval_fn") -> float:
    """Returns ``value`` as a finite Python float, or raises ValueError naming ``what``.

    Example:
      >>> check_score(jnp.float32(0.5))
      0.5
    """
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{what}: expected a finite scalar number, got {value!r}")
    try:
        arr = np.asarray(value)
    except Exception:
        raise ValueError(f"{what}: expected a finite scalar number, got {value!r}") from None
    if arr.shape != () or arr.dtype.kind not in "fiu":
        raise ValueError(
            f"{what}: expected a finite scalar number, got {value!r} "
            f"(shape {arr.shape}, dtype {arr.dtype})"
        )
    out = float(arr)
    if not math.isfinite(out):
        raise ValueError(f"{what}: expected a finite scalar number, got {out!r}")
    return out


def layer_paths(params: Params, where: Where) -> list[str]:
    """The '/'-joined paths of the float leaves ``where`` selects (at least one).

    Raises:
      ValueError: ``where`` selects nothing, or a selected leaf is not a float array.
    """
    paths = selected_paths(params, where)
    leaves = dict(leaves_with_paths(params))
    for p in paths:
        if not jnp.issubdtype(jnp.result_type(leaves[p]), jnp.floating):
            raise ValueError(f"where: selected leaf {p!r} is not a float array")
    return paths


def exact(path: str) -> str:
    """A regex that full-matches exactly ``path``."""
    return re.escape(path)


@jax.jit
def _leaf_mask(x: jax.Array, sparsity: jax.Array) -> jax.Array:
    # one compiled program per leaf shape (the sparsity is traced)
    return jz_prune.magnitude_mask({"w": x}, sparsity=sparsity, where="w")["w"]


def layer_mask(params: Params, sparsities: Mapping[str, float]) -> Mask:
    """Magnitude keep-mask pruning each named leaf to its own sparsity (others all True).

    Same as ``jaxzip.prune.magnitude_mask(params, sparsity=s, where=<path>)`` per leaf.
    """
    flat, treedef = jax.tree_util.tree_flatten(params)
    paths = [p for p, _ in leaves_with_paths(params)]
    out = []
    for path, leaf in zip(paths, flat, strict=True):
        s = float(sparsities.get(path, 0.0))
        if s > 0:
            out.append(_leaf_mask(jnp.asarray(leaf), jnp.float32(s)))
        else:
            out.append(jnp.ones(jnp.shape(leaf), bool))
    return jax.tree.unflatten(treedef, out)


def decode(books: Params) -> Params:
    """``jaxzip.quant.dequantize_params`` (eager: its few ops compile once per leaf shape)."""
    return jz_quant.dequantize_params(books)


@functools.partial(jax.jit, static_argnames=("bits", "iters"))
def _kmeans(x: jax.Array, mask: jax.Array, *, bits: int, iters: int) -> jz_quant.KMeansArray:
    # one compiled program per (shape, bits) instead of many eager dispatches
    return jz_quant.kmeans(x, bits=bits, mask=mask, iters=iters)


def share_weights(params: Params, bits: Mapping[str, int], mask: Mask, *, iters: int) -> Params:
    """k-means codebooks (``jaxzip.quant.kmeans``) per named leaf at its bits; others as they are."""
    flat, treedef = jax.tree_util.tree_flatten(params)
    paths = [p for p, _ in leaves_with_paths(params)]
    masks = jax.tree.leaves(mask)
    out = []
    for path, leaf, m in zip(paths, flat, masks, strict=True):
        if path in bits:
            out.append(_kmeans(leaf, m, bits=int(bits[path]), iters=int(iters)))
        else:
            out.append(leaf)
    return jax.tree.unflatten(treedef, out)


def est_bytes(n: int, sparsity: float, bits: int) -> float:
    """Estimated stored bytes of an ``n``-weight layer: positions (entropy), indices, codebook.

    Example:
      >>> est_bytes(800, 0.0, 4)
      464.0
    """
    s = min(max(sparsity, 0.0), 1.0 - 1e-9)
    positions = 0.0 if s == 0 else n * -(s * np.log2(s) + (1 - s) * np.log2(1 - s))
    return float((positions + n * (1 - s) * bits + 32 * 2**bits) / 8)


def settings_key(obj: Any) -> str:
    """The first 24 hex digits of :func:`jaxzip.auto.config_hash` of ``obj``."""
    return config_hash(obj)[:24]


def check_fraction_list(name: str, values: Any, *, lo_open: bool = False) -> tuple[float, ...]:
    """Validates a non-empty sequence of distinct numbers in ``[0, 1)`` (``(0, 1)`` if lo_open)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}: expected a sequence of numbers in [0, 1), got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name}: expected numbers in [0, 1), got {v!r} in {values!r}")
        if not (0 < v < 1 if lo_open else 0 <= v < 1):
            raise ValueError(f"{name}: expected numbers in [0, 1), got {v!r} in {values!r}")
        out.append(float(v))
    if not out or len(set(out)) != len(out):
        raise ValueError(
            f"{name}: expected a non-empty sequence of distinct values, got {values!r}"
        )
    return tuple(sorted(out))


def check_bits_list(name: str, values: Any) -> tuple[int, ...]:
    """Validates a non-empty sequence of distinct ints in 1..8; returned in decreasing order."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}: expected a sequence of ints in 1..8, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= v <= 8:
            raise ValueError(f"{name}: expected ints in 1..8, got {v!r} in {values!r}")
        out.append(int(v))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"{name}: expected a non-empty sequence of distinct ints, got {values!r}")
    return tuple(sorted(out, reverse=True))


def check_number(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as a finite float (> 0 with ``positive``, else >= 0); ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (v <= 0 if positive else v < 0):
        want = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: expected a finite number {want}, got {value!r}")
    return v


def check_count(name: str, value: Any, *, optional: bool = True) -> int | None:
    """``value`` as an int >= 1 (None passes when ``optional``); ValueError naming ``name``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)
