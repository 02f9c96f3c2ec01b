"""Shared pieces of the activation-aware methods (W8A8, SmoothQuant, AWQ).

Kernel selection among traced layouts, per-kernel activation statistics
streamed through :func:`jaxzip.layout.intercept_matmuls` and integer-only row
quantization.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import layout as jz_layout
from jaxzip._types import Params, Where
from jaxzip.layout import KernelLayout, intercept_matmuls


def check_bits(bits: Any, name: str = "bits") -> int:
    """Raises ``ValueError`` unless ``bits`` is an int in 2..8 (symmetric signed grids)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"{name}: expected an int in 2..8, got {bits!r}")
    return int(bits)


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """Raises ``ValueError`` unless ``alpha`` is a number in ``[0, 1]``."""
    ok = isinstance(alpha, (int, float, np.floating, np.integer)) and not isinstance(alpha, bool)
    if not ok or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {alpha!r}")
    return float(alpha)


def select_kernels(
    params: Params, layouts: Mapping[str, KernelLayout], where: Where | None
) -> dict[str, KernelLayout]:
    """The layouts of the kernels ``where`` selects (all of ``layouts`` if None), in traced order.

    See :func:`jaxzip.layout.select_kernels` for the checks and errors.
    """
    return {p: layouts[p] for p in jz_layout.select_kernels(layouts, params, where)}


class ActStats(NamedTuple):
    """Statistics of one kernel's input activation rows over calibration batches.

    Attributes:
      count: float32, the number of rows seen.
      abs_sum: ``(n_in,)`` sum of ``|x|`` per input channel (row order of ``to_matrix``).
      absmax: ``(n_in,)`` max of ``|x|`` per input channel.
      xtx: ``(n_in, n_in)`` sum of ``xᵀx`` (zeros when not requested).
    """

    count: jax.Array
    abs_sum: jax.Array
    absmax: jax.Array
    xtx: jax.Array


def _combine(a: ActStats, b: ActStats) -> ActStats:
    return ActStats(
        a.count + b.count, a.abs_sum + b.abs_sum, jnp.maximum(a.absmax, b.absmax), a.xtx + b.xtx
    )


def collect_act_stats(
    apply_fn: Callable[..., Any],
    params: Params,
    batches: Iterable[Any],
    *,
    layouts: Mapping[str, KernelLayout],
    xtx: bool,
    caller: str,
) -> dict[str, ActStats]:
    """Streams ``apply_fn(params, batch)`` over ``batches``; per-kernel :class:`ActStats`.

    ``layouts`` must already be the selected kernels. A batch that is a tuple is
    splatted as positional arguments. Nothing but the running sums is stored.
    """
    selected = set(layouts)

    def hook(path: str, x: Any, xr: Any, w: Any, compute: Any) -> tuple[Any, ActStats]:
        g = xr.astype(jnp.float32)
        r, n = jnp.abs(g), g.shape[1]
        dims = (((0,), (0,)), ((), ()))
        m = jax.lax.dot_general(g, g, dims, precision="highest") if xtx else jnp.zeros((n, n))
        stats = ActStats(jnp.float32(r.shape[0]), r.sum(0), r.max(0), m)
        return compute(x, w), stats

    where = lambda path, leaf: path in selected  # noqa: E731
    run = jax.jit(intercept_matmuls(apply_fn, dict(layouts), hook, where=where, combine=_combine))
    total: dict[str, ActStats] | None = None
    for batch in batches:
        args = batch if isinstance(batch, tuple) else (batch,)
        _, aux = run(params, *args)
        total = aux if total is None else {p: _combine(total[p], aux[p]) for p in aux}
    if total is None:
        raise ValueError(f"{caller}: calib_batches is empty; expected at least one batch")
    return total


def quantize_rows(xr: jax.Array, scale: jax.Array, qmax: int) -> jax.Array:
    """``clip(round(xr / scale), -qmax, qmax)`` as int8; ``scale`` broadcasts against ``xr``."""
    return jnp.clip(jnp.round(xr.astype(jnp.float32) / scale), -qmax, qmax).astype(jnp.int8)


def absmax_scale(absmax: jax.Array, qmax: int) -> jax.Array:
    """Symmetric scale ``absmax / qmax`` (1 where the range is 0, so zeros stay zeros)."""
    return jnp.where(absmax > 0, absmax / qmax, 1.0).astype(jnp.float32)
