"""GPTQ (Frantar et al. 2022) on one matrix ``W (n_in, n_out)`` with its Hessian ``H = XᵀX``."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.quant._obs import Grid, compute_dtype, fix_dead, group_params, obs_loop, prepare
from jaxzip.quant._qarray import QArray
from jaxzip.quant._spec import QuantSpec, check_spec


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_matrix(w: Any, h: Any, what: str) -> tuple[jax.Array, jax.Array]:
    """Validates ``w (n_in, n_out)`` and ``h (n_in, n_in)`` float arrays; returns them as arrays."""
    w, h = jnp.asarray(w), jnp.asarray(h)
    for name, a in (("w", w), ("h", h)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{what}: {name} must be a float array, got dtype {a.dtype}")
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"{what}: w must be a non-empty (n_in, n_out) matrix, got shape {w.shape}")
    if h.shape != (w.shape[0], w.shape[0]):
        raise ValueError(
            f"{what}: h must be (n_in, n_in) = {(w.shape[0],) * 2} for w of shape {w.shape}, "
            f"got {h.shape}"
        )
    return w, h


def check_obs_options(damp: Any, block_size: Any, what: str) -> None:
    """Raises ``ValueError`` unless ``damp`` is a positive finite number and ``block_size``
    a positive int: the options of the OBS solvers (:func:`gptq`, :func:`obs_prune`).

    Example:
      >>> check_obs_options(0.01, 128, "gptq")
    """
    if not isinstance(damp, jax.core.Tracer):
        d = np.asarray(damp)
        if d.ndim != 0 or not np.issubdtype(d.dtype, np.number) or not 0 < float(d) < np.inf:
            raise ValueError(f"{what}: damp must be a positive finite number, got {damp!r}")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"{what}: block_size must be a positive int, got {block_size!r}")


def check_gptq_spec(spec: Any, n_in: int, what: str) -> None:
    """The spec GPTQ can run in the matrix space: 2..8 bits, nearest, per-tensor/channel/group."""
    check_spec(spec, f"{what}: spec")
    if not 2 <= spec.bits <= 8:
        raise ValueError(f"{what}: GPTQ supports 2..8 bits, got spec.bits={spec.bits}")
    if spec.rounding != "nearest":
        raise ValueError(f"{what}: GPTQ rounds to nearest; got spec.rounding={spec.rounding!r}")
    if spec.axes not in ((), (1,), (-1,)):
        raise ValueError(
            f"{what}: spec.axes must be () (per-tensor) or (-1,) (per output channel) for "
            f"an (n_in, n_out) matrix, got {spec.axes}"
        )
    g = spec.group_size
    if g is not None:
        if spec.axes == ():
            raise ValueError(f"{what}: per-group GPTQ needs spec.axes=(-1,), got ()")
        if spec.group_axis not in (0, -2):
            raise ValueError(
                f"{what}: GPTQ groups run along the input axis (group_axis=-2), "
                f"got group_axis={spec.group_axis}"
            )
        if g > n_in or n_in % g:
            raise ValueError(
                f"{what}: group_size={g} must divide the input size {n_in}; sizes that do: "
                f"{_divisors(n_in)}"
            )


def _static_params(w: jax.Array, spec: QuantSpec, grid: Grid) -> tuple[jax.Array, jax.Array]:
    """Scale and zero point in the QArray's scale shape, computed once from ``w``."""
    g = spec.group_size
    if g is not None:
        groups = w.reshape(w.shape[0] // g, g, w.shape[1])
        return jax.vmap(lambda x: group_params(x, grid))(groups)
    if spec.axes:
        s, z = group_params(w, grid)
        return s[None], z[None]
    s, z = group_params(w.reshape(-1, 1), grid)
    return s[None], z[None]


@functools.partial(jax.jit, static_argnames=("spec", "block_size", "act_order"))
def gptq_core(
    w: jax.Array,
    h: jax.Array,
    damp: jax.Array,
    *,
    spec: QuantSpec,
    block_size: int,
    act_order: bool,
    keep: jax.Array | None = None,
) -> tuple[QArray, jax.Array, jax.Array]:
    """GPTQ without the boundary checks; returns ``(QArray, ok, λ)`` (see ``_obs.inverse_cholesky``).

    ``keep``: an ``(n_in, n_out)`` keep-mask whose dropped weights the result holds at zero.
    """
    n_in, n_out = w.shape
    dt = compute_dtype(w.dtype)
    w, h = w.astype(dt), h.astype(dt)
    g = spec.group_size
    dynamic = g is not None and not act_order
    grid = Grid(spec.qmin, spec.qmax, spec.symmetric, g if dynamic else 0)
    # Per-tensor and per-channel scales come from the weights before any update (and
    # before dead inputs are zeroed), as in the reference implementation.
    scale, zero = _static_params(w, spec, grid) if g is None else (None, None)
    w, h = fix_dead(w, h)
    if g is not None and act_order:
        scale, zero = _static_params(w, spec, grid)  # static groups: from W before updates
    perm = jnp.argsort(-jnp.diag(h), stable=True) if act_order else jnp.arange(n_in)
    w, h = w[perm], h[perm][:, perm]
    wp, up, ok, lam, block = prepare(w, h, damp, block_size, g or 1)
    n_pad = wp.shape[0]
    if dynamic:
        row_s = row_z = jnp.zeros((n_pad, n_out), dt)
    else:
        gidx = jnp.zeros(n_in, jnp.int32) if g is None else (jnp.arange(n_in) // g)[perm]
        extra = ((0, n_pad - n_in), (0, 0))
        row_s = jnp.pad(
            jnp.broadcast_to(scale, (scale.shape[0], n_out))[gidx], extra, constant_values=1
        )
        row_z = jnp.pad(jnp.broadcast_to(zero, (zero.shape[0], n_out))[gidx], extra)
    if keep is not None:  # in the visiting order; padding rows are kept (they are zero)
        keep = jnp.pad(keep[perm], ((0, n_pad - n_in), (0, 0)), constant_values=True)
    out = obs_loop(
        wp,
        up,
        row_s,
        row_z,
        jnp.zeros(n_pad // block, jnp.int32),
        block=block,
        n_real=n_in,
        grid=grid,
        pruning=None,
        keep=keep,
    )
    inv = jnp.argsort(perm)
    values = out.values[:n_in][inv]
    if dynamic:
        scale, zero = out.group_scale[: n_in // g], out.group_zero[: n_in // g]
    return matrix_qarray(values, scale, zero, ok, spec, dt), ok, lam


def matrix_qarray(
    values: jax.Array, scale: jax.Array, zero: jax.Array, ok: jax.Array, spec: QuantSpec, dtype: Any
) -> QArray:
    """The OBS loop's integers and scales as the ``(n_in, n_out)`` :class:`QArray` of ``spec``.

    Scales are NaN when ``ok`` is False (the Hessian stayed singular under ``jit``).
    """
    g = spec.group_size
    return QArray(
        values=values.astype(spec.dtype),
        scale=jnp.where(ok, scale, jnp.nan).astype(jnp.float32),
        zero_point=zero.astype(jnp.int32),
        bits=spec.bits,
        axes=(1,) if spec.axes else (),
        group_size=g,
        group_axis=0 if g is not None else None,
        dtype=np.dtype(dtype),
    )


def raise_not_pd(ok: Any, lam: Any, what: str) -> None:
    """Raises ``ValueError`` when a concrete ``ok`` flag says the Hessian stayed singular."""
    if isinstance(ok, jax.core.Tracer) or bool(ok):
        return
    raise ValueError(
        f"{what}: the Hessian is not positive definite even with dampening λ={float(lam):.3g} "
        "(damp, then 10x, 100x and 1000x larger, times mean(diag H)); check the calibration "
        "statistics (NaN/Inf?) or pass a larger damp"
    )


def gptq_quantize_matrix(
    w: ArrayLike,
    h: ArrayLike,
    spec: QuantSpec,
    *,
    damp: float = 0.01,
    block_size: int = 128,
    act_order: bool = False,
    keep: ArrayLike | None = None,
) -> QArray:
    """Quantizes ``W (n_in, n_out)`` with GPTQ, minimizing ``‖XW − XŴ‖²`` for ``H = XᵀX``.

    Input rows are quantized in order (by descending ``diag H`` with
    ``act_order``); each row's rounding error is compensated on the rows not yet
    quantized through the upper Cholesky factor of ``(H + λI)⁻¹``, with
    ``λ = damp · mean(diag H)``. Rows are processed in blocks of ``block_size``
    with lazy batched updates (a multiple of the group size, padded at the end).
    Inputs never active (``H[i, i] == 0``) get their row zeroed. If ``H + λI``
    is not positive definite, ``λ`` is retried 10x larger, up to 3 times.

    Granularity, from ``spec``: ``axes=()`` one scale for the matrix;
    ``axes=(-1,)`` one scale per output column, from the weights before any
    update; ``group_size=g`` one scale per output column and per group of ``g``
    consecutive input rows, computed when the loop reaches the group's first row
    from the error-updated weights (the column-by-column algorithm; the
    reference blocked code reads a stale block-start copy for groups that start
    inside a block). With ``act_order`` and groups, scales are *static groups*
    (computed from ``W`` before any update, so the groups stay contiguous input
    rows that a :class:`QArray` can hold); the rows are still visited by
    descending ``diag H``.

    With ``keep`` (a pruned model's keep-mask), the weights it drops are set to zero
    as the loop reaches them, their error compensated like a rounding error (SparseGPT's
    update with the mask given): the result holds exactly those zeros, and the kept
    weights absorb the pruning error of the rows not yet reached.

    Runs under ``jax.jit`` (``spec``, ``block_size`` and ``act_order`` static).

    Args:
      w: float weights, rows = inputs (``x @ w``).
      h: ``(n_in, n_in)`` Hessian ``XᵀX`` summed over calibration tokens.
      spec: bits 2..8, symmetric or not, signed or not; ``axes`` ``()`` or
        ``(-1,)``; ``group_size`` dividing ``n_in``; ``rounding="nearest"``.
      damp: relative dampening (> 0).
      block_size: rows per lazy-update block.
      act_order: visit rows by descending ``diag H``.
      keep: optional ``(n_in, n_out)`` bool keep-mask; the weights it drops come out 0.

    Returns:
      A :class:`QArray` of shape ``(n_in, n_out)``: ``axes=(1,)`` (per channel or
      group), ``group_axis=0`` with groups; under ``jit`` a Hessian that stays
      singular gives a NaN scale.

    Raises:
      ValueError: bad shapes, bits outside 2..8, a group size that does not divide
        ``n_in`` (the message lists those that do), a bad ``damp``/``block_size``,
        or a Hessian not positive definite after the retries.
      TypeError: ``spec`` is not a :class:`QuantSpec` or the arrays are not float.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.5], [0.0, 1.0], [1.0, 1.0]])
      >>> w = jnp.array([[0.3, -0.6], [0.9, 0.1]])
      >>> q = gptq_quantize_matrix(w, x.T @ x, QuantSpec(bits=2, axes=(-1,)))
      >>> q.values
      Array([[ 0, -1],
             [ 1,  0]], dtype=int8)
    """
    what = "gptq_quantize_matrix"
    w, h = check_matrix(w, h, what)
    check_gptq_spec(spec, w.shape[0], what)
    check_obs_options(damp, block_size, what)
    if not isinstance(act_order, bool):
        raise TypeError(f"{what}: act_order must be a bool, got {act_order!r}")
    keep = check_keep(keep, w.shape, what)
    q, ok, lam = gptq_core(
        w, h, damp, spec=spec, block_size=block_size, act_order=act_order, keep=keep
    )
    raise_not_pd(ok, lam, what)
    return q


def check_keep(keep: Any, shape: tuple[int, ...], what: str) -> jax.Array | None:
    """``keep`` as a bool array of ``shape`` (None stays None); ``ValueError``/``TypeError``
    naming ``what`` otherwise."""
    if keep is None:
        return None
    keep = jnp.asarray(keep)
    if keep.dtype != jnp.bool_:
        raise TypeError(f"{what}: keep must be a bool mask, got dtype {keep.dtype}")
    if keep.shape != tuple(shape):
        raise ValueError(
            f"{what}: keep must have the weights' shape {tuple(shape)}, got {keep.shape}"
        )
    return keep
