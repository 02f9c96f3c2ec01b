"""SmoothQuant (Xiao et al. 2022): migrate activation outliers into the weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip._types import Params, Where
from jaxzip.layout import KernelLayout, from_matrix, to_matrix
from jaxzip.paths import map_with_paths
from jaxzip.quant._actstats import check_alpha, collect_act_stats, select_kernels


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


def smooth_quant(
    apply_fn: Callable[..., Any],
    params: Params,
    calib_batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    alpha: float = 0.5,
    where: Where | None = None,
) -> tuple[Params, dict[str, jax.Array]]:
    """Computes SmoothQuant scales on calibration data and multiplies them into the kernels.

    For each selected kernel ``W`` (viewed as ``(n_in, n_out)``) and its input
    activation ``X``: ``s = smooth_scales(max|X|, max|W|, alpha=alpha)``,
    ``W ← diag(s) W``, and the activation must be divided by ``s``:
    ``(X / s) (diag(s) W) = X W``. The division is explicit: pass the returned
    scales as ``in_scales=`` to :func:`w8a8` (or :func:`make_scaled_apply`),
    which divides each matmul's input rows by them before quantizing. Folding
    ``1/s`` into a preceding LayerNorm's scale and bias is not done (the
    explicit division is correct for any model).

    Args:
      apply_fn: the model, ``apply_fn(params, *args, **kwargs)``.
      params: float params.
      calib_batches: batches passed as ``apply_fn(params, batch)`` (splatted if a tuple).
      layouts: from :func:`jaxzip.layout.trace_layouts`.
      alpha: migration strength in ``[0, 1]``.
      where: selects among the kernels (default: all of ``layouts``).

    Returns:
      ``(params, scales)``: the params with each selected kernel multiplied by
      its scales (other leaves unchanged), and ``{path: (n_in,) scales}``.

    Raises:
      ValueError: ``alpha`` outside ``[0, 1]``; ``where`` selects a leaf no
        matmul consumes (named by path); no calibration batch.

    Example:
      >>> from jaxzip.layout import trace_layouts
      >>> f = lambda p, x: x @ p["w"]
      >>> params, x = {"w": jnp.array([[1.0, 1.0], [4.0, 2.0]])}, jnp.array([[16.0, 1.0]])
      >>> p2, s = smooth_quant(f, params, [x], layouts=trace_layouts(f, params, x))
      >>> s["w"], p2["w"]
      (Array([4. , 0.5], dtype=float32), Array([[4., 4.],
             [2., 1.]], dtype=float32))
    """
    alpha = check_alpha(alpha)
    chosen = select_kernels(params, layouts, where, "smooth_quant")
    stats = collect_act_stats(
        apply_fn, params, calib_batches, layouts=chosen, xtx=False, caller="smooth_quant"
    )
    scales = {}

    def scale_leaf(path: str, leaf: Any) -> Any:
        if path not in chosen:
            return leaf
        m = to_matrix(leaf, chosen[path])
        s = smooth_scales(stats[path].absmax, jnp.max(jnp.abs(m), axis=1), alpha=alpha)
        scales[path] = s
        return from_matrix(m * s[:, None].astype(m.dtype), chosen[path])

    return map_with_paths(scale_leaf, params), scales
