"""AWQ (Lin et al. 2023): activation-aware per-input-channel scales for weight-only quantization."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxzip._types import Params, Where
from jaxzip.layout import KernelLayout, from_matrix, to_matrix
from jaxzip.paths import leaves_with_paths
from jaxzip.quant._actstats import (
    check_alpha,
    check_bits,
    collect_act_stats,
    layer_of,
    scales_by_layer,
    select_kernels,
)
from jaxzip.quant._fold import migrate_scales
from jaxzip.quant._qarray import dequantize
from jaxzip.quant._quantize import quantize
from jaxzip.quant._spec import QuantSpec

ALPHAS = tuple(i / 20 for i in range(21))
"""The default grid of exponents: 0, 0.05, ..., 1."""


class AWQResult(NamedTuple):
    """What :func:`awq` returns.

    Attributes:
      params: the params with each selected kernel ``W ← diag(s) W`` (float) and
        each folded normalization's params divided by ``s``; quantize the
        kernels with :func:`quantize_params` (or GPTQ) and the spec below.
      in_scales: ``{path: s}`` for the kernels whose ``1/s`` was not folded; run
        with ``make_scaled_apply(apply_fn, layouts=..., in_scales=in_scales)``,
        which divides those kernels' input rows by ``s``.
      scales: ``{path: (n_in,) s}`` for every selected kernel.
      folded: ``{path: the norm params that absorbed 1/s}``.
      alpha: ``{path: the chosen exponent}``.
      error: ``{path: the layer output error at the chosen alpha}``: the mean
        over calibration rows of ``||x (Q(W diag(s))/s - W)||²``.
      rtn_error: ``{path: the same error without scaling (alpha = 0, plain RTN)}``.
      spec: ``{path: the QuantSpec the search assumed}``.

    For a stack of layers (``nn.scan``) each layer has its own search: its
    ``scales`` and ``in_scales`` are ``(layers, n_in)``, and ``alpha``,
    ``error`` and ``rtn_error`` hold a tuple with one value per layer.
    """

    params: Params
    in_scales: dict[str, jax.Array]
    scales: dict[str, jax.Array]
    folded: dict[str, tuple[str, ...]]
    alpha: dict[str, float | tuple[float, ...]]
    error: dict[str, float | tuple[float, ...]]
    rtn_error: dict[str, float | tuple[float, ...]]
    spec: dict[str, QuantSpec]


def awq_spec(layout: KernelLayout, *, bits: int, group_size: int | None) -> QuantSpec:
    """The weight spec AWQ searches for: per output channel, optionally grouped along inputs."""
    if group_size is None:
        return QuantSpec(bits=bits, axes=layout.quant_axes())
    return QuantSpec(
        bits=bits, axes=layout.quant_axes(), group_size=group_size, group_axis=layout.group_axis()
    )


@functools.partial(jax.jit, static_argnames=("layout", "spec"))
def _layer_error(
    m: jax.Array, h: jax.Array, s: jax.Array, layout: KernelLayout, spec: QuantSpec
) -> jax.Array:
    """``tr(Dᵀ H D)`` with ``D = Q(W diag(s)) / s - W`` in matrix form."""
    scaled = from_matrix(m * s[:, None], layout)
    q = to_matrix(dequantize(quantize(scaled, spec)), layout) / s[:, None]
    d = q - m
    return jnp.sum(d * jnp.matmul(h, d, precision="highest"))


def awq_scales(abs_mean: jax.Array, alpha: float) -> jax.Array:
    """``s = mean|x|^α``, normalized by ``sqrt(max(s) min(s))``; channels with mean 0 get 1.

    Example:
      >>> awq_scales(jnp.array([4.0, 1.0]), 0.5)
      Array([1.4142135 , 0.70710677], dtype=float32)
    """
    alpha = check_alpha(alpha)
    a = jnp.asarray(abs_mean, jnp.float32)
    s = jnp.where(a > 0, a, 1.0) ** alpha
    s = jnp.where(a > 0, s, 1.0)
    return s / jnp.sqrt(jnp.max(s) * jnp.min(s))


def awq(
    apply_fn: Callable[..., Any],
    params: Params,
    calib_batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    bits: int = 4,
    group_size: int | None = None,
    alphas: Sequence[float] = ALPHAS,
    where: Where | None = None,
    fold: bool = True,
) -> AWQResult:
    """Searches AWQ's per-input-channel scales and multiplies them into the kernels.

    For each selected kernel ``W`` (``(n_in, n_out)``) with calibration inputs
    ``X``: for each ``α`` in ``alphas``, ``s = mean|X|^α`` (normalized, see
    :func:`awq_scales`); the layer error ``E(α) = mean_rows ||x (Q(W diag(s)) /
    s - W)||²`` is computed exactly from ``XᵀX`` (no activations are stored),
    with ``Q`` round-to-nearest on the spec of :func:`awq_spec`. The ``α`` with
    the lowest error wins (the first on ties); ``α = 0`` is plain RTN, so the
    chosen error (summed over a group sharing ``s``) never exceeds RTN's on the
    calibration set.

    Kernels that read the same activation (query, key and value after one
    LayerNorm) share one ``s``, chosen on the sum of their errors. With
    ``fold=True``, ``1/s`` is folded into the preceding normalization's params
    where a numerical check proves it exact (as in :func:`smooth_quant`);
    elsewhere the division stays explicit: run the result with
    ``make_scaled_apply(apply_fn, layouts=..., in_scales=result.in_scales)``.

    A stack of layers (a kernel whose layout has a ``layer_axis``, under
    ``nn.scan``) is searched layer by layer, each layer on its own
    calibration inputs, as the same layers in a Python loop would be; its
    scales are ``(layers, n_in)`` and fold into the stacked norm params.

    Args:
      apply_fn: the model, ``apply_fn(params, *args, **kwargs)``.
      params: float params.
      calib_batches: batches passed as ``apply_fn(params, batch)`` (splatted if a tuple).
      layouts: from :func:`jaxzip.layout.trace_layouts`.
      bits: weight bits, 2..8.
      group_size: input-group size for per-group scales, or None (per channel).
      alphas: the exponent grid, each in ``[0, 1]``.
      where: selects among the kernels (default: all of ``layouts``).
      fold: fold ``1/s`` into preceding normalizations where exact.

    Returns:
      An :class:`AWQResult`.

    Raises:
      ValueError: bad bits or alphas; ``where`` selects a leaf no matmul
        consumes (named by path); no calibration batch; a group size that does
        not divide the input axis.

    Example:
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: x @ p["w"]
      >>> params = {"w": jnp.array([[0.3, -0.2], [0.1, 0.4]])}
      >>> x = jnp.array([[1.0, 1.0], [-1.0, 1.0]])
      >>> r = awq(f, params, [x], layouts=trace_layouts(f, params, x), bits=3)
      >>> r.alpha, bool((r.in_scales["w"] == 1).all())
      ({'w': 0.0}, True)
    """
    bits = check_bits(bits)
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence) or not alphas:
        raise ValueError(f"alphas: expected a non-empty sequence of numbers, got {alphas!r}")
    grid = [check_alpha(a, "alphas") for a in alphas]
    if not isinstance(fold, bool):
        raise TypeError(f"awq: fold must be a bool, got {fold!r}")
    chosen = select_kernels(params, layouts, where)
    specs = {}
    for p, lay in chosen.items():
        try:
            specs[p] = awq_spec(lay, bits=bits, group_size=group_size)
            if group_size is not None and lay.shape[lay.group_axis()] % group_size:
                raise ValueError(
                    f"group_size={group_size} does not divide axis {lay.group_axis()} "
                    f"of shape {lay.shape}"
                )
        except ValueError as e:
            raise ValueError(f"awq: {p!r}: {e}") from None
    batches = list(calib_batches)
    stats = collect_act_stats(apply_fn, params, batches, layouts=chosen, xtx=True, caller="awq")
    leaves = dict(leaves_with_paths(params))
    alpha: dict[str, Any] = {}
    error: dict[str, Any] = {}
    rtn: dict[str, Any] = {}

    def keep(out: dict[str, Any], p: str, layer: int | None, value: float) -> None:
        if layer is None:
            out[p] = value
        else:  # a layer stack: one value per layer
            out[p] = (*out.get(p, ()), value)

    def scale_of(group: tuple[str, ...]) -> jax.Array:
        def scale(
            layer: int | None, mats: dict[str, jax.Array], lays: dict[str, KernelLayout]
        ) -> jax.Array:
            st = layer_of(stats[group[0]], layer)
            h, mean = st.xtx / st.count, st.abs_sum / st.count
            mats = {p: m.astype(jnp.float32) for p, m in mats.items()}
            spec = {p: awq_spec(lays[p], bits=bits, group_size=group_size) for p in group}

            def errors(sc: jax.Array) -> dict[str, float]:
                return {p: float(_layer_error(mats[p], h, sc, lays[p], spec[p])) for p in group}

            per_alpha = [errors(awq_scales(mean, a)) for a in grid]
            best = min(range(len(grid)), key=lambda i: sum(per_alpha[i].values()))
            s = awq_scales(mean, grid[best])
            base = errors(jnp.ones_like(s))
            for p in group:
                keep(alpha, p, layer, grid[best])
                keep(error, p, layer, per_alpha[best][p])
                keep(rtn, p, layer, base[p])
            return s

        return scales_by_layer(group, chosen, leaves, scale)

    new, in_scales, scales, folded = migrate_scales(
        apply_fn, params, batches[0], chosen, stats, scale_of, fold=fold
    )
    return AWQResult(new, in_scales, scales, folded, alpha, error, rtn, specs)
