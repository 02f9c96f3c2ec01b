"""SmoothQuant (Xiao et al. 2022): migrate activation outliers into the weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip._types import Params, Where
from jaxzip.layout import KernelLayout
from jaxzip.paths import leaves_with_paths
from jaxzip.quant._actstats import (
    check_alpha,
    collect_act_stats,
    layer_of,
    scales_by_layer,
    select_kernels,
)
from jaxzip.quant._fold import migrate_scales


def smooth_scales(act_absmax: ArrayLike, w_absmax: ArrayLike, *, alpha: float = 0.5) -> jax.Array:
    """SmoothQuant's per-input-channel scales ``s_j = max|X_j|^α / max|W_j|^(1-α)``.

    A channel whose activation or weight range is 0 gets ``s_j = 1``.

    Args:
      act_absmax: ``(n_in,)`` max of ``|x|`` per input channel (calibration).
      w_absmax: ``(n_in,)`` max of ``|W|`` over each input row of the kernel matrix.
      alpha: migration strength in ``[0, 1]`` (0.5 in the paper).

    Returns:
      float32 ``(n_in,)`` positive scales.

    Raises:
      ValueError: ``alpha`` outside ``[0, 1]`` or mismatched shapes.

    Example:
      >>> smooth_scales(jnp.array([16.0, 1.0]), jnp.array([1.0, 4.0]), alpha=0.5)
      Array([4. , 0.5], dtype=float32)
    """
    alpha = check_alpha(alpha)
    a = jnp.asarray(act_absmax, jnp.float32)
    w = jnp.asarray(w_absmax, jnp.float32)
    if a.ndim != 1 or a.shape != w.shape:
        raise ValueError(
            f"smooth_scales: expected act_absmax and w_absmax of one shape (n_in,), got "
            f"{a.shape} and {w.shape}"
        )
    ok = (a > 0) & (w > 0)
    s = jnp.where(ok, a, 1.0) ** alpha / jnp.where(ok, w, 1.0) ** (1.0 - alpha)
    return jnp.where(ok, s, 1.0)


class Smoothed(NamedTuple):
    """What :func:`smooth_quant` returns.

    Attributes:
      params: the params with each selected kernel ``W ← diag(s) W`` and each
        folded normalization's params divided by ``s``.
      in_scales: ``{path: s}`` for the kernels whose ``1/s`` could not be
        folded: pass as ``in_scales=`` to :func:`w8a8` / :func:`make_scaled_apply`.
      scales: ``{path: (n_in,) s}`` for every selected kernel.
      folded: ``{path: the norm params that absorbed 1/s}`` for the folded kernels.
    """

    params: Params
    in_scales: dict[str, jax.Array]
    scales: dict[str, jax.Array]
    folded: dict[str, tuple[str, ...]]


def smooth_quant(
    apply_fn: Callable[..., Any],
    params: Params,
    calib_batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    alpha: float = 0.5,
    where: Where | None = None,
    fold: bool = True,
) -> Smoothed:
    """Computes SmoothQuant scales on calibration data and migrates them into the kernels.

    Kernels that read the same activation (the query, key and value kernels
    after one LayerNorm) share one ``s``: with ``X`` that activation and ``W``
    their kernels side by side as ``(n_in, n_out)`` matrices,
    ``s = smooth_scales(max|X|, max|W|, alpha=alpha)`` (maxima per input
    channel), then ``W ← diag(s) W`` and the activation must become ``X / s``,
    so ``(X / s)(diag(s) W) = X W``. With ``fold=True`` the division is folded
    into the preceding normalization's params when a numerical check proves it
    exact (see ``jaxzip.quant._fold``: LayerNorm/RMSNorm scale and bias, not a
    norm whose output a residual also reads); otherwise it stays explicit:
    pass ``in_scales`` to :func:`w8a8` (or :func:`make_scaled_apply`), which
    divides each matmul's input rows by them.

    A stack of layers (a kernel whose layout has a ``layer_axis``, under
    ``nn.scan``) gets one ``s`` per layer, from that layer's activations and
    weights: its scales are ``(layers, n_in)`` and fold into the stacked norm
    params.

    Args:
      apply_fn: the model, ``apply_fn(params, *args, **kwargs)``.
      params: float params.
      calib_batches: batches passed as ``apply_fn(params, batch)`` (splatted if a tuple).
      layouts: from :func:`jaxzip.layout.trace_layouts`.
      alpha: migration strength in ``[0, 1]``.
      where: selects among the kernels (default: all of ``layouts``).
      fold: fold ``1/s`` into preceding normalizations where exact.

    Returns:
      A :class:`Smoothed` ``(params, in_scales, scales, folded)``.

    Raises:
      ValueError: ``alpha`` outside ``[0, 1]``; ``where`` selects a leaf no
        matmul consumes (named by path); no calibration batch.

    Example:
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: x @ p["w"]
      >>> params, x = {"w": jnp.array([[1.0, 1.0], [4.0, 2.0]])}, jnp.array([[16.0, 1.0]])
      >>> r = smooth_quant(f, params, [x], layouts=trace_layouts(f, params, x))
      >>> r.in_scales["w"], r.params["w"]
      (Array([4. , 0.5], dtype=float32), Array([[4., 4.],
             [2., 1.]], dtype=float32))
    """
    alpha = check_alpha(alpha)
    if not isinstance(fold, bool):
        raise TypeError(f"smooth_quant: fold must be a bool, got {fold!r}")
    chosen = select_kernels(params, layouts, where)
    batches = list(calib_batches)
    stats = collect_act_stats(
        apply_fn, params, batches, layouts=chosen, xtx=False, caller="smooth_quant"
    )
    leaves = dict(leaves_with_paths(params))

    def scale_of(group: tuple[str, ...]) -> jax.Array:
        def scale(layer: int | None, mats: dict[str, jax.Array], _: Any) -> jax.Array:
            w_max = jnp.max(jnp.stack([jnp.max(jnp.abs(m), axis=1) for m in mats.values()]), 0)
            act = layer_of(stats[group[0]], layer).absmax
            return smooth_scales(act, w_max, alpha=alpha)

        return scales_by_layer(group, chosen, leaves, scale)

    return Smoothed(
        *migrate_scales(apply_fn, params, batches[0], chosen, stats, scale_of, fold=fold)
    )
