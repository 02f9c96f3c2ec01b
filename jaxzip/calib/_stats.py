"""Per-kernel activation statistics, streamed over calibration batches."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxzip._types import Params, Where
from jaxzip.calib._batches import check_global, mesh_of, replicated, signature, spans_processes
from jaxzip.layout import KernelLayout, intercept_matmuls, select_kernels


class KernelStats(NamedTuple):
    """Statistics of the activation rows one kernel saw, in :func:`jaxzip.layout.to_matrix` row order.

    A *row* is one activation vector multiplied by the kernel: one token for a
    Dense or attention projection, one output position's im2col patch for a
    conv; its ``n_in`` entries follow the rows of ``to_matrix(kernel, layout)``.
    All float32.

    Attributes:
      count: the number of rows seen (a scalar).
      xtx: ``(n_in, n_in)``, the sum over rows of ``x xᵀ`` (``XᵀX``; the GPTQ /
        SparseGPT Hessian is ``2 XᵀX / count``). ``(0, 0)`` when collected with
        ``hessian=False``.
      sq_sum: ``(n_in,)``, the sum over rows of ``x²`` (Wanda's input norm is
        ``sqrt(sq_sum)``).
      absmax: ``(n_in,)``, the largest ``|x|`` per input (SmoothQuant, W8A8
        ranges).
      abs_sum: ``(n_in,)``, the sum over rows of ``|x|`` (AWQ's mean input
        magnitude is ``abs_sum / count``).

    A stack of layers (a kernel whose layout has a ``layer_axis``, e.g. under
    ``nn.scan``) has one set of statistics per layer, stacked along a leading
    axis: ``count`` of shape ``(layers,)``, ``xtx`` of ``(layers, n_in, n_in)``,
    layer ``i`` at index ``i``.
    """

    count: jax.Array
    xtx: jax.Array
    sq_sum: jax.Array
    absmax: jax.Array
    abs_sum: jax.Array


def row_stats(x_rows: Any, *, hessian: bool = True) -> KernelStats:
    """The :class:`KernelStats` of one ``(rows, n_in)`` block of activation rows.

    Example:
      >>> import jax.numpy as jnp
      >>> s = row_stats(jnp.array([[1.0, -2.0], [3.0, 0.0]]))
      >>> s.count, s.xtx.tolist(), s.sq_sum.tolist(), s.absmax.tolist()
      (Array(2., dtype=float32), [[10.0, -2.0], [-2.0, 4.0]], [10.0, 4.0], [3.0, 2.0])
    """
    x = jnp.asarray(x_rows).astype(jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"row_stats: expected (rows, n_in) activation rows, got shape {x.shape}")
    if hessian:
        xtx = jax.lax.dot_general(
            x, x, (((0,), (0,)), ((), ())), precision=jax.lax.Precision.HIGHEST
        )
    else:
        xtx = jnp.zeros((0, 0), jnp.float32)
    return KernelStats(
        count=jnp.float32(x.shape[0]),
        xtx=xtx,
        sq_sum=jnp.sum(x * x, axis=0),
        absmax=jnp.max(jnp.abs(x), axis=0, initial=0.0),
        abs_sum=jnp.sum(jnp.abs(x), axis=0),
    )


def add_stats(a: KernelStats, b: KernelStats) -> KernelStats:
    """Merges the statistics of two sets of rows (sums; the maximum for ``absmax``).

    Example:
      >>> import jax.numpy as jnp
      >>> a = row_stats(jnp.ones((2, 3)))
      >>> add_stats(a, a).count
      Array(4., dtype=float32)
    """
    return KernelStats(
        count=a.count + b.count,
        xtx=a.xtx + b.xtx,
        sq_sum=a.sq_sum + b.sq_sum,
        absmax=jnp.maximum(a.absmax, b.absmax),
        abs_sum=a.abs_sum + b.abs_sum,
    )


def init_stats(
    layouts: Mapping[str, KernelLayout],
    params: Params,
    *,
    where: Where | None = None,
    hessian: bool = True,
) -> dict[str, KernelStats]:
    """Zero statistics for every kernel that ``where`` selects (all of ``layouts`` if None).

    Raises:
      ValueError: ``where`` selects a leaf that is not in ``layouts`` (not a
        kernel), or nothing; a layout does not match its leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.layout import KernelLayout
      >>> lay = {"w": KernelLayout(shape=(3, 2), in_axes=(0,), out_axes=(1,))}
      >>> init_stats(lay, {"w": jnp.ones((3, 2))})["w"].xtx.shape
      (3, 3)
    """
    out = {}
    for path in select_kernels(layouts, params, where):
        layers = layouts[path].layers
        out[path] = _zeros(layouts[path].n_in, () if layers is None else (layers,), hessian)
    return out


def _check_only_layers(
    only_layers: Mapping[str, int] | None, layouts: Mapping[str, KernelLayout]
) -> dict[str, int]:
    """``only_layers`` as a dict; ValueError for a path that is no layer stack or a layer
    outside it, TypeError for anything but a mapping of paths to ints."""
    if only_layers is None:
        return {}
    if not isinstance(only_layers, Mapping):
        raise TypeError(
            f"only_layers: expected a mapping {{path: layer}} or None, got {only_layers!r}"
        )
    for path, layer in only_layers.items():
        layers = layouts[path].layers if path in layouts else None
        if layers is None:
            raise ValueError(
                f"only_layers: {path!r} is not a stack of layers in layouts (no layer_axis)"
            )
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < layers:
            raise ValueError(
                f"only_layers[{path!r}]: expected a layer in 0..{layers - 1}, got {layer!r}"
            )
    return dict(only_layers)


def _layer_args(
    only_layers: Mapping[str, int] | None, layouts: Mapping[str, KernelLayout]
) -> dict[str, np.ndarray]:
    """``only_layers`` checked, as the compiled step's argument: host int32 scalars (in a
    run over several processes, host values are taken as the same on every process)."""
    return {p: np.int32(layer) for p, layer in _check_only_layers(only_layers, layouts).items()}


def _zeros(n: int, lead: tuple[int, ...], hessian: bool) -> KernelStats:
    """The statistics of no rows for ``n`` inputs (``lead``: a stack's layers)."""
    return KernelStats(
        count=jnp.zeros(lead, jnp.float32),
        xtx=jnp.zeros(lead + ((n, n) if hessian else (0, 0)), jnp.float32),
        sq_sum=jnp.zeros((*lead, n), jnp.float32),
        absmax=jnp.zeros((*lead, n), jnp.float32),
        abs_sum=jnp.zeros((*lead, n), jnp.float32),
    )


def make_stats_step(
    apply_fn: Callable[..., Any],
    *,
    layouts: Mapping[str, KernelLayout],
    where: Where | None = None,
    hessian: bool = True,
    mesh: Mesh | None = None,
    only_layers: Mapping[str, int] | None = None,
) -> Callable[[Params, dict[str, KernelStats], Any], dict[str, KernelStats]]:
    """A ``step(params, stats, batch) -> stats`` adding one batch's statistics in one jitted call.

    ``apply_fn(params, batch)`` runs with :func:`jaxzip.layout.intercept_matmuls`;
    each selected kernel's activation rows are reduced to :class:`KernelStats`
    inside the step and never leave it. ``stats`` is donated (its buffers are
    reused for the result, so the ``n_in²`` Hessians are not held twice): do
    not use it after the call. The step compiles once per distinct
    ``(params, batch)`` shape signature and is reused after that: keep it to
    calibrate the same kernels again (e.g. with updated params); a new
    ``where`` needs a new step (one more compile of the whole model).

    With ``mesh`` (params or batches sharded over it), the step's statistics
    are pinned replicated on ``mesh`` (``PartitionSpec()``); pass ``stats``
    placed so, as :func:`collect_stats` does. Without it XLA chooses the
    statistics' sharding, which differs from that of ``init_stats``' zeros,
    so the step compiles twice (for the first batch, then for the next ones).

    ``only_layers`` (``{path: layer}``) collects a layer stack's statistics in
    that one layer; its other layers' stay zero (a layer-sequential method
    calibrates one layer at a time, and the others would cost ``XᵀX`` each).
    The layer is an argument of the compiled step, not part of its program: a
    stack's scan stays one scan, its statistics computed where the scan's index
    equals the layer (``collect_with`` reuses one step for every layer).

    Raises:
      TypeError: ``mesh`` is neither None nor a ``jax.sharding.Mesh``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: x @ p["w"]
      >>> params, x = {"w": jnp.ones((2, 3))}, jnp.array([[1.0, 2.0]])
      >>> lay = trace_layouts(f, params, x)
      >>> step = make_stats_step(f, layouts=lay)
      >>> stats = step(params, init_stats(lay, params), x)
      >>> stats["w"].xtx.tolist()
      [[1.0, 2.0], [2.0, 4.0]]
    """

    layers = _layer_args(only_layers, layouts)
    step = _jitted_step(apply_fn, layouts=layouts, where=where, hessian=hessian, mesh=mesh)
    return lambda params, stats, batch: step(params, stats, batch, layers)


def _jitted_step(
    apply_fn: Callable[..., Any],
    *,
    layouts: Mapping[str, KernelLayout],
    where: Where | None,
    hessian: bool,
    mesh: Mesh | None,
) -> Callable[..., dict[str, KernelStats]]:
    """:func:`make_stats_step`'s step, the layers of ``only_layers`` its traced last argument.

    A layer stack's scan stays one scan (``intercept_matmuls(rolled=True)``): its body
    is traced once, and the statistics of a stack in ``only`` are computed in the
    layer the argument names (``lax.cond`` on the scan's index), zeros elsewhere. So
    the same step, compiled once, collects any one layer of a stack.
    """

    def step(
        params: Params, stats: dict[str, KernelStats], batch: Any, only: dict[str, jax.Array]
    ) -> dict[str, KernelStats]:
        def hook(path: str, x: Any, x_rows: Any, w: Any, compute: Any) -> tuple[Any, KernelStats]:
            y = compute(x, w)
            if compute.layer is None or path not in only:
                return y, row_stats(x_rows, hessian=hessian)
            n = compute.layout.n_in  # a layer not asked for: zeros, nothing computed
            return y, jax.lax.cond(
                compute.layer == only[path],
                functools.partial(row_stats, hessian=hessian),
                lambda _: _zeros(n, (), hessian),
                x_rows,
            )

        fn = intercept_matmuls(
            apply_fn, layouts, hook, where=where, combine=add_stats, layers=True, rolled=True
        )
        _, new = fn(params, batch)
        if set(new) != set(stats):
            raise ValueError(
                f"stats: expected statistics for {sorted(new)}, got {sorted(stats)} "
                "(create them with init_stats and the same where=)"
            )
        return {p: add_stats(stats[p], new[p]) for p in new}

    if mesh is None:
        return jax.jit(step, donate_argnums=1)
    if not isinstance(mesh, Mesh):
        raise TypeError(f"make_stats_step: mesh must be a jax.sharding.Mesh, got {mesh!r}")
    return jax.jit(step, donate_argnums=1, out_shardings=NamedSharding(mesh, PartitionSpec()))


def collect_stats(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    where: Where | None = None,
    hessian: bool = True,
    only_layers: Mapping[str, int] | None = None,
) -> dict[str, KernelStats]:
    """Streams calibration batches through ``apply_fn`` and sums per-kernel statistics.

    Each batch is passed as ``apply_fn(params, batch)`` (a pytree batch is one
    argument). Statistics are reduced inside one jitted step (compiled once per
    distinct batch shape, see :func:`make_stats_step`), added in float32, and
    activations are never stored. For layer-sequential methods (GPTQ,
    SparseGPT) call it with ``where=`` restricted to one group of kernels, then
    again with the updated params for the next group: each call costs one
    compilation and one full forward pass per batch.

    Sharded params, several processes: ``params`` and the batches may be global
    arrays (``jax.Array``) on a ``jax.sharding.Mesh`` (kernels split FSDP-style or over
    a ``"model"`` axis, batches split along ``"data"``); the step then runs on
    the mesh and XLA adds the partial sums of every device, so the statistics
    are the whole batches', as on one device (up to float32 summation order);
    they are kept replicated on the mesh of the first sharded param (or batch)
    leaf (see ``mesh`` in :func:`make_stats_step`), so the step compiles once.
    In a multi-process run (``jax.distributed``) every process passes the same
    params and, as each batch, a global array built from its own rows (e.g.
    ``jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")),
    rows)``, or ``jaxzip.distill.shard_batch(batch, mesh, local=True)`` for a
    dict batch); every process gets the same, global statistics. A host
    (NumPy or single-device) batch array there would be taken as identical on
    every process, so it is refused.

    Args:
      apply_fn: the model, ``apply_fn(params, batch)``.
      params: its params (a pytree; linen variables, nnx state, dicts).
      batches: an iterable of batches (consumed once).
      layouts: from :func:`jaxzip.layout.trace_layouts`.
      where: which kernels to collect (default: all of ``layouts``); selecting a
        leaf that no matmul uses is an error.
      hessian: also sum ``XᵀX`` (``n_in²`` floats per kernel); with False,
        ``xtx`` is a ``(0, 0)`` array.
      only_layers: ``{path: layer}``: collect that layer stack's statistics in
        one layer only (the others stay zero), see :func:`make_stats_step`.

    Returns:
      ``{path: KernelStats}`` in :func:`jaxzip.layout.to_matrix` row order;
      ``count`` says how many rows each kernel saw (a kernel used by several
      matmuls counts the rows of all of them). A stack of layers (``nn.scan``)
      gets each layer's statistics, stacked along a leading axis (its scan
      stays one scan inside the jitted step, traced once).

    Raises:
      ValueError: ``batches`` is empty; a batch that the model rejects
        (naming its index and its shape beside the first batch's); ``where``
        selects a leaf no matmul uses (naming it); in a multi-process run whose
        params or batches span other processes' devices, a batch array that is
        not such a global array (naming it).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> params = {"w1": jnp.ones((2, 4)), "w2": jnp.ones((4, 1))}
      >>> batches = [jnp.array([[1.0, -1.0]]), jnp.array([[2.0, 0.0]])]
      >>> lay = trace_layouts(f, params, batches[0])
      >>> stats = collect_stats(f, params, batches, layouts=lay)
      >>> stats["w1"].count, stats["w1"].absmax.tolist(), stats["w2"].xtx.shape
      (Array(2., dtype=float32), [2.0, 1.0], (4, 4))
    """
    options = {"where": where, "hessian": hessian, "only_layers": only_layers}
    return collect_with({}, apply_fn, params, batches, layouts=layouts, **options)


def collect_with(
    steps: dict[Any, Any],
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    where: Where | None,
    hessian: bool,
    only_layers: Mapping[str, int] | None,
) -> dict[str, KernelStats]:
    """:func:`collect_stats`, reusing the compiled steps kept in ``steps`` (by mesh).

    The caller keeps one ``steps`` dict per ``(apply_fn, layouts, selected kernels,
    hessian, paths of only_layers)``: calls that differ only in the params, the
    batches or the layers of ``only_layers`` then compile once (a layer-sequential
    method calibrating each layer of a stack in turn).
    """
    layers = _layer_args(only_layers, layouts)
    stats = init_stats(layouts, params, where=where, hessian=hessian)
    step = None
    first = None
    spans = jax.process_count() > 1 and spans_processes(params)
    for i, batch in enumerate(batches):
        sig = signature(batch, i)
        if jax.process_count() > 1 and (spans or spans_processes(batch)):
            check_global(batch, i)
        if first is None:
            first = sig
            mesh = mesh_of(params, batch)
            if mesh not in steps:
                steps[mesh] = _jitted_step(
                    apply_fn, layouts=layouts, where=where, hessian=hessian, mesh=mesh
                )
            step = functools.partial(steps[mesh], only=layers)
            if mesh is not None:
                stats = jax.tree.map(functools.partial(replicated, mesh=mesh), stats)
            stats = step(params, stats, batch)
            continue
        try:
            stats = step(params, stats, batch)
        except (TypeError, ValueError) as err:
            if sig == first:
                raise
            raise ValueError(
                f"batches[{i}]: apply_fn rejects this batch of {sig} (the first batch was "
                f"{first}): {err}"
            ) from err
    if first is None:
        raise ValueError("batches: expected at least one calibration batch, got none")
    return stats
