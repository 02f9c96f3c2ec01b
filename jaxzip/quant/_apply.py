"""Running a model on quantized params: each weight dequantized where it is used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex

from jaxzip._types import Params
from jaxzip.quant._kernel import take_layer
from jaxzip.quant._params import is_quantized
from jaxzip.quant._qarray import QArray, dequantize

_INLINED = ("jit", "pjit", "closed_call", "core_call")
"""Call primitives evaluated inline, so their quantized operands are dequantized per use inside."""


class _Lazy:
    """A quantized leaf standing for its float array until an equation needs it."""

    __slots__ = ("q",)

    def __init__(self, q: Any) -> None:
        self.q = q


class _Anchor:
    """The latest value computed from the apply function's inputs (ties dequantization to it)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: Any = None


def _opaque_zero(anchor: jax.Array) -> jax.Array:
    """An int32 0 that XLA cannot prove to be 0, computed from one entry of ``anchor``."""
    bits = anchor.reshape(-1)[0].astype(jnp.int32)
    return lax.shift_right_logical(bits & 1, jnp.int32(1))


def tie(q: Any, anchor: jax.Array) -> Any:
    """``q`` with ``0`` (opaque) added to its first integer leaf: a data dependency on ``anchor``.

    ``lax.optimization_barrier`` is not enough: XLA's CPU pipeline drops it and
    schedules every dequantization first. A real data dependency is kept.
    """
    leaves, treedef = jax.tree.flatten(q)
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jnp.integer):
            leaves[i] = leaf + _opaque_zero(anchor).astype(leaf.dtype)
            return jax.tree.unflatten(treedef, leaves)
    return q


def _materialize(val: Any, anchor: _Anchor) -> Any:
    if not isinstance(val, _Lazy):
        return val
    q = val.q if anchor.value is None else tie(val.q, anchor.value)
    return dequantize(q)


def _can_anchor(x: Any) -> bool:
    return (
        isinstance(x, jax.Array)
        and x.size > 0
        and (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_)
    )


def _inner(eqn: Any) -> Any | None:
    if eqn.primitive.name not in _INLINED:
        return None
    inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    return inner if isinstance(inner, jex.ClosedJaxpr) else None


def _per_layer(v: Any) -> bool:
    """Whether ``v`` is a quantized leaf a scan can take one layer of (along axis 0)."""
    return (
        isinstance(v, _Lazy)
        and len(v.q.shape) > 0
        and not (isinstance(v.q, QArray) and v.q.group_axis == 0)
    )


def _scan(eqn: Any, invals: list[Any], tainted: list[bool], anchor: _Anchor) -> list[Any]:
    """A ``scan`` whose stacked operands (``xs``) include quantized leaves: the loop runs over
    the layer index, and each such leaf's layer is taken (:func:`take_layer`) and dequantized
    inside the body, next to its use, one layer at a time."""
    params = eqn.params
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    body = params["jaxpr"]
    fixed_in = [_materialize(v, anchor) for v in invals[: n_consts + n_carry]]
    stacked = invals[n_consts + n_carry :]
    sliced = [_materialize(v, anchor) for v in stacked if not _per_layer(v)]

    def step(carry: list[Any], x: tuple[jax.Array, list[Any]]) -> tuple[list[Any], list[Any]]:
        i, rest = x[0], iter(x[1])
        layer = [_Lazy(take_layer(v.q, 0, i)) if _per_layer(v) else next(rest) for v in stacked]
        args = [*fixed_in[:n_consts], *carry, *layer]
        outs = _eval(body.jaxpr, list(body.consts), args, tainted, _Anchor())
        return outs[:n_carry], outs[n_carry:]

    carry, ys = jax.lax.scan(
        step,
        fixed_in[n_consts:],
        (jnp.arange(params["length"]), sliced),
        length=params["length"],
        reverse=params["reverse"],
        unroll=params["unroll"],
    )
    return [*carry, *ys]


def _eval(jaxpr: Any, consts: list[Any], args: list[Any], tainted: list[bool], anchor: _Anchor):
    """Evaluates ``jaxpr``; ``_Lazy`` args are dequantized at each equation that reads them."""
    env: dict[Any, Any] = {}
    taint: dict[Any, bool] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex.Literal) else env[v]

    def is_tainted(v: Any) -> bool:
        return not isinstance(v, jex.Literal) and taint.get(v, False)

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a, t in zip(jaxpr.invars, args, tainted, strict=True):
        env[v], taint[v] = a, t
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        tin = [is_tainted(v) for v in eqn.invars]
        lazy = any(isinstance(a, _Lazy) for a in invals)
        inner = _inner(eqn) if lazy else None
        if inner is not None:
            outs = _eval(inner.jaxpr, list(inner.consts), invals, tin, anchor)
        elif lazy and eqn.primitive.name == "scan":
            outs = _scan(eqn, invals, tin, anchor)
        else:
            invals = [_materialize(a, anchor) for a in invals]
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            if not eqn.primitive.multiple_results:
                outs = [outs]
        hot = any(tin)
        for v, o in zip(eqn.outvars, outs, strict=True):
            if isinstance(v, jex.DropVar):
                continue
            env[v], taint[v] = o, hot
            if hot and _can_anchor(o):
                anchor.value = o
    return [_materialize(read(v), anchor) for v in jaxpr.outvars]


def _is_dynamic(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def make_quantized_apply(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Makes ``apply_fn`` run on params whose leaves are ``QArray`` / ``KMeansArray``.

    The returned function has ``apply_fn``'s signature, ``fn(params, *args,
    **kwargs)``, and ``fn(qparams, ...)`` computes ``apply_fn(dequantize_params(
    qparams), ...)``. It traces ``apply_fn`` once to a jaxpr (float params of the
    dequantized shapes and dtypes) and evaluates it with every quantized leaf
    dequantized *at each equation that reads it* (calls such as ``jax.jit``
    inside ``apply_fn`` are evaluated inline, so this reaches into them), so
    each float weight is computed next to its use. Params without quantized
    leaves go straight to ``apply_fn``.

    Memory: under ``jax.jit`` of the returned function, the caller holds only the
    quantized params; inside the program each dequantized weight is tied by a
    data dependency (an exact integer ``+ 0`` the compiler cannot fold) to the
    activation computed just before its use, so XLA cannot hoist every
    dequantization to the start and keep a float copy of the whole model live.
    Measured on CPU (12 dense layers of 512×512, 8-bit per channel, batch 4):
    the compiled program's temporary buffers are 1.06 MB (one float kernel)
    with this function, against 12.6 MB (all twelve) for a jitted
    ``apply_fn(dequantize_params(q), x)``
    (``experiments/benchmarks/quantized_apply_memory.py``). A stack of layers that
    ``lax.scan`` slices (``nn.scan`` over stacked params, as MaxText- or
    Gemma-style models are built) is dequantized one layer at a time inside the
    loop: each iteration slices the stacked leaf's integer values (and its
    per-layer scales) and dequantizes that layer next to its use. A weight read
    by ``while_loop`` or ``cond``, or by every iteration of a scan (a scan
    constant), is dequantized whole before that primitive. Eagerly (without
    ``jit``), every call traces ``apply_fn`` again; wrap the result in
    ``jax.jit`` for real use.

    Args:
      apply_fn: ``apply_fn(params, *args, **kwargs)``, e.g. a linen
        ``model.apply`` taking ``{"params": ...}`` or a plain function. Keyword
        and positional arguments that are not arrays (``train=False``, ``None``)
        are passed through as Python values.

    Returns:
      ``fn(params, *args, **kwargs)`` with ``apply_fn``'s result.

    Raises:
      TypeError: ``apply_fn`` is not callable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxzip as jz
      >>> params = {"w": jnp.array([[0.5, -1.0], [0.25, 2.0]])}
      >>> apply_fn = lambda p, x: x @ p["w"]
      >>> q = jz.quant.quantize_params(params, [("w", jz.quant.QuantSpec(bits=8))])
      >>> run = jax.jit(make_quantized_apply(apply_fn))
      >>> run(q, jnp.array([[1.0, 1.0]]))
      Array([[0.7559055, 0.992126 ]], dtype=float32)
    """
    if not callable(apply_fn):
        raise TypeError(f"make_quantized_apply: apply_fn must be callable, got {apply_fn!r}")

    def quantized_apply(params: Params, *args: Any, **kwargs: Any) -> Any:
        leaves, treedef = jax.tree.flatten(params, is_leaf=is_quantized)
        if not any(is_quantized(x) for x in leaves):
            return apply_fn(params, *args, **kwargs)
        avals = [jax.ShapeDtypeStruct(x.shape, x.dtype) if is_quantized(x) else x for x in leaves]
        rest, rest_def = jax.tree.flatten((args, kwargs))
        dyn = [i for i, x in enumerate(rest) if _is_dynamic(x)]

        def flat_fn(p_leaves: list[Any], dyn_leaves: list[Any]) -> Any:
            full = list(rest)
            for i, x in zip(dyn, dyn_leaves, strict=True):
                full[i] = x
            a, kw = jax.tree.unflatten(rest_def, full)
            return apply_fn(jax.tree.unflatten(treedef, p_leaves), *a, **kw)

        dyn_vals = [rest[i] for i in dyn]
        closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(avals, dyn_vals)
        in_vals = [_Lazy(x) if is_quantized(x) else x for x in leaves] + dyn_vals
        tainted = [False] * len(leaves) + [True] * len(dyn_vals)
        outs = _eval(closed.jaxpr, list(closed.consts), in_vals, tainted, _Anchor())
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return quantized_apply
