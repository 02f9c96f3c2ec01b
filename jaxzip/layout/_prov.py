"""Provenance of a kernel through layout-preserving ops between a param leaf and its matmul.

A :class:`Prov` says that a jaxpr value is a param leaf (``leaf``: its index in
the flattened params) seen through ops that only move or regroup its entries:
``axes[i]`` is the set of the leaf's original axes that the value's axis ``i``
is made of (a merged axis holds several, a split axis repeats one, an added
size-1 axis holds none). ``chain`` holds NumPy replays of those ops, so an index
array over the original leaf can be carried to the consumed shape (to put
activation rows in the original kernel's row order). ``stacked`` holds the
original axes that a ``scan`` sliced away (a stack of layers): a value seen
inside the scan body is one layer's slice of the leaf, and ``layer`` holds the
indices of the slices taken when the scan is evaluated layer by layer
(:class:`._walk.Walker` with ``unroll``), outermost first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

Axes = tuple[frozenset[int], ...]


class Prov(NamedTuple):
    leaf: int
    axes: Axes
    chain: tuple[Callable[[np.ndarray], np.ndarray], ...] = ()
    stacked: frozenset[int] = frozenset()
    layer: tuple[int, ...] = ()


def leaf_prov(index: int, ndim: int) -> Prov:
    """The provenance of param leaf ``index`` itself."""
    return Prov(index, tuple(frozenset({a}) for a in range(ndim)))


def _with(p: Prov, axes: Axes, replay: Callable[[np.ndarray], np.ndarray] | None) -> Prov:
    chain = p.chain if replay is None else (*p.chain, replay)
    return Prov(p.leaf, axes, chain, p.stacked, p.layer)


def reshape_axes(axes: Axes, old: tuple[int, ...], new: tuple[int, ...]) -> Axes | None:
    """The axes after a reshape that only splits or merges axes; None for any other reshape.

    Size-1 axes are ignored (a new size-1 axis holds no original axis).

    Example:
      >>> a = (frozenset({0}), frozenset({1}))
      >>> reshape_axes(a, (6, 4), (2, 3, 4))
      (frozenset({0}), frozenset({0}), frozenset({1}))
      >>> reshape_axes(a, (6, 4), (24,))
      (frozenset({0, 1}),)
      >>> reshape_axes(a, (6, 4), (4, 6)) is None
      True
    """
    if 0 in old or 0 in new:
        return None
    olds = [(i, d) for i, d in enumerate(old) if d != 1]
    news = [(j, d) for j, d in enumerate(new) if d != 1]
    out: list[frozenset[int]] = [frozenset()] * len(new)
    i = j = 0
    while i < len(olds) and j < len(news):
        block_old, block_new = [olds[i][0]], [news[j][0]]
        po, pn = olds[i][1], news[j][1]
        i, j = i + 1, j + 1
        while po != pn:
            if po < pn:
                block_old.append(olds[i][0])
                po *= olds[i][1]
                i += 1
            else:
                block_new.append(news[j][0])
                pn *= news[j][1]
                j += 1
        if len(block_old) > 1 and len(block_new) > 1:
            return None
        merged = frozenset().union(*(axes[k] for k in block_old))
        for k in block_new:
            out[k] = merged
    return tuple(out)


def _shape(var: Any) -> tuple[int, ...]:
    return tuple(var.aval.shape)


def _reshape(eqn: Any, p: Prov) -> Prov | None:
    old, new = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
    axes = reshape_axes(p.axes, old, new)
    if axes is None:
        return None
    return _with(p, axes, lambda a: np.reshape(a, new))


def _transpose(eqn: Any, p: Prov) -> Prov:
    perm = tuple(eqn.params["permutation"])
    return _with(p, tuple(p.axes[i] for i in perm), lambda a: np.transpose(a, perm))


def _squeeze(eqn: Any, p: Prov) -> Prov:
    dims = {d % len(p.axes) for d in eqn.params["dimensions"]}
    axes = tuple(a for i, a in enumerate(p.axes) if i not in dims)
    new = _shape(eqn.outvars[0])
    return _with(p, axes, lambda a: np.reshape(a, new))


def _broadcast_in_dim(eqn: Any, p: Prov) -> Prov | None:
    old, new = _shape(eqn.invars[0]), tuple(eqn.params["shape"])
    dims = tuple(eqn.params["broadcast_dimensions"])
    if any(old[i] != new[d] for i, d in enumerate(dims)):
        return None
    if any(new[j] != 1 for j in range(len(new)) if j not in dims):
        return None  # a real broadcast: the value is no longer the kernel
    axes: list[frozenset[int]] = [frozenset()] * len(new)
    for i, d in enumerate(dims):
        axes[d] = p.axes[i]
    return _with(p, tuple(axes), lambda a: np.reshape(a, new))


def _rev(eqn: Any, p: Prov) -> Prov:
    dims = tuple(eqn.params["dimensions"])
    return _with(p, p.axes, lambda a: np.flip(a, dims) if dims else a)


def _same(eqn: Any, p: Prov) -> Prov:
    return p


# Single-operand ops that keep every entry of the kernel (possibly moved or regrouped).
_RULES: dict[str, Callable[[Any, Prov], Prov | None]] = {
    "reshape": _reshape,
    "transpose": _transpose,
    "squeeze": _squeeze,
    "expand_dims": _broadcast_in_dim,
    "broadcast_in_dim": _broadcast_in_dim,
    "rev": _rev,
    "convert_element_type": _same,
    "copy": _same,
    "copy_p": _same,
    "reduce_precision": _same,
    "sharding_constraint": _same,
}

# Ops that pass each operand through to the matching output unchanged.
_PASS_THROUGH = frozenset({"optimization_barrier", "device_put"})

# Elementwise ops: entry i of the output comes from entry i of each same-shape operand, so
# a kernel transformed in place (``w * c`` for a constant ``c``, fake quantization
# ``round(w / s) * s``, ``w + a @ b``) keeps its layout. An operand that depends on the model's inputs (an
# activation: ``x + bias``) ends the provenance.
_ELEMENTWISE = frozenset(
    [
        "add",
        "sub",
        "mul",
        "div",
        "max",
        "min",
        "neg",
        "abs",
        "sign",
        "round",
        "floor",
        "ceil",
        "clamp",
        "select_n",
        "pow",
        "integer_pow",
        "exp",
        "log",
        "tanh",
        "logistic",
        "sqrt",
        "rsqrt",
        "square",
        "stop_gradient",
    ]
)


def _elementwise(
    eqn: Any, provs: list[Prov | None], taints: list[bool]
) -> list[Prov | None] | None:
    if any(t and p is None for p, t in zip(provs, taints, strict=True)):
        return None  # mixed with an activation (x + bias): the result is not a kernel
    shape = _shape(eqn.outvars[0])
    tagged = [(v, p) for v, p in zip(eqn.invars, provs, strict=True) if p is not None]
    first = tagged[0][1]
    for v, p in tagged:
        if _shape(v) != shape or p.leaf != first.leaf or p.axes != first.axes:
            return None  # a broadcast kernel, or two different kernels mixed
        if p.chain != first.chain or p.stacked != first.stacked or p.layer != first.layer:
            return None
    return [first]


def propagate(
    eqn: Any, provs: list[Prov | None], taints: list[bool] | None = None
) -> list[Prov | None] | None:
    """The output provenances of a layout-preserving ``eqn``; None if it is not one.

    ``taints[i]``: operand ``i`` depends on the model's inputs (an activation).
    """
    name = eqn.primitive.name
    if name in _PASS_THROUGH:
        if len(eqn.invars) != len(eqn.outvars):
            return None
        return list(provs)
    if name in _ELEMENTWISE and len(eqn.outvars) == 1:
        return _elementwise(eqn, provs, taints or [False] * len(provs))
    rule = _RULES.get(name)
    if rule is None or len(eqn.outvars) != 1:
        return None
    p = provs[0]
    if p is None or any(q is not None for q in provs[1:]):
        return None
    if name == "reshape" and len(eqn.invars) != 1:
        return None  # a dynamic-shape reshape
    return [rule(eqn, p)]


def replay(p: Prov, array: np.ndarray) -> np.ndarray:
    """Applies ``p``'s chain of layout ops to a NumPy array of the original leaf's shape."""
    for fn in p.chain:
        array = fn(array)
    return array
