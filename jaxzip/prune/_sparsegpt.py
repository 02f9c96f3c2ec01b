"""SparseGPT (Frantar & Alistarh 2023) on one matrix ``W (n_in, n_out)`` with ``H = XᵀX``."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.prune._checks import check_sparsity, is_concrete
from jaxzip.prune._structures import NByM
from jaxzip.quant import QArray, QuantSpec
from jaxzip.quant._gptq import check_gptq_spec, check_matrix, check_options, raise_not_pd
from jaxzip.quant._obs import (
    Grid,
    Pruning,
    compute_dtype,
    effective_block,
    fix_dead,
    group_params,
    inverse_cholesky,
    obs_loop,
    pad_rows,
    padded_size,
)


def check_prune_options(sparsity: Any, structure: Any, n_in: int, what: str) -> Any:
    """Exactly one of ``sparsity`` (in [0, 1)) and ``structure`` (an :class:`NByM` on the inputs).

    Returns the sparsity for unstructured pruning, None for N:M.
    """
    if structure is None:
        if sparsity is None:
            raise ValueError(f"{what}: pass sparsity=... (unstructured) or structure=NByM(n, m)")
        check_sparsity(sparsity, f"{what}: sparsity")
        return sparsity
    if not isinstance(structure, NByM):
        raise TypeError(f"{what}: structure must be NByM(n, m) or None, got {structure!r}")
    if (
        sparsity is not None
        and is_concrete(sparsity)
        and abs(float(sparsity) - structure.sparsity) > 1e-6
    ):
        raise ValueError(
            f"{what}: {structure!r} prunes exactly {structure.sparsity:g}; got "
            f"sparsity={sparsity!r} (pass sparsity=None)"
        )
    if structure.axis not in (0, -2):
        raise ValueError(
            f"{what}: N:M groups run along the input axis (axis=-2 of (n_in, n_out)), "
            f"got axis={structure.axis}"
        )
    if n_in % structure.m:
        raise ValueError(
            f"{what}: NByM m={structure.m} must divide the input size {n_in} (N:M groups run "
            "along the input axis)"
        )
    return None


@functools.partial(jax.jit, static_argnames=("n", "m", "spec", "block_size"))
def sparsegpt_core(
    w: jax.Array,
    h: jax.Array,
    damp: jax.Array,
    sparsity: jax.Array,
    *,
    n: int,
    m: int,
    spec: QuantSpec | None,
    block_size: int,
) -> tuple[jax.Array, jax.Array, QArray | None, jax.Array, jax.Array]:
    """SparseGPT without the boundary checks: ``(w, mask, QArray or None, ok, λ)``."""
    n_in, n_out = w.shape
    dt = compute_dtype(w.dtype)
    w, h = w.astype(dt), h.astype(dt)
    g = spec.group_size if spec is not None else None
    grid = None
    if spec is not None:
        grid = Grid(spec.qmin, spec.qmax, spec.symmetric, g or 0)
        if g is None:  # per tensor or channel: from W before any update, as the reference
            s, z = group_params(w if spec.axes else w.reshape(-1, 1), grid)
    w, h = fix_dead(w, h)
    u, ok, lam = inverse_cholesky(h, damp)
    unit = np.lcm(g or 1, m or 1)
    block = effective_block(block_size, n_in, int(unit))
    n_pad = padded_size(n_in, block)
    wp, up = pad_rows(w, u, n_pad)
    if spec is not None and g is None:
        row_s = jnp.broadcast_to(s, (n_pad, n_out))
        row_z = jnp.broadcast_to(z, (n_pad, n_out))
    else:
        row_s = row_z = jnp.zeros((n_pad, n_out), dt)
    starts = jnp.arange(0, n_pad, block)
    rows = jnp.clip(n_in - starts, 0, block)
    prune_k = jnp.round(sparsity * (rows * n_out).astype(dt)).astype(jnp.int32)
    out = obs_loop(
        wp, up, row_s, row_z, prune_k,
        block=block, n_real=n_in, grid=grid, pruning=Pruning(n, m),
    )  # fmt: skip
    w_hat, mask = out.w[:n_in].astype(dt), out.mask[:n_in]
    q = None
    if spec is not None:
        if g is not None:
            scale, zero = out.group_scale[: n_in // g], out.group_zero[: n_in // g]
        else:
            scale, zero = s[None], z[None]
        q = QArray(
            values=out.values[:n_in].astype(spec.dtype),
            scale=jnp.where(ok, scale, jnp.nan).astype(jnp.float32),
            zero_point=zero.astype(jnp.int32),
            bits=spec.bits,
            axes=(1,) if spec.axes else (),
            group_size=g,
            group_axis=0 if g is not None else None,
            dtype=np.dtype(dt),
        )
    w_hat = jnp.where(ok, w_hat, jnp.nan)
    return w_hat, mask, q, ok, lam


def sparsegpt_prune_matrix(
    w: ArrayLike,
    h: ArrayLike,
    *,
    sparsity: float | None = None,
    structure: NByM | None = None,
    damp: float = 0.01,
    block_size: int = 128,
    quant_spec: QuantSpec | None = None,
) -> tuple[jax.Array, jax.Array] | tuple[jax.Array, jax.Array, QArray]:
    """Prunes ``W (n_in, n_out)`` with SparseGPT, reconstructing ``XW`` for ``H = XᵀX``.

    Input rows are visited in order in blocks of ``block_size``; the weights
    removed are chosen *adaptively* by the OBS saliency ``w² / [H⁻¹]ᵢᵢ²`` of the
    error-updated weights, and each row's error (pruning, and rounding when
    joint with quantization) is compensated on the later rows through the upper
    Cholesky factor of ``(H + λI)⁻¹``, ``λ = damp · mean(diag H)`` (retried 10x
    larger, up to 3 times, if not positive definite).

    Mask selection, as in the paper's Algorithm 1 and the reference code:
    unstructured, one selection per block over the block's ``block_size x n_out``
    weights (all output columns together), pruning exactly
    ``round(sparsity · size)`` of them (ties: the lower row-major index); N:M,
    for every ``m`` consecutive input rows, each output column keeps its ``n``
    most salient, chosen when the loop reaches the group.

    Joint quantization (``quant_spec``): every kept weight is rounded onto the
    grid as in GPTQ (per-tensor/channel scales from ``W`` before any update,
    per-group scales when the loop reaches the group); pruned weights are exact
    zeros of the grid.

    Args:
      w: float weights, rows = inputs (``x @ w``).
      h: ``(n_in, n_in)`` Hessian ``XᵀX``.
      sparsity: fraction pruned, in ``[0, 1)`` (unstructured).
      structure: ``NByM(n, m)`` along the input axis (``axis=-2``) instead.
      damp: relative dampening (> 0).
      block_size: rows per block (rounded to a multiple of ``m`` and of the group size).
      quant_spec: optional :class:`QuantSpec` for joint pruning and quantization.

    Returns:
      ``(w_pruned, mask)`` (mask False where pruned), and the :class:`QArray`
      third when ``quant_spec`` is given (``w_pruned`` is then its dequantized value).

    Raises:
      ValueError: sparsity outside ``[0, 1)``, neither or a mismatched
        sparsity/structure, ``m`` not dividing ``n_in``, bad shapes or options,
        or a Hessian not positive definite after the retries.
      TypeError: bad ``structure``/``quant_spec`` types or non-float arrays.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.prune import NByM
      >>> x = jnp.array([[1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 1.0, 3.0], [1.0, 1.0, 0.0, 1.0]])
      >>> w = jnp.array([[0.1], [2.0], [-1.0], [0.3]])
      >>> _, mask = sparsegpt_prune_matrix(w, x.T @ x, structure=NByM(1, 2))
      >>> mask[:, 0]
      Array([False,  True,  True, False], dtype=bool)
    """
    what = "sparsegpt_prune_matrix"
    w, h = check_matrix(w, h, what)
    s = check_prune_options(sparsity, structure, w.shape[0], what)
    check_options(damp, block_size, what)
    if quant_spec is not None:
        check_gptq_spec(quant_spec, w.shape[0], f"{what}: quant_spec")
    n, m = (structure.n, structure.m) if structure is not None else (0, 0)
    w_hat, mask, q, ok, lam = sparsegpt_core(
        w, h, damp, 0.0 if s is None else s, n=n, m=m, spec=quant_spec, block_size=block_size
    )
    raise_not_pd(ok, lam, what)
    return (w_hat, mask) if q is None else (w_hat, mask, q)
