"""``obs_prune``: the OBS solver pruning (and optionally quantizing) one matrix, as in SparseGPT.

The same blocked OBS loop as GPTQ (``_obs.py``), with weights removed as well
as rounded: ``jaxzip.prune.sparsegpt`` is this solver on each traced kernel.
It lives here, beside GPTQ, because joint pruning and quantization share the
loop and return a :class:`QArray`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.quant._gptq import (
    check_gptq_spec,
    check_matrix,
    check_obs_options,
    matrix_qarray,
    raise_not_pd,
)
from jaxzip.quant._obs import (
    Grid,
    Pruning,
    compute_dtype,
    fix_dead,
    group_params,
    obs_loop,
    prepare,
)
from jaxzip.quant._qarray import QArray
from jaxzip.quant._spec import QuantSpec


@functools.partial(jax.jit, static_argnames=("n", "m", "spec", "block_size"))
def _obs_prune_core(
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
    """The solver without the boundary checks: ``(w, mask, QArray or None, ok, λ)``."""
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
    wp, up, ok, lam, block = prepare(w, h, damp, block_size, int(np.lcm(g or 1, m or 1)))
    n_pad = wp.shape[0]
    if spec is not None and g is None:
        row_s = jnp.broadcast_to(s, (n_pad, n_out))
        row_z = jnp.broadcast_to(z, (n_pad, n_out))
    else:
        row_s = row_z = jnp.zeros((n_pad, n_out), dt)
    starts = jnp.arange(0, n_pad, block)
    rows = jnp.clip(n_in - starts, 0, block)
    prune_k = jnp.round(sparsity * (rows * n_out).astype(dt)).astype(jnp.int32)
    out = obs_loop(
        wp,
        up,
        row_s,
        row_z,
        prune_k,
        block=block,
        n_real=n_in,
        grid=grid,
        pruning=Pruning(n, m),
    )
    w_hat, mask = out.w[:n_in].astype(dt), out.mask[:n_in]
    q = None
    if spec is not None:
        if g is not None:
            scale, zero = out.group_scale[: n_in // g], out.group_zero[: n_in // g]
        else:
            scale, zero = s[None], z[None]
        q = matrix_qarray(out.values[:n_in], scale, zero, ok, spec, dt)
    w_hat = jnp.where(ok, w_hat, jnp.nan)
    return w_hat, mask, q, ok, lam


def obs_prune(
    w: ArrayLike,
    h: ArrayLike,
    *,
    sparsity: Any = 0.0,
    n: int = 0,
    m: int = 0,
    spec: QuantSpec | None = None,
    damp: float = 0.01,
    block_size: int = 128,
    name: str = "obs_prune",
) -> tuple[jax.Array, jax.Array, QArray | None]:
    """Prunes ``W (n_in, n_out)`` by OBS, compensating each row's error on the later rows.

    The solver behind ``jaxzip.prune.sparsegpt`` (see
    ``jaxzip.prune.sparsegpt_prune_matrix`` for the algorithm and the mask
    selection): unstructured with ``sparsity`` (``m = 0``), or N:M along the
    input rows with ``n``/``m``; with ``spec`` every kept weight is also rounded
    onto the grid, as in GPTQ. ``sparsity`` may be traced; the rest is static.

    Args:
      w: float weights, rows = inputs (``x @ w``).
      h: ``(n_in, n_in)`` Hessian ``XᵀX``.
      sparsity: fraction pruned (ignored when ``m > 0``).
      n: weights kept in each group of ``m`` consecutive input rows (N:M).
      m: the N:M group length, dividing ``n_in``; 0 for unstructured.
      spec: optional matrix-space :class:`QuantSpec` for joint quantization.
      damp: relative dampening (> 0).
      block_size: rows per block (rounded to a multiple of ``m`` and the group size).
      name: what begins the error messages (the caller, or a kernel's path).

    Returns:
      ``(w_pruned, mask, qarray or None)``; mask False where pruned.

    Raises:
      ValueError: bad shapes or options, ``m`` not dividing ``n_in``, or a
        Hessian not positive definite after the dampening retries.
      TypeError: non-float arrays or a bad ``spec``.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
      >>> w = jnp.array([[0.5, 1.0], [1.0, 0.1]])
      >>> w_hat, mask, _ = obs_prune(w, x.T @ x, sparsity=0.5)
      >>> mask
      Array([[False,  True],
             [ True, False]], dtype=bool)
    """
    w, h = check_matrix(w, h, name)
    check_obs_options(damp, block_size, name)
    if m and w.shape[0] % m:
        raise ValueError(
            f"{name}: NByM m={m} must divide the input size {w.shape[0]} (N:M groups run "
            "along the input axis)"
        )
    if spec is not None:
        check_gptq_spec(spec, w.shape[0], f"{name}: quant_spec")
    w_hat, mask, q, ok, lam = _obs_prune_core(
        w, h, damp, sparsity, n=n, m=m, spec=spec, block_size=block_size
    )
    raise_not_pd(ok, lam, name)
    return w_hat, mask, q
