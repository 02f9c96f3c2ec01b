"""``run_oneshot``: the driver of every one-shot method (GPTQ, SparseGPT, Wanda).

It traces the model once (:func:`jaxzip.layout.trace_layouts`), selects the
kernels with ``where`` (:func:`jaxzip.layout.select_kernels`), and hands each
kernel with its calibration statistics (:func:`collect_stats`) to the method's
``process``. Sequentially (the papers' protocol) the kernels go in traced
order, each group calibrated on params in which every earlier kernel already
holds its processed (dequantized / pruned) value; a group is the run of next
kernels that read the same activation (detected exactly: their statistics are
identical, e.g. q/k/v), so it costs one calibration pass. A stack of layers
(``nn.scan``) is processed one layer at a time, layer-major: layer 0 of every
stacked kernel of the run, then layer 1, ...
"""

from __future__ import annotations

import inspect
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from jaxzip._types import Params, Where
from jaxzip.calib._stats import KernelStats, collect_with
from jaxzip.layout import KernelLayout, select_kernels, trace_layouts
from jaxzip.paths import leaves_with_paths

Process = Callable[..., tuple[Any, Any]]
"""``(path, leaf, layout, stats) -> (float leaf for later calibration, output)``.

For one layer of a stack of layers it is called with that layer's slice, the
slice's layout and statistics, and ``layer``: the index that takes the slice
from the whole leaf (``leaf[layer]``; layer ``i`` of ``layer_axis`` ``a`` is
``(slice(None),) * a + (i,)``), to slice any per-leaf data the same way.
"""

Stack = Callable[[list[Any], int], Any]
"""``(outputs of each layer, axis) -> output`` of a whole stack of layers."""

Unit = tuple[str, int | None]  # a kernel, and its layer when it is a stack of layers

Select = Callable[[list[str], Mapping[str, KernelLayout]], list[str]]
"""``(paths, layouts) -> paths``: narrows or checks the selected kernels before calibration."""


class OneShotOptions(TypedDict, total=False):
    """The options of :func:`run_oneshot` that a one-shot method passes on unchanged.

    GPTQ, SparseGPT and Wanda take them as keyword arguments
    (``**options: Unpack[OneShotOptions]``) and hand them to :func:`run_oneshot`,
    whose defaults apply to those left out.

    Example:
      >>> import jax.numpy as jnp
      >>> options: OneShotOptions = {"where": "w1", "sequential": False}
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> params = {"w1": jnp.ones((2, 3)), "w2": jnp.ones((3, 1))}
      >>> count = lambda path, leaf, layout, stats: (leaf, int(stats.count))
      >>> run_oneshot(f, params, [jnp.ones((4, 2))], count, hessian=False, **options)
      {'w1': 4}
    """

    where: Where | None  # the kernels to process (default: every traced kernel)
    sequential: bool  # calibrate each group on the already-processed kernels (default: True)
    layouts: Mapping[str, KernelLayout] | None  # trace_layouts' result, if already traced
    progress: bool  # a progress bar over the kernels on stderr (default: False)


def _check_batches(batches: Any, name: str) -> list[Any]:
    """The calibration batches as a list (they are read once per calibration pass)."""
    if isinstance(batches, (str, bytes)) or not hasattr(batches, "__iter__"):
        raise TypeError(f"{name}: batches must be an iterable of model inputs, got {batches!r}")
    out = list(batches)
    if not out:
        raise ValueError(f"{name}: batches is empty; pass at least one calibration batch")
    return out


def _check_tokens(path: str, stats: KernelStats, n_in: int, name: str) -> None:
    """A Hessian method needs at least ``n_in`` calibration tokens (rows of ``X``)."""
    count = int(stats.count)
    if count < n_in:
        raise ValueError(
            f"{path}: {name} needs at least n_in={n_in} calibration tokens (rows of X) "
            f"for a full-rank Hessian XᵀX, got {count}; pass more or longer batches"
        )


def _same_input(a: KernelStats, b: KernelStats, hessian: bool) -> bool:
    if int(a.count) != int(b.count):
        return False
    x, y = (a.xtx, b.xtx) if hessian else (a.sq_sum, b.sq_sum)
    return x.shape == y.shape and bool(jnp.array_equal(x, y))


def _units(order: list[str], layouts: Mapping[str, KernelLayout]) -> list[Unit]:
    """The kernels in traced order, each run of stacks of the same depth layer-major.

    A run of consecutive stacked kernels with the same number of layers is
    taken as one scan's body: ``(q, 0), (k, 0), ..., (q, 1), ...``.
    """
    out: list[Unit] = []
    k = 0
    while k < len(order):
        n = layouts[order[k]].layers
        run = [order[k]]
        k += 1
        if n is None:
            out.append((run[0], None))
            continue
        while k < len(order) and layouts[order[k]].layers == n:
            run.append(order[k])
            k += 1
        out.extend((p, i) for i in range(n) for p in run)
    return out


def _layout(unit: Unit, layouts: Mapping[str, KernelLayout]) -> KernelLayout:
    path, layer = unit
    return layouts[path] if layer is None else layouts[path].layer_slice()


def _label(unit: Unit) -> str:
    path, layer = unit
    return path if layer is None else f"{path} (layer {layer})"


def _of(unit: Unit, stats: Mapping[str, KernelStats]) -> KernelStats:
    """The statistics of one unit (one layer's, for a stack of layers)."""
    path, layer = unit
    s = stats[path]
    return s if layer is None else KernelStats(*(a[layer] for a in s))


def _put(whole: jax.Array, new: jax.Array, layer: jax.Array, axis: int) -> jax.Array:
    """``whole`` with layer ``layer`` along ``axis`` replaced by ``new`` (in ``whole``'s dtype)."""
    update = jnp.expand_dims(new.astype(whole.dtype), axis)
    return jax.lax.dynamic_update_index_in_dim(whole, update, layer, axis)


_put_copy = jax.jit(_put, static_argnums=3)
_put_in_place = jax.jit(_put, static_argnums=3, donate_argnums=0)  # our own copy only


def _takes_layer(process: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(process).parameters.values()
    except (TypeError, ValueError):
        return True  # cannot tell: let the call decide
    return any(p.name == "layer" or p.kind is p.VAR_KEYWORD for p in params)


def _stack_arrays(outputs: list[Any], axis: int) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs, axis=axis), *outputs)


def _candidates(units: list[Unit], start: int, layouts: Mapping[str, KernelLayout]) -> list[Unit]:
    """The next unit and the run of following units with the same ``n_in``."""
    n_in = _layout(units[start], layouts).n_in
    out = [units[start]]
    for u in units[start + 1 :]:
        if _layout(u, layouts).n_in != n_in:
            break
        out.append(u)
    return out


def run_oneshot(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    process: Process,
    *,
    hessian: bool,
    where: Where | None = None,
    sequential: bool = True,
    layouts: Mapping[str, KernelLayout] | None = None,
    select: Select | None = None,
    name: str = "run_oneshot",
    progress: bool = False,
    stack: Stack | None = None,
) -> dict[str, Any]:
    """Runs a one-shot method over a model's matmul kernels, calibrating as it goes.

    Every selected kernel, in traced order, is passed to
    ``process(path, leaf, layout, stats)`` with its :class:`KernelStats`; the
    first value it returns (a float leaf) replaces the kernel in the params
    that later calibration passes see, the second is collected. A stack of
    layers (a kernel whose layout has a ``layer_axis``: params stacked by
    ``nn.scan``) is processed one layer at a time, as a Python loop over the
    layers would be: ``process(path, leaf[at], layout.layer_slice(), stats of
    the layer, layer=at)`` (``at`` indexes layer ``i``), layer-major across
    the stacked kernels of a run (consecutive stacks of the same depth count as
    one scan's: two separate scans of equal depth back to back would be
    interleaved), and ``stack`` joins the layers' outputs. With ``sequential``
    each group of kernels reading the same activation is
    calibrated on the params updated with every earlier kernel's float value
    (one pass per group); without it all kernels share one pass on ``params``.

    Sharded params and several processes work as in :func:`collect_stats`:
    pass params and batches as global arrays on a ``jax.sharding.Mesh`` (in a
    ``jax.distributed`` run, the same params on every process and each batch
    built from the process's own rows); the statistics are then global, so every
    process computes the same results, equal to one device's up to float32
    summation order. ``process`` runs eagerly on the sharded leaves, and the
    float leaves it returns are what later calibration passes read.

    Args:
      apply_fn: ``apply_fn(params, batch)``.
      params: the float params.
      batches: calibration inputs, each passed as ``apply_fn(params, batch)``;
        read once per calibration pass.
      process: ``(path, leaf, layout, stats) -> (float leaf, output)``.
      hessian: collect ``XᵀX`` (and require at least ``n_in`` calibration
        tokens per kernel); False collects only the per-input statistics.
      where: the kernels to process (default: every traced kernel).
      sequential: calibrate each group on the already-processed earlier kernels.
      layouts: the ``{path: KernelLayout}`` of ``trace_layouts``, if already traced.
      select: ``(paths, layouts) -> paths`` narrowing or checking the selected
        kernels before any calibration pass (a method's per-kernel rules).
      name: the method's name, which begins its error messages and names the progress bar.
      progress: show a progress bar over the selected kernels on stderr (how many are
        done, and the last one), for models whose calibration takes minutes.
      stack: ``(outputs of the layers, layer_axis) -> output`` for a stack of
        layers; default: stack every array of the outputs along ``layer_axis``
        (:func:`jaxzip.quant.stack_layers` also stacks ``QArray``s).

    Returns:
      ``{path: output}`` for the processed kernels, in traced order.

    Raises:
      ValueError: ``batches`` empty; ``where`` selecting nothing or a leaf no
        matmul consumes; fewer calibration tokens than a kernel's ``n_in``
        (with ``hessian``).
      TypeError: ``batches`` not iterable; ``sequential`` or ``progress`` not a bool.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> params = {"w1": jnp.ones((2, 3)), "w2": jnp.ones((3, 1))}
      >>> zero = lambda path, leaf, layout, stats: (0 * leaf, int(stats.count))
      >>> run_oneshot(f, params, [jnp.ones((4, 2))], zero, hessian=False)
      {'w1': 4, 'w2': 4}
    """
    for flag, value in (("sequential", sequential), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}: {flag} must be a bool, got {value!r}")
    batches = _check_batches(batches, name)
    layouts = trace_layouts(apply_fn, params, batches[0]) if layouts is None else dict(layouts)
    order = select_kernels(layouts, params, where)
    if select is not None:
        order = select(order, layouts)
    units = _units(order, layouts)
    stacked = next((p for p, layer in units if layer is not None), None)
    if stacked is not None and not _takes_layer(process):
        raise TypeError(
            f"{name}: process must accept a layer= keyword: {stacked!r} is a stack of layers, "
            "processed one layer at a time (see run_oneshot)"
        )
    stack = _stack_arrays if stack is None else stack
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    index = {p: i for i, (p, _) in enumerate(leaves_with_paths(params))}
    leaves = [leaf for _, leaf in flat]
    outputs: dict[str, Any] = {}
    layered: dict[str, list[Any]] = {}
    owned: set[int] = set()  # leaves that are our copies (updated in place), not the caller's

    steps: dict[Any, dict[Any, Any]] = {}  # compiled steps, by kernels (a stack's, any layer)

    def collect(group: list[Unit]) -> Mapping[str, KernelStats]:
        chosen = frozenset(p for p, _ in group)
        per_path = Counter(p for p, _ in group)  # a stack's path once: only its layer's statistics
        only = {p: layer for p, layer in group if layer is not None and per_path[p] == 1}
        return collect_with(
            steps.setdefault((chosen, frozenset(only)), {}),
            apply_fn,
            jax.tree.unflatten(treedef, leaves),
            batches,
            layouts=layouts,
            where=lambda p, _leaf: p in chosen,
            hessian=hessian,
            only_layers=only,
        )

    bar = tqdm(total=len(units), desc=name, unit="kernel", file=sys.stderr, disable=not progress)

    def handle(group: list[Unit], stats: Mapping[str, KernelStats]) -> None:
        for unit in group:
            (p, layer), lay, st = unit, _layout(unit, layouts), _of(unit, stats)
            if hessian:
                _check_tokens(_label(unit), st, lay.n_in, name)
            i = index[p]
            if layer is None:
                leaves[i], outputs[p] = process(p, leaves[i], lay, st)
            else:
                axis = layouts[p].layer_axis
                at = (slice(None),) * axis + (layer,)
                whole = jnp.asarray(leaves[i])
                new, out = process(p, whole[at], lay, st, layer=at)
                put = _put_in_place if i in owned else _put_copy  # one copy of a stack in all
                leaves[i] = put(whole, jnp.asarray(new), jnp.int32(layer), axis)
                owned.add(i)
                layered.setdefault(p, []).append(out)
                if layer == layouts[p].layers - 1:
                    outputs[p] = stack(layered.pop(p), axis)
            bar.set_postfix_str(_label(unit), refresh=False)
            bar.update(1)

    with bar:
        if not sequential:
            handle(units, collect(units))
            return outputs
        start = 0
        while start < len(units):
            cand = _candidates(units, start, layouts)
            stats = collect(cand)
            group = [cand[0]]
            for u in cand[1:]:
                if not _same_input(_of(cand[0], stats), _of(u, stats), hessian):
                    break
                group.append(u)
            handle(group, stats)
            start += len(group)
    return outputs
