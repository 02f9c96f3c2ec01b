"""A jaxpr interpreter that follows param leaves to the matmuls and convs that consume them.

One walker serves both :func:`trace_layouts` (``evaluate=False``: only the
provenance of values is tracked) and :func:`intercept_matmuls`
(``evaluate=True``: every equation is also evaluated, and a callback may
replace the result of a matmul that consumes a param leaf).

What it sees through: call-like equations with one sub-jaxpr of the same
signature (``jit``/pjit, ``closed_call``, ``remat``, ``custom_jvp_call``,
``custom_vjp_call``, ...) are walked inline; the layout-preserving ops of
:mod:`._prov` carry provenance; ``scan``/``while``/``cond`` bodies are walked for
provenance only, and so are ``shard_map`` bodies (per-shard shapes, same axes)
(``Site.context`` names the construct); any other equation ends the provenance
of its outputs. With ``unroll``, a ``scan`` that slices a tracked leaf into
layers (its ``xs``) is instead evaluated one iteration at a time, so the
callbacks see each layer's matmuls (``Site.layer`` says which slice). With
``roll`` as well, such a scan stays one ``lax.scan`` whose body is walked once,
under the scan's trace: ``Site.layer`` then holds the traced layer index, and
whatever the callbacks put in :attr:`Walker.frame` while the body is walked
leaves the scan stacked over the layers (:attr:`Walker.on_frame`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from jaxzip.layout._prov import Prov, propagate

_LOOPS = frozenset({"scan", "while", "cond", "shard_map"})
DOT = "dot_general"
CONV = "conv_general_dilated"
BATCHED = "it is a dot_general batch operand (a batched matmul)"


class Site(NamedTuple):
    """One equation that consumes a param leaf as its kernel operand."""

    leaf: int
    side: int  # which operand of the equation is the kernel
    in_axes: frozenset[int]  # original leaf axes contracted with the activation
    out_axes: frozenset[int]  # original leaf axes seen in the other kernel axes
    op: str  # "dot_general" or "conv"
    context: str | None  # "scan" / "while" / "cond" / "shard_map" when inside one, else None
    stacked: frozenset[int]  # the leaf axes a scan sliced away (a stack of layers), if any
    unsupported: str | None  # why the hooks cannot handle it (batch dims, groups)
    layer: tuple[int, ...] = ()  # which slices, when the scan is unrolled (outermost first)


def bind(eqn: Any, invals: Sequence[Any]) -> list[Any]:
    """Evaluates one equation on ``invals``, exactly as ``jax.core.eval_jaxpr`` does."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(params, tuple):  # JAX before 0.7 returned (subfuns, params)
        subfuns, params = params
    manager = getattr(getattr(eqn, "ctx", None), "manager", None)
    if manager is not None:
        with manager:
            out = eqn.primitive.bind(*subfuns, *invals, **params)
    else:
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _as_jaxpr(value: Any) -> tuple[Any, Sequence[Any]] | None:
    if isinstance(value, jcore.ClosedJaxpr):
        return value.jaxpr, value.consts
    if isinstance(value, jcore.Jaxpr) and not value.constvars:
        return value, ()
    return None


def call_body(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """The sub-jaxpr of a call-like equation (same inputs and outputs), or None."""
    if eqn.primitive.name in _LOOPS:
        return None
    found = [j for v in eqn.params.values() if (j := _as_jaxpr(v)) is not None]
    if len(found) != 1:
        return None
    jaxpr, consts = found[0]
    if len(jaxpr.invars) != len(eqn.invars) or len(jaxpr.outvars) != len(eqn.outvars):
        return None
    for inner, outer in zip(jaxpr.invars, eqn.invars, strict=True):
        if getattr(inner.aval, "shape", None) != getattr(outer.aval, "shape", None):
            return None
    return jaxpr, consts


def _union(sets: Any) -> frozenset[int]:
    return frozenset().union(*sets)


def _site(eqn: Any, side: int, p: Prov, context: str | None) -> Site | None:
    name = eqn.primitive.name
    ndim = len(p.axes)
    unsupported = None
    if name == DOT:
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        contracted, batch = ((lc, lb), (rc, rb))[side]
        contracted = tuple(int(a) for a in contracted)
        if batch:
            unsupported = BATCHED
        op = "dot_general"
    else:
        if side != 1:
            return None  # a param as the image of a conv is not a kernel
        spec = eqn.params["dimension_numbers"].rhs_spec
        contracted = tuple(int(a) for a in spec[1:])
        if eqn.params["feature_group_count"] != 1 or eqn.params["batch_group_count"] != 1:
            unsupported = (
                "it is a grouped or depthwise convolution (feature_group_count or "
                "batch_group_count > 1), whose rows differ per group"
            )
        op = "conv"
    ins = _union(p.axes[a] for a in contracted)
    outs = _union(p.axes[a] for a in range(ndim) if a not in contracted) | p.stacked
    if not ins:
        return None
    return Site(p.leaf, side, ins, outs, op, context, p.stacked, unsupported, p.layer)


class Walker:
    """Walks a jaxpr, tracking param provenance; see the module docstring.

    Args:
      evaluate: also compute values (else values are None throughout).
      on_site: ``(site, eqn, invals, prov) -> outvals | None``, called in
        evaluate mode at every consuming equation outside loops (``prov``: the
        kernel operand's provenance); None means "evaluate as is".
      on_loop_site: ``(site) -> None``, called for every consuming equation
        found inside a ``scan``/``while``/``cond`` body.
      unroll: (evaluate mode) evaluate a ``scan`` whose ``xs`` carry a tracked
        leaf (a stack of layers) one iteration at a time, walking its body with
        each layer's slice, instead of binding it whole.
      roll: with ``unroll``, keep such a scan one ``lax.scan`` over the layer
        index instead (compile time independent of the number of layers); its
        body is walked once, with a traced ``Site.layer``.
      on_frame: with ``roll``, called after such a scan as ``on_frame(frame,
        length)``: :attr:`frame`, the dict the callbacks filled while its body
        was walked, each value stacked over the ``length`` layers (layer ``i``
        at index ``i``).

    Attributes:
      frame: while the body of a rolled scan is walked, a dict in which the
        callbacks leave per-layer values (they leave the scan as its outputs);
        None elsewhere.
    """

    def __init__(
        self,
        *,
        evaluate: bool,
        on_site: Callable[[Site, Any, list[Any], Prov], list[Any] | None] | None = None,
        on_loop_site: Callable[[Site], None] | None = None,
        unroll: bool = False,
        roll: bool = False,
        on_frame: Callable[[dict[Any, Any], int], None] | None = None,
    ) -> None:
        self.evaluate = evaluate
        self.unroll = unroll and evaluate
        self.roll = roll
        self.on_frame = on_frame
        self.frame: dict[Any, Any] | None = None
        self.on_site = on_site
        self.on_loop_site = on_loop_site
        self.sites: list[Site] = []
        self._context: str | None = None

    def walk(
        self,
        jaxpr: Any,
        consts: Sequence[Any],
        args: Sequence[Any],
        provs: Sequence[Any],
        taints: Sequence[bool] | None = None,
    ) -> tuple[list[Any], list[Prov | None], list[bool]]:
        """Walks ``jaxpr``; ``taints[i]``: input ``i`` depends on the model's inputs.

        Returns the output values (None when not evaluating), provenances and taints.
        """
        vals: dict[Any, Any] = {}
        prov: dict[Any, Prov | None] = {}
        taint: dict[Any, bool] = {}
        taints = [False] * len(args) if taints is None else taints
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            vals[v] = c
        for v, a, p, t in zip(jaxpr.invars, args, provs, taints, strict=True):
            vals[v] = a
            prov[v] = p
            taint[v] = bool(t)

        def read(v: Any) -> Any:
            return v.val if isinstance(v, jcore.Literal) else vals.get(v)

        def read_prov(v: Any) -> Prov | None:
            return None if isinstance(v, jcore.Literal) else prov.get(v)

        def read_taint(v: Any) -> bool:
            return False if isinstance(v, jcore.Literal) else taint.get(v, False)

        for eqn in jaxpr.eqns:
            inprov = [read_prov(v) for v in eqn.invars]
            intaint = [read_taint(v) for v in eqn.invars]
            invals = [read(v) for v in eqn.invars] if self.evaluate else []
            outs, outprov, outtaint = self._eqn(eqn, inprov, intaint, invals)
            for v, o, p, t in zip(eqn.outvars, outs, outprov, outtaint, strict=True):
                if isinstance(v, jcore.DropVar):
                    continue
                vals[v] = o
                prov[v] = p
                taint[v] = t
        outvars = jaxpr.outvars
        return (
            [read(v) for v in outvars],
            [read_prov(v) for v in outvars],
            [read_taint(v) for v in outvars],
        )

    def _eval(self, eqn: Any, invals: list[Any]) -> list[Any]:
        return bind(eqn, invals) if self.evaluate else [None] * len(eqn.outvars)

    def _eqn(
        self, eqn: Any, inprov: list[Prov | None], intaint: list[bool], invals: list[Any]
    ) -> tuple[list[Any], list[Prov | None], list[bool]]:
        none = [None] * len(eqn.outvars)
        tainted = [any(intaint)] * len(eqn.outvars)
        if all(p is None for p in inprov):
            return self._eval(eqn, invals), none, tainted
        name = eqn.primitive.name
        if name in (DOT, CONV):
            return self._consume(eqn, inprov, invals), none, tainted
        moved = propagate(eqn, inprov, intaint)
        if moved is not None:
            return self._eval(eqn, invals), moved, tainted
        if name == "scan" and self.unroll and self._context is None and _slices(eqn, inprov):
            if self.roll and self.frame is None:
                return self._rolled(eqn, inprov, intaint, invals), none, tainted
            return self._unrolled(eqn, inprov, intaint, invals), none, tainted
        if name in _LOOPS:
            self._loop(eqn, inprov, any(intaint))
            return self._eval(eqn, invals), none, tainted
        body = call_body(eqn)
        if body is not None:
            jaxpr, consts = body
            args = invals or none_like(eqn.invars)
            return self.walk(jaxpr, consts, args, inprov, intaint)
        return self._eval(eqn, invals), none, tainted

    def _consume(self, eqn: Any, inprov: list[Prov | None], invals: list[Any]) -> list[Any]:
        sites = []
        for side in (0, 1):
            p = inprov[side]
            if p is not None and (s := _site(eqn, side, p, self._context)) is not None:
                sites.append((s, p))
        self.sites.extend(s for s, _ in sites)
        if self._context is not None and self.on_loop_site is not None:
            for s, _ in sites:
                self.on_loop_site(s)
        if self.evaluate and self.on_site is not None:
            outs = [o for s, p in sites if (o := self.on_site(s, eqn, invals, p)) is not None]
            if len(outs) > 1:
                raise ValueError(
                    f"a {sites[0][0].op} multiplies two selected kernels with each other; "
                    "select at most one of its operands with where="
                )
            if outs:
                return outs[0]
        return self._eval(eqn, invals)

    def _layer(
        self, eqn: Any, inprov: list[Prov | None], intaint: list[bool], args: list[Any], i: Any
    ) -> tuple[list[Any], list[Any]]:
        """Walks a scan's body on one layer's operands (``i``: its index, maybe traced);
        returns the carry and the layer's outputs."""
        p = eqn.params
        nc, ncarry, body = p["num_consts"], p["num_carry"], p["jaxpr"]
        taints = [*intaint[:nc], *([any(intaint)] * ncarry), *intaint[nc + ncarry :]]
        sliced = [*inprov[:nc], *([None] * ncarry), *(_index(q, i) for q in inprov[nc + ncarry :])]
        outs, _, _ = self.walk(body.jaxpr, body.consts, args, sliced, taints)
        return outs[:ncarry], outs[ncarry:]

    def _unrolled(
        self, eqn: Any, inprov: list[Prov | None], intaint: list[bool], invals: list[Any]
    ) -> list[Any]:
        """Evaluates a ``scan`` one iteration at a time, walking its body on each slice."""
        p, consts, carry, xs = _scan_operands(eqn, invals)
        ys = []
        for i in range(p["length"] - 1, -1, -1) if p["reverse"] else range(p["length"]):
            carry, y = self._layer(eqn, inprov, intaint, [*consts, *carry, *(x[i] for x in xs)], i)
            ys.append(y)
        if p["reverse"]:
            ys.reverse()
        stacked = [
            jnp.stack([y[k] for y in ys]) if ys else jnp.zeros(v.aval.shape, v.aval.dtype)
            for k, v in enumerate(eqn.outvars[p["num_carry"] :])
        ]
        return [*carry, *stacked]

    def _rolled(
        self, eqn: Any, inprov: list[Prov | None], intaint: list[bool], invals: list[Any]
    ) -> list[Any]:
        """Evaluates a ``scan`` as one ``lax.scan`` whose body is walked with a traced layer."""
        p, consts, carry, xs = _scan_operands(eqn, invals)
        length = p["length"]

        def step(c: list[Any], x: tuple[Any, list[Any]]) -> tuple[list[Any], Any]:
            i, xi = x
            self.frame = {}
            try:
                c, y = self._layer(eqn, inprov, intaint, [*consts, *c, *xi], i)
                frame = self.frame
            finally:
                self.frame = None
            return c, (y, frame)

        order = {"reverse": p["reverse"], "unroll": p["unroll"]}  # as the model's scan
        carry, (ys, frame) = jax.lax.scan(
            step, list(carry), (jnp.arange(length), list(xs)), **order
        )
        if self.on_frame is not None:
            self.on_frame(frame, length)
        return [*carry, *ys]

    def _loop(self, eqn: Any, inprov: list[Prov | None], tainted: bool) -> None:
        """Walks a loop's, cond's or shard_map's bodies for provenance only (no values).

        Every body input without provenance counts as depending on the model's
        inputs when any operand of ``eqn`` does (conservative).
        """
        sub = Walker(evaluate=False, on_loop_site=self.on_loop_site)
        sub._context = eqn.primitive.name
        p = eqn.params

        def run(closed: Any, provs: list[Prov | None]) -> None:
            taints = [q is None and tainted for q in provs]
            sub.walk(closed.jaxpr, closed.consts, none_like(provs), provs, taints)

        if eqn.primitive.name == "scan":
            nc, ncarry = p["num_consts"], p["num_carry"]
            xs = [_unstack(q) for q in inprov[nc + ncarry :]]
            run(p["jaxpr"], [*inprov[:nc], *([None] * ncarry), *xs])
        elif eqn.primitive.name == "while":
            cn, bn = p["cond_nconsts"], p["body_nconsts"]
            ncarry = len(inprov) - cn - bn
            run(p["body_jaxpr"], [*inprov[cn : cn + bn], *([None] * ncarry)])
            run(p["cond_jaxpr"], [*inprov[:cn], *([None] * ncarry)])
        elif eqn.primitive.name == "shard_map":
            body = p["jaxpr"]
            if not isinstance(body, jcore.ClosedJaxpr):
                if body.constvars:
                    return
                body = jcore.ClosedJaxpr(body, ())
            run(body, list(inprov))
        else:  # cond
            for branch in p["branches"]:
                run(branch, list(inprov[1:]))
        self.sites.extend(sub.sites)


def _scan_operands(eqn: Any, invals: list[Any]) -> tuple[Any, list[Any], list[Any], list[Any]]:
    """A ``scan`` equation's params and its operands: consts, carry and ``xs`` (sliced)."""
    p = eqn.params
    nc, ncarry = p["num_consts"], p["num_carry"]
    return p, invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]


def none_like(xs: Sequence[Any]) -> list[None]:
    return [None] * len(xs)


def _slices(eqn: Any, inprov: list[Prov | None]) -> bool:
    """Whether a ``scan`` slices a tracked leaf (one of its ``xs`` has provenance)."""
    start = eqn.params["num_consts"] + eqn.params["num_carry"]
    return any(q is not None and q.axes for q in inprov[start:])


def _index(p: Prov | None, i: Any) -> Prov | None:
    """The provenance of slice ``i`` of a tracked value (``value[i]``), remembering ``i``.

    ``i`` may be traced (a rolled scan): the chain, which carries NumPy index arrays
    to the consumed layout, takes slice 0 then (every slice has the same layout).
    """
    if p is None or not p.axes:
        return None
    k = i if isinstance(i, int) else 0
    return Prov(
        p.leaf, p.axes[1:], (*p.chain, lambda a: a[k]), p.stacked | p.axes[0], (*p.layer, i)
    )


def _unstack(p: Prov | None) -> Prov | None:
    if p is None or not p.axes:
        return None
    return Prov(p.leaf, p.axes[1:], (*p.chain, lambda a: a[0]), p.stacked | p.axes[0])
