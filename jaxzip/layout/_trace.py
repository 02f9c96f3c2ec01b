"""``trace_layouts``: the layout of every kernel, read off the model's own jaxpr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxzip._types import Params
from jaxzip.layout._layout import KernelLayout
from jaxzip.layout._prov import leaf_prov
from jaxzip.layout._walk import BATCHED, Site, Walker
from jaxzip.paths import leaf_paths


def split_args(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
    """Array leaves of ``tree`` (traced inputs) and a function rebuilding it from new ones.

    Arrays and ``jax.ShapeDtypeStruct`` leaves are inputs; other leaves (Python
    scalars, strings, None) stay static.
    """
    leaves, treedef = jax.tree.flatten(tree)
    arrays = (jax.Array, np.ndarray, jax.ShapeDtypeStruct)
    dynamic = [i for i, x in enumerate(leaves) if isinstance(x, arrays)]

    def rebuild(values: list[Any]) -> Any:
        new = list(leaves)
        for i, v in zip(dynamic, values, strict=True):
            new[i] = v
        return jax.tree.unflatten(treedef, new)

    return [leaves[i] for i in dynamic], rebuild


def trace_program(
    apply_fn: Callable[..., Any], params: Params, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, Any, list[Any]]:
    """Traces ``apply_fn(params, *args, **kwargs)``.

    Returns the closed jaxpr (inputs: the param leaves, then the array leaves
    of ``args``/``kwargs``), the output shapes, and those array leaves.
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable, got {type(apply_fn).__name__}")
    if not jax.tree.leaves(params):
        raise ValueError("params: the tree has no leaves; expected the model's parameters")
    dyn, rebuild = split_args((args, kwargs))

    def run(p: Params, d: list[Any]) -> Any:
        a, kw = rebuild(d)
        return apply_fn(p, *a, **kw)

    closed, out_shape = jax.make_jaxpr(run, return_shape=True)(params, dyn)
    return closed, out_shape, dyn


def walk_sites(closed: Any, params: Params, n_inputs: int) -> list[Site]:
    """Every equation of ``closed`` that consumes a param leaf (``n_inputs`` model inputs follow)."""
    leaves = jax.tree.leaves(params)
    provs = [leaf_prov(i, np.ndim(leaf)) for i, leaf in enumerate(leaves)]
    walker = Walker(evaluate=False)
    n = len(provs) + n_inputs
    taints = [False] * len(provs) + [True] * n_inputs
    walker.walk(closed.jaxpr, closed.consts, [None] * n, [*provs, *([None] * n_inputs)], taints)
    return walker.sites


def site_layout(site: Site, shape: tuple[int, ...], path: str) -> KernelLayout:
    """The :class:`KernelLayout` of the leaf at ``path`` implied by one consuming equation."""
    both = site.in_axes & site.out_axes
    if both:
        raise ValueError(
            f"{path!r} (shape {shape}): axes {sorted(both)} are both contracted and not "
            f"contracted in one {site.op} (the kernel was reshaped so that an axis is split "
            "between input and output); jaxzip cannot give it a layout"
        )
    ins = tuple(sorted(site.in_axes))
    outs = tuple(a for a in range(len(shape)) if a not in site.in_axes)
    layer = next(iter(site.stacked)) if len(site.stacked) == 1 else None
    return KernelLayout(
        shape=tuple(shape), in_axes=ins, out_axes=outs, op=site.op, layer_axis=layer
    )


def layouts_from_sites(sites: list[Site], params: Params) -> dict[str, KernelLayout]:
    """Groups consuming equations by leaf and checks that every use agrees on the layout."""
    paths = leaf_paths(params)
    shapes = [tuple(np.shape(leaf)) for leaf in jax.tree.leaves(params)]
    layouts: dict[str, KernelLayout] = {}
    for site in sites:
        path, shape = paths[site.leaf], shapes[site.leaf]
        if site.unsupported == BATCHED:
            continue  # a batched operand is not a matmul kernel (documented rule)
        layout = site_layout(site, shape, path)
        seen = layouts.get(path)
        if seen is None:
            layouts[path] = layout
        elif seen != layout:
            raise ValueError(
                f"{path!r} (shape {shape}) is used by several matmuls with different layouts: "
                f"in_axes {seen.in_axes} ({seen.op}) and in_axes {layout.in_axes} "
                f"({layout.op}); jaxzip needs one layout per kernel"
            )
    return layouts


def trace_layouts(
    apply_fn: Callable[..., Any], params: Params, *args: Any, **kwargs: Any
) -> dict[str, KernelLayout]:
    """Traces ``apply_fn(params, *args, **kwargs)`` once and returns each kernel's layout.

    A *kernel* is a param leaf consumed by a ``dot_general`` (``x @ w``,
    ``jnp.einsum``, ``jnp.dot``, Flax ``Dense``/``DenseGeneral``/attention) or a
    ``conv_general_dilated`` (its ``rhs``). Between the leaf and the matmul the
    trace sees through nested ``jit``/``closed_call``/``remat``/``custom_jvp``/
    ``custom_vjp`` calls and through ops that only move entries: dtype casts,
    reshapes that split or merge axes, transposes, squeezes, size-1
    ``expand_dims``, reversals and copies, and elementwise ops that keep the
    kernel's shape and do not involve the model's inputs (``w * c`` for a
    constant ``c``, fake quantization ``round(w / s) * s``, ``w + a @ b``). Kernels used inside ``scan``/
    ``while_loop``/``cond`` bodies (as loop constants) are traced too, and so are
    kernels stacked along a layer axis that a ``scan`` slices (``nn.scan``,
    ``jax.lax.scan`` over stacked params): the layer axis is an *output* axis
    (each layer's slice has its own output channels), so per-channel scales
    and N:M groups stay per layer, and the layout names it (``layer_axis``).
    (Calibration hooks each layer of such a stack, see ``layers`` in
    :func:`intercept_matmuls`; kernels used inside other loops cannot be hooked.)

    Rules:

    * leaves not consumed by a matmul (embeddings read by a gather, biases,
      norm scales) are absent, as are leaves used only as a ``dot_general``
      *batch* operand (a batched matmul over the leaf's axes), and leaves that
      reach a matmul only through other ops (slices ``w[:, :k]``, concatenation,
      broadcasting, a mix of two kernels ``w1 + w2``, an op with an activation
      ``w * x_mask``: so ``x + bias`` never makes a bias a kernel);
    * a matmul of two params (``a @ b``) records each as the other's kernel;
    * a leaf used by several matmuls must have one layout in all of them;
    * original size-1 axes that the trace loses (squeezed away) count as output
      axes.

    Args:
      apply_fn: the model function, called as ``apply_fn(params, *args, **kwargs)``
        (a Flax ``model.apply`` with ``params`` being the variables, or any
        function over a params pytree; nnx: ``lambda s, x: nnx.merge(g, s)(x)``).
      params: the params pytree; its leaves' ``/``-joined paths key the result.
      *args: example inputs (their shapes matter, not their values; a
        ``jax.ShapeDtypeStruct`` will do, as will abstract params from
        ``jax.eval_shape(model.init, ...)``).
      **kwargs: more example keyword arguments.

    Returns:
      ``{path: KernelLayout}`` for every kernel, ordered by first use in the program.

    Raises:
      ValueError: a leaf has different layouts in different matmuls, or an
        axis is split between input and output (each message names the path).
      TypeError: ``apply_fn`` is not callable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> params = {"w": jnp.ones((4, 3)), "emb": jnp.ones((10, 4)), "b": jnp.ones(3)}
      >>> def f(p, ids):
      ...     x = p["emb"][ids]
      ...     return jnp.einsum("ti,io->to", x, p["w"]) + p["b"]
      >>> lay = trace_layouts(f, params, jnp.zeros(5, jnp.int32))
      >>> list(lay), lay["w"].in_axes, lay["w"].out_axes
      (['w'], (0,), (1,))
    """
    closed, _, inputs = trace_program(apply_fn, params, args, kwargs)
    return layouts_from_sites(walk_sites(closed, params, len(inputs)), params)
