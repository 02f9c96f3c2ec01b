"""Wanda (Sun et al. 2023): prune by ``|W| · ‖X‖``, ranked within each output."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Unpack

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxzip import calib as jz_calib
from jaxzip import layout as jz_layout
from jaxzip._types import Mask, Params
from jaxzip.prune._sparsegpt import check_prune_options, check_tree_structure, full_mask
from jaxzip.prune._structures import NByM


def wanda_scores(w: jax.Array, in_norm: jax.Array) -> jax.Array:
    """``|W_ij| · ‖X_i‖₂`` for ``W (n_in, n_out)`` and input norms ``(n_in,)``."""
    return jnp.abs(w) * in_norm.astype(w.dtype)[:, None]


def per_output_mask(scores: jax.Array, sparsity: Any, structure: NByM | None) -> jax.Array:
    """Keep-mask ranking each output column over its inputs (exact count, ties: lower row)."""
    if structure is not None:
        return NByM(structure.n, structure.m, axis=0).mask(scores)
    n_in = scores.shape[0]
    k = jnp.round(jnp.asarray(sparsity, jnp.float32) * n_in).astype(jnp.int32)
    order = jnp.argsort(scores, axis=0, stable=True)
    ranks = jnp.argsort(order, axis=0, stable=True)
    return ranks >= k


def _check_norm(w: jax.Array, in_norm: Any, what: str) -> jax.Array:
    in_norm = jnp.asarray(in_norm)
    if in_norm.shape != (w.shape[0],):
        raise ValueError(
            f"{what}: in_norm must have shape (n_in,) = ({w.shape[0]},) for w of shape "
            f"{w.shape}, got {in_norm.shape}"
        )
    if not jnp.issubdtype(in_norm.dtype, jnp.floating):
        raise TypeError(f"{what}: in_norm must be a float array, got dtype {in_norm.dtype}")
    return in_norm


def wanda_mask_matrix(
    w: ArrayLike,
    in_norm: ArrayLike,
    *,
    sparsity: float | None = None,
    structure: NByM | None = None,
) -> jax.Array:
    """Wanda's keep-mask of ``W (n_in, n_out)``: score ``|W_ij| · ‖X_i‖₂``, ranked per output.

    The comparison group is each output column over its inputs (the paper's
    per-output ranking; a per-layer ranking of the same scores is worse for
    LLMs): every column loses exactly ``round(sparsity · n_in)`` weights, ties
    going to the lower input index. With ``structure=NByM(n, m)`` every ``m``
    consecutive inputs of a column keep their ``n`` best. The weights are not
    updated. Runs under ``jax.jit``.

    Args:
      w: float weights, rows = inputs (``x @ w``).
      in_norm: ``(n_in,)`` L2 norms of the input features over the calibration
        tokens (``sqrt`` of ``KernelStats.sq_sum``).
      sparsity: fraction pruned per output, in ``[0, 1)``.
      structure: ``NByM(n, m)`` along the input axis instead.

    Returns:
      A bool ``(n_in, n_out)`` mask, False where pruned.

    Raises:
      ValueError: bad shapes, sparsity outside ``[0, 1)``, neither or a
        mismatched sparsity/structure, ``m`` not dividing ``n_in``.
      TypeError: non-float arrays or a bad ``structure``.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[4.0, 0.5], [3.0, 0.1], [2.0, 0.4], [1.0, 0.2]])
      >>> wanda_mask_matrix(w, jnp.array([1.0, 1.0, 1.0, 10.0]), sparsity=0.5)
      Array([[ True,  True],
             [False, False],
             [False, False],
             [ True,  True]], dtype=bool)
    """
    what = "wanda_mask_matrix"
    w = jnp.asarray(w)
    if w.ndim != 2 or w.size == 0 or not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(
            f"{what}: w must be a non-empty float (n_in, n_out) matrix, got shape {w.shape} "
            f"and dtype {w.dtype}"
        )
    in_norm = _check_norm(w, in_norm, what)
    s = check_prune_options(sparsity, structure, what, n_in=w.shape[0])
    return per_output_mask(wanda_scores(w, in_norm), s, structure)


def wanda(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    *,
    sparsity: float | None = None,
    structure: NByM | None = None,
    **options: Unpack[jz_calib.OneShotOptions],
) -> Mask:
    """Wanda's keep-mask for a model's matmul kernels, from calibration batches.

    Each kernel (from :func:`jaxzip.layout.trace_layouts`), as the
    ``(n_in, n_out)`` matrix of ``y = x @ W``, is scored ``|W_ij| · ‖X_i‖₂``
    with the input norms from :func:`jaxzip.calib.collect_stats`
    (``hessian=False``: only ``sq_sum``) and ranked per output
    (:func:`wanda_mask_matrix`). With ``sequential`` each kernel's norms come
    from params where the earlier kernels are already masked. N:M groups run
    along each kernel's last input axis. A stack of layers (``nn.scan``) is
    scored layer by layer, each on its own inputs.

    Args:
      apply_fn: ``apply_fn(params, batch)``.
      params: the float params.
      batches: calibration inputs, each passed as ``apply_fn(params, batch)``.
      sparsity: fraction pruned per output, in ``[0, 1)``.
      structure: ``NByM(n, m)`` instead (``axis`` left at -2).
      where: the kernels to prune (default: every traced kernel).
      sequential: calibrate on the already-masked earlier kernels.
      layouts: the ``{path: KernelLayout}`` of ``trace_layouts``, if already traced.
      progress: a progress bar over the kernels on stderr.

    Returns:
      A bool mask with ``params``' structure (all True on leaves not pruned),
      for :func:`apply_mask` and :func:`keep_masked`. Weights are not updated.

    Raises:
      ValueError: bad sparsity; ``m`` not dividing a kernel's input axis;
        ``where`` selecting nothing or a non-kernel.
      TypeError: bad argument types.

    Example:
      >>> import jax.numpy as jnp
      >>> f = lambda p, x: x @ p["w"]
      >>> params = {"w": jnp.array([[4.0, 0.5], [3.0, 0.1], [2.0, 0.4], [1.0, 0.2]])}
      >>> x = jnp.array([[1.0, 1.0, 1.0, 10.0]])  # the 4th input is 10x louder
      >>> wanda(f, params, [x], sparsity=0.5)["w"]  # its small weights outrank |W| = 3, 2
      Array([[ True,  True],
             [False, False],
             [False, False],
             [ True,  True]], dtype=bool)
    """
    what = "wanda"
    check_prune_options(sparsity, structure, what)

    def process(path: str, leaf: Any, layout: Any, stats: Any, layer: Any = ()) -> tuple[Any, Any]:
        mat = jz_layout.to_matrix(leaf, layout)
        norm = jnp.sqrt(jnp.asarray(stats.sq_sum, jnp.float32))
        mask = per_output_mask(wanda_scores(mat.astype(jnp.float32), norm), sparsity, structure)
        mask = jz_layout.from_matrix(mask, layout)
        return jnp.where(mask, leaf, jnp.zeros_like(leaf)), mask

    masks = jz_calib.run_oneshot(
        apply_fn,
        params,
        batches,
        process,
        hessian=False,
        name=what,
        select=lambda paths, layouts: check_tree_structure(structure, paths, layouts, what),
        **options,
    )
    return full_mask(params, masks)
