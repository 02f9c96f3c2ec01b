"""``intercept_matmuls``: run a model with a hook at every matmul that consumes a chosen kernel."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Params, Where
from jaxzip.layout._layout import KernelLayout
from jaxzip.layout._prov import Prov, leaf_prov
from jaxzip.layout._rows import MatmulCall, row_perm
from jaxzip.layout._trace import site_layout, trace_program
from jaxzip.layout._walk import Site, Walker
from jaxzip.paths import describe, leaves_with_paths, matches, raise_no_match

Hook = Callable[[str, Any, Any, Any, MatmulCall], tuple[Any, Any]]


def check_layouts(layouts: Any, params: Params) -> dict[str, tuple[int, Any]]:
    """Checks ``layouts`` against ``params``; returns ``{path: (leaf index, leaf)}`` for them."""
    if not isinstance(layouts, Mapping):
        raise TypeError(
            "layouts: expected the dict {path: KernelLayout} from trace_layouts, got "
            f"{type(layouts).__name__}"
        )
    index = {p: (i, leaf) for i, (p, leaf) in enumerate(leaves_with_paths(params))}
    for path, layout in layouts.items():
        if not isinstance(layout, KernelLayout):
            raise TypeError(f"layouts[{path!r}]: expected a KernelLayout, got {layout!r}")
        if path not in index:
            raise ValueError(
                f"layouts[{path!r}]: no leaf of params has this path; were the layouts traced "
                "with these params?"
            )
        layout.check(index[path][1], path)
    return index


def selected_kernels(
    layouts: Mapping[str, KernelLayout], params: Params, where: Where | None
) -> dict[int, str]:
    """``{leaf index: path}`` of the kernels that ``where`` selects (all of ``layouts`` if None).

    Raises ``ValueError`` naming a leaf that ``where`` selects but no matmul uses.
    """
    index = check_layouts(layouts, params)
    if where is None:
        if not layouts:
            raise ValueError(
                "layouts: empty, so there is no kernel to select (trace_layouts found no param "
                "leaf consumed by a matmul or conv)"
            )
        return {index[p][0]: p for p in layouts}
    chosen = [p for p, (_, leaf) in index.items() if matches(where, p, leaf)]
    if not chosen:
        raise_no_match(params, where)
    for p in chosen:
        if p not in layouts:
            raise ValueError(
                f"where={describe(where)} selects {p!r}, which no matmul or conv of apply_fn "
                f"consumes (it is not in layouts); expected only kernels, such as "
                f"{sorted(layouts)[:3]}; to keep only the kernels of a wider pattern use "
                "jaxzip.paths.all_of(pattern, jaxzip.layout.matmul_where(layouts))"
            )
    return {index[p][0]: p for p in chosen}


def select_kernels(
    layouts: Mapping[str, KernelLayout], params: Params, where: Where | None = None
) -> list[str]:
    """The paths of the kernels that ``where`` selects, in traced order (``layouts``' order).

    ``where=None`` selects every kernel of ``layouts``. Each layout is checked
    against its leaf of ``params``.

    Raises:
      TypeError: ``layouts`` is not a mapping of :class:`KernelLayout`.
      ValueError: ``layouts`` is empty (with ``where=None``); ``where`` selects
        nothing, or a leaf that no matmul consumes (named by path); a layout
        does not match its leaf's shape.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.layout import trace_layouts
      >>> params = {"b": jnp.zeros(2), "w": jnp.ones((3, 2))}
      >>> f = lambda p, x: x @ p["w"] + p["b"]
      >>> select_kernels(trace_layouts(f, params, jnp.ones((1, 3))), params)
      ['w']
    """
    chosen = set(selected_kernels(layouts, params, where).values())
    return [p for p in layouts if p in chosen]


def intercept_matmuls(
    apply_fn: Callable[..., Any],
    layouts: Mapping[str, KernelLayout],
    hook: Hook,
    *,
    where: Where | None = None,
    combine: Callable[[Any, Any], Any] | None = None,
    layers: bool = False,
    rolled: bool = False,
) -> Callable[..., tuple[Any, dict[str, Any]]]:
    """Wraps ``apply_fn`` so that a hook sees (and may replace) every matmul on a selected kernel.

    The returned ``fn(params, *args, **kwargs) -> (out, aux)`` traces
    ``apply_fn(params, *args, **kwargs)`` to a jaxpr (once per call, so once per
    compilation under ``jax.jit``) and evaluates it equation by equation, walking
    into nested ``jit``/``remat``/``custom_jvp``/``custom_vjp`` calls that a
    selected kernel flows into. At each ``dot_general`` or conv whose kernel
    operand is a selected leaf it calls::

        y, value = hook(path, x, x_rows, w, compute)

    * ``x``: the activation operand, as the equation consumes it;
    * ``x_rows``: ``x`` as ``(rows, n_in)`` in :func:`to_matrix` row order (for a
      conv, the im2col patches, one row per output position);
    * ``w``: the kernel as the equation consumes it (``compute.w_layout``);
    * ``compute``: a :class:`MatmulCall`; ``compute(x, w)`` runs the original
      equation (on a modified ``x`` of the same shape, or a modified ``w``),
      ``compute(x_rows, w, rows=True)`` the same product from rows.

    ``y`` replaces the equation's result (same shape and dtype) and
    ``aux[path] = value``. With ``hook = lambda path, x, xr, w, c: (c(x, w), None)``
    the outputs are bit-identical to ``apply_fn``'s under ``jax.jit`` (a scan
    unrolled by ``layers=True`` agrees up to float rounding).

    A kernel consumed by several equations (the same layer applied twice, tied
    weights) calls the hook at each, in program order; their values are folded
    with ``combine(previous, new)``, and without ``combine`` that is an error.
    A stack of layers (a kernel whose layout has a ``layer_axis``: params
    stacked by ``nn.scan`` or sliced by ``jax.lax.scan``) is hooked with
    ``layers=True``: the scan is then evaluated one layer at a time, the hook
    sees each layer's slice ``w`` and that layer's activations, and
    ``aux[path]`` stacks the layers' values along a new leading axis (layer
    ``i`` at index ``i``). Otherwise the hook cannot run inside ``scan``/
    ``while_loop``/``cond``/``shard_map`` bodies: a selected kernel used there
    is an error; unselected kernels there are evaluated as usual.

    Args:
      apply_fn: the model, called as ``apply_fn(params, *args, **kwargs)``.
      layouts: from :func:`trace_layouts`.
      hook: ``(path, x, x_rows, w, compute) -> (y, value)``.
      where: selects among the kernels (default: all of ``layouts``); selecting
        a leaf that is not a kernel is an error.
      combine: folds the values of a kernel used more than once.
      layers: hook each layer of a layer stack (unrolling its scan under the
        returned function's trace: compile time grows with the number of layers).
      rolled: with ``layers``, keep each layer stack's scan one ``lax.scan``
        instead, its body (and the hook) traced once: compile time no longer
        grows with the number of layers. The hook then gets the layer as a
        traced index (``compute.layer``: index per-layer data with it, e.g.
        ``jnp.asarray(scales)[compute.layer]``, never as a Python int); a kernel
        the scan does not slice but uses in every layer has its values folded
        with ``combine`` over the layers, as when unrolled.

    Returns:
      ``fn(params, *args, **kwargs) -> (out, {path: value})``, jittable. Array
      arguments are traced inputs; other arguments (``train=False``) are static.

    Raises:
      ValueError: (when ``fn`` runs) a selected kernel is not used by any
        matmul, is used inside a loop, with another layout than ``layouts``
        says, more than once without ``combine``; the hook returns a wrong shape.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.layout import trace_layouts
      >>> params = {"w": jnp.arange(6.0).reshape(3, 2)}
      >>> f = lambda p, x: x @ p["w"]
      >>> x = jnp.ones((4, 3))
      >>> lay = trace_layouts(f, params, x)
      >>> hook = lambda path, x, xr, w, compute: (compute(x, w), xr.sum(axis=0))
      >>> out, aux = jax.jit(intercept_matmuls(f, lay, hook))(params, x)
      >>> aux["w"], bool((out == jax.jit(f)(params, x)).all())
      (Array([4., 4., 4.], dtype=float32), True)

      A stack of three layers, kept one scan: the hook sees each layer's (traced) index.

      >>> g = lambda p, x: jax.lax.scan(lambda h, w: (h @ w, None), x, p["ws"])[0]
      >>> stack = {"ws": jnp.stack([jnp.eye(3)] * 3)}
      >>> lay = trace_layouts(g, stack, x)
      >>> hook = lambda path, x, xr, w, compute: (compute(x, w), compute.layer)
      >>> intercept_matmuls(g, lay, hook, layers=True, rolled=True)(stack, x)[1]["ws"]
      Array([0, 1, 2], dtype=int32)
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable, got {type(apply_fn).__name__}")
    if not callable(hook):
        raise TypeError(f"hook: expected a callable, got {type(hook).__name__}")
    if combine is not None and not callable(combine):
        raise TypeError(f"combine: expected a callable or None, got {combine!r}")
    if not isinstance(layers, bool):
        raise TypeError(f"layers: expected a bool, got {layers!r}")
    if not isinstance(rolled, bool):
        raise TypeError(f"rolled: expected a bool, got {rolled!r}")

    def fn(params: Params, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        chosen = selected_kernels(layouts, params, where)
        leaves = jax.tree.leaves(params)
        closed, out_shape, dyn = trace_program(apply_fn, params, args, kwargs)
        aux: dict[str, Any] = {}
        layered: dict[str, dict[int, Any]] = {}  # a layer stack's values, by layer
        used: set[str] = set()

        def fold(slot: dict[Any, Any], key: Any, path: str, value: Any) -> None:
            if key in slot:
                if combine is None:
                    raise ValueError(
                        f"{path!r} is used by more than one matmul; pass combine= to fold "
                        "the hook's values"
                    )
                slot[key] = combine(slot[key], value)
            else:
                slot[key] = value

        def keep(path: str, site: Site, value: Any) -> None:
            """Stores (or folds) the hook's value: per layer for a layer of a stack."""
            if site.layer and (len(site.layer) > 1 or layouts[path].layer_axis is None):
                raise ValueError(
                    f"{path!r} is a stack of layers inside another scan (params stacked "
                    "twice); intercept_matmuls hooks one level of layer stacks"
                )
            if walker.frame is not None:  # inside a rolled stack: the scan stacks it per layer
                fold(walker.frame, (path, bool(site.layer)), path, value)
            elif site.layer:
                fold(layered.setdefault(path, {}), site.layer[0], path, value)
            else:
                fold(aux, path, path, value)
            used.add(path)

        def on_frame(frame: dict[Any, Any], length: int) -> None:
            """A rolled stack's values: a stacked kernel's as the scan stacked them; a
            kernel the scan does not slice, used in its body, folded over the layers."""
            for (path, stacked), value in frame.items():
                if stacked:
                    aux[path] = value
                    continue
                for i in range(length):
                    fold(aux, path, path, jax.tree.map(lambda a, i=i: a[i], value))

        def on_loop_site(site: Site) -> None:
            if site.leaf not in chosen:
                return
            stack = (  # a layer stack under nn.scan / lax.scan: say what does work on it
                " It is a stack of layers scanned over its first axis (nn.scan): "
                "layers=True hooks each layer (GPTQ, SparseGPT, Wanda, AWQ, SmoothQuant, W8A8 "
                "and collect_stats calibrate layer stacks so); elsewhere leave it out with "
                "where=, round it to nearest with jaxzip.quant.layout_spec (one scale per "
                "layer and output), or build the model with a Python loop over its layers"
                if site.stacked and site.context == "scan" and not layers
                else " Unroll the loop, or leave the kernel out with where="
            )
            raise ValueError(
                f"{chosen[site.leaf]!r} is used by a {site.op} inside a {site.context} "
                "body; intercept_matmuls cannot hook inside scan/while_loop/cond/"
                f"shard_map.{stack}"
            )

        def on_site(site: Site, eqn: Any, invals: list[Any], prov: Prov) -> list[Any] | None:
            if site.leaf not in chosen:
                return None
            path = chosen[site.leaf]
            if site.unsupported:
                raise ValueError(
                    f"{path!r}: intercept_matmuls cannot hook it: {site.unsupported}; leave it "
                    "out with where="
                )
            other = invals[1 - site.side]
            layout = layouts[path]
            found = site_layout(site, layout.shape, path)
            if found != layout:
                raise ValueError(
                    f"{path!r}: apply_fn contracts axes {found.in_axes} but layouts says "
                    f"{layout.in_axes}; re-run trace_layouts for this apply_fn"
                )
            w = invals[site.side]
            w_layout = _consumed_layout(eqn, site, np.shape(w))
            perm = row_perm(prov, layout, w_layout, path)
            layer = site.layer[0] if site.layer else None
            call = MatmulCall(
                eqn=eqn, side=site.side, layout=layout, w_layout=w_layout, perm=perm, layer=layer
            )
            result = hook(path, other, call.rows_of(other), w, call)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise TypeError(f"hook at {path!r}: expected a tuple (y, value), got {result!r}")
            y, value = result
            dtype = getattr(y, "dtype", None)
            if tuple(np.shape(y)) != call.y_shape or dtype != call.y_dtype:
                raise ValueError(
                    f"hook at {path!r}: expected y of shape {call.y_shape} and dtype "
                    f"{call.y_dtype}, got {type(y).__name__} of shape {np.shape(y)}, dtype {dtype}"
                )
            keep(path, site, value)
            return [y]

        provs = [leaf_prov(i, np.ndim(v)) if i in chosen else None for i, v in enumerate(leaves)]
        walker = Walker(
            evaluate=True,
            on_site=on_site,
            on_loop_site=on_loop_site,
            unroll=layers,
            roll=rolled,
            on_frame=on_frame,
        )
        taints = [False] * len(leaves) + [True] * len(dyn)
        outs, _, _ = walker.walk(
            closed.jaxpr, closed.consts, [*leaves, *dyn], [*provs, *([None] * len(dyn))], taints
        )
        for path, by_layer in layered.items():
            values = [by_layer[i] for i in range(len(by_layer))]
            aux[path] = jax.tree.map(lambda *v: jnp.stack(v), *values)
        for path in chosen.values():
            if path not in used:
                raise ValueError(
                    f"{path!r} is selected but no matmul or conv of apply_fn uses it for these "
                    f"inputs (layouts say it is a kernel of shape {layouts[path].shape})"
                )
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs), aux

    return fn


def _consumed_layout(eqn: Any, site: Site, shape: tuple[int, ...]) -> KernelLayout:
    if site.op == "conv":
        contracted = [int(a) for a in eqn.params["dimension_numbers"].rhs_spec[1:]]
    else:
        (lc, rc), _ = eqn.params["dimension_numbers"]
        contracted = [int(a) for a in (lc, rc)[site.side]]
    ins = tuple(sorted(contracted))
    outs = tuple(a for a in range(len(shape)) if a not in ins)
    return KernelLayout(shape=tuple(shape), in_axes=ins, out_axes=outs, op=site.op)
