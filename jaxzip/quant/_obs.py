"""The blocked OBS update loop shared by GPTQ and SparseGPT, in the ``(n_in, n_out)`` space.

Both methods walk the input rows of ``W`` in order; each row is rounded (GPTQ),
masked (SparseGPT) or both, and its error is spread over the rows not yet
processed through the upper Cholesky factor ``U`` of ``H⁻¹`` (``H⁻¹ = Uᵀ U``):
``W[j] -= U[i, j] * (W[i] - q) / U[i, i]`` for ``j > i``. Inside a block of
``block`` rows the update is immediate; the rows after the block receive the
block's errors in one matrix product (the "lazy batched" update of GPTQ).
Everything is ``lax.fori_loop``: the traced program has one row step and one
block step, whatever the matrix size.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxzip.quant._calibrate import scale_zero_point

MAX_DAMP_TRIES = 4
"""Dampening tries: ``damp``, then 10x larger each time (so up to ``1000 * damp``)."""


class Grid(NamedTuple):
    """A static quantization grid for the loop: integer range and symmetry.

    ``group`` is the dynamic group size (scales computed when the loop reaches a
    group's first row), or 0 when the per-row scales are given up front.
    """

    qmin: int
    qmax: int
    symmetric: bool
    group: int


class Pruning(NamedTuple):
    """A static pruning plan: ``n``/``m`` for N:M along the rows, ``m == 0`` for unstructured."""

    n: int
    m: int


def compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32, or float64 when the input already is (with x64 enabled)."""
    return jnp.promote_types(dtype, jnp.float32)


def effective_block(block_size: int, n_in: int, unit: int) -> int:
    """The block length: a multiple of ``unit`` (group size, M), at most ``n_in`` rounded up."""
    b = max(unit, (block_size // unit) * unit)
    return min(b, -(-n_in // unit) * unit)


def fix_dead(w: jax.Array, h: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inputs never active (``H[i, i] == 0``): their row of ``W`` is zeroed and ``H[i, i] = 1``."""
    dead = jnp.diag(h) == 0
    h = h + jnp.diag(dead.astype(h.dtype))
    return jnp.where(dead[:, None], jnp.zeros_like(w), w), h


def inverse_cholesky(h: jax.Array, damp: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Upper ``U`` with ``(H + λI)⁻¹ = Uᵀ U``, ``λ = damp · mean(diag H)``, retried 10x larger.

    Returns:
      ``(U, ok, λ)``: ``ok`` is False when ``H`` was not positive definite even at
      the last try (``U`` then holds NaN); ``λ`` is the dampening used.
    """
    n = h.shape[0]
    eye = jnp.eye(n, dtype=h.dtype)
    base = jnp.asarray(damp, h.dtype) * jnp.mean(jnp.diag(h))

    def attempt(state):
        k, _, _, _ = state
        lam = base * jnp.asarray(10.0, h.dtype) ** k
        low = jnp.linalg.cholesky(h + lam * eye)
        hinv = jax.scipy.linalg.cho_solve((low, True), eye)
        u = jnp.linalg.cholesky(hinv).T
        return k + 1, u, jnp.all(jnp.isfinite(u)), lam

    init = (jnp.int32(0), jnp.full((n, n), jnp.nan, h.dtype), jnp.asarray(False), base)
    _, u, ok, lam = lax.while_loop(lambda s: ~s[2] & (s[0] < MAX_DAMP_TRIES), attempt, init)
    return u, ok, lam


def group_params(x: jax.Array, grid: Grid) -> tuple[jax.Array, jax.Array]:
    """Scale and zero point of each column of ``x`` (min/max range, widened to include 0)."""
    return scale_zero_point(
        jnp.min(x, axis=0), jnp.max(x, axis=0), grid.qmin, grid.qmax, grid.symmetric
    )


def fake_row(x: jax.Array, s: jax.Array, z: jax.Array, grid: Grid) -> tuple[jax.Array, jax.Array]:
    """``(integer values, dequantized)`` by round-to-nearest onto the grid (float arrays)."""
    v = jnp.clip(jnp.round(x / s) + z, grid.qmin, grid.qmax)
    return v, (v - z) * s


class LoopOut(NamedTuple):
    """What :func:`obs_loop` returns (all in the padded row space)."""

    w: jax.Array  # the final weights: pruned and/or dequantized
    values: jax.Array  # integer values (float dtype); zeros without a grid
    mask: jax.Array  # keep-mask (all True without pruning)
    group_scale: jax.Array  # (n_pad // group, n_out) for dynamic groups, else (1, n_out)
    group_zero: jax.Array


def _nbym_rows(scores: jax.Array, n: int) -> jax.Array:
    """Keep the ``n`` largest of each column of ``scores`` (ties: the lower row)."""
    order = jnp.argsort(-scores, axis=0, stable=True)
    return jnp.argsort(order, axis=0, stable=True) < n


def _lowest(scores: jax.Array, k: jax.Array) -> jax.Array:
    """Bool array marking exactly the ``k`` lowest entries (ties: the lower row-major index)."""
    flat = scores.ravel()
    order = jnp.argsort(flat, stable=True)
    marked = jnp.zeros(flat.shape, bool).at[order].set(jnp.arange(flat.size) < k)
    return marked.reshape(scores.shape)


@functools.partial(jax.jit, static_argnames=("block", "n_real", "grid", "pruning"))
def obs_loop(
    w: jax.Array,
    u: jax.Array,
    row_scale: jax.Array,
    row_zero: jax.Array,
    prune_k: jax.Array,
    *,
    block: int,
    n_real: int,
    grid: Grid | None,
    pruning: Pruning | None,
    keep: jax.Array | None = None,
) -> LoopOut:
    """Runs the blocked OBS loop over the rows of ``w`` (padded to a multiple of ``block``).

    Args:
      w: ``(n_pad, n_out)`` weights, dead rows zeroed, padded with zero rows.
      u: ``(n_pad, n_pad)`` upper Cholesky factor of ``H⁻¹`` (identity on padding).
      row_scale: ``(n_pad, n_out)`` scales per row (static grids), ignored otherwise.
      row_zero: ``(n_pad, n_out)`` zero points per row, likewise.
      prune_k: ``(n_pad // block,)`` int32 weights to prune per block (unstructured).
      block: the block length (a multiple of the group size and of M).
      n_real: the number of real rows (the rest are padding, never pruned).
      grid: the quantization grid, or None (no quantization).
      pruning: the pruning plan, or None (no pruning).
      keep: ``(n_pad, n_out)`` a given keep-mask (with ``pruning=None``): the weights it
        drops are set to zero as the loop reaches them and their error is spread like a
        rounding error, so the result holds exactly those zeros.
    """
    n_pad, n_out = w.shape
    g = grid.group if grid is not None else 0
    n_groups = n_pad // g if g else 1
    dt = w.dtype
    carry = (
        w,
        jnp.zeros_like(w),
        jnp.ones(w.shape, bool),
        jnp.ones((n_groups, n_out), dt),
        jnp.zeros((n_groups, n_out), dt),
    )

    def block_step(b, carry):
        big_w, values, mask, gs, gz = carry
        i1 = b * block
        w1 = lax.dynamic_slice(big_w, (i1, 0), (block, n_out))
        u1 = lax.dynamic_slice(u, (i1, i1), (block, block))
        d = jnp.diag(u1)
        if keep is not None:
            m1 = lax.dynamic_slice(keep, (i1, 0), (block, n_out))
        elif pruning is not None and pruning.m == 0:
            scores = jnp.square(w1) / jnp.square(d)[:, None]
            real = (i1 + jnp.arange(block)) < n_real
            scores = jnp.where(real[:, None], scores, jnp.inf)
            m1 = ~_lowest(scores, prune_k[b])
        else:
            m1 = jnp.ones((block, n_out), bool)
        zeros = jnp.zeros((block, n_out), dt)
        init = (w1, zeros, zeros, zeros, m1, gs, gz, jnp.ones(n_out, dt), jnp.zeros(n_out, dt))

        def row_step(i, c):
            w1, q1, v1, e1, m1, gs, gz, cs, cz = c
            row = w1[i]
            if pruning is not None and pruning.m:
                nm = pruning.m
                seg = lax.dynamic_slice(w1, (i, 0), (nm, n_out))
                dseg = lax.dynamic_slice(d, (i,), (nm,))
                keep = _nbym_rows(jnp.square(seg) / jnp.square(dseg)[:, None], pruning.n)
                m1 = jnp.where(i % nm == 0, lax.dynamic_update_slice(m1, keep, (i, 0)), m1)
            q = jnp.where(m1[i], row, jnp.zeros_like(row))
            if grid is not None:
                if g:
                    s_new, z_new = group_params(lax.dynamic_slice(w1, (i, 0), (g, n_out)), grid)
                    start = (i1 + i) % g == 0
                    cs, cz = jnp.where(start, s_new, cs), jnp.where(start, z_new, cz)
                    gi = (i1 + i) // g
                    gs = jnp.where(start, gs.at[gi].set(s_new), gs)
                    gz = jnp.where(start, gz.at[gi].set(z_new), gz)
                    s, z = cs, cz
                else:
                    s, z = row_scale[i1 + i], row_zero[i1 + i]
                v, q = fake_row(q, s, z, grid)
                v1 = v1.at[i].set(v)
            err = (row - q) / d[i]
            w1 = w1 - u1[i][:, None] * err[None, :]
            return w1, q1.at[i].set(q), v1, e1.at[i].set(err), m1, gs, gz, cs, cz

        _, q1, v1, e1, m1, gs, gz, _, _ = lax.fori_loop(0, block, row_step, init)
        rows_u = lax.dynamic_slice(u, (i1, 0), (block, n_pad))
        big_w = big_w - rows_u.T @ e1
        big_w = lax.dynamic_update_slice(big_w, q1, (i1, 0))
        values = lax.dynamic_update_slice(values, v1, (i1, 0))
        mask = lax.dynamic_update_slice(mask, m1, (i1, 0))
        return big_w, values, mask, gs, gz

    out = lax.fori_loop(0, n_pad // block, block_step, carry)
    return LoopOut(*out)


def pad_rows(w: jax.Array, u: jax.Array, n_pad: int) -> tuple[jax.Array, jax.Array]:
    """Pads ``w`` with zero rows and ``u`` with an identity block up to ``n_pad`` rows."""
    extra = n_pad - w.shape[0]
    if extra == 0:
        return w, u
    w = jnp.pad(w, ((0, extra), (0, 0)))
    u = jnp.pad(u, ((0, extra), (0, extra)))
    idx = jnp.arange(w.shape[0] - extra, n_pad)
    return w, u.at[idx, idx].set(1.0)


def padded_size(n: int, block: int) -> int:
    """``n`` rounded up to a multiple of ``block``."""
    return math.ceil(n / block) * block


def prepare(
    w: jax.Array, h: jax.Array, damp: jax.Array, block_size: int, unit: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, int]:
    """The loop's inputs: ``(W padded, U padded, ok, λ, block)``.

    ``U`` is :func:`inverse_cholesky`'s factor, ``block`` the
    :func:`effective_block` for ``unit``, and both matrices are padded to whole
    blocks (:func:`pad_rows`).
    """
    u, ok, lam = inverse_cholesky(h, damp)
    block = effective_block(block_size, w.shape[0], unit)
    wp, up = pad_rows(w, u, padded_size(w.shape[0], block))
    return wp, up, ok, lam, block
