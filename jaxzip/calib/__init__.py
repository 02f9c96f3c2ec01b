"""Calibration as a pure function: per-kernel activation statistics from calibration batches.

:func:`collect_stats` streams batches through the user's apply function and
returns, for every kernel (a param leaf consumed by a matmul or conv, see
:func:`jaxzip.layout.trace_layouts`), the :class:`KernelStats` that GPTQ,
SparseGPT, Wanda, AWQ, SmoothQuant and W8A8 need: ``XᵀX``, ``Σx²`` and
``max|x|`` per input, in :func:`jaxzip.layout.to_matrix` row order.
:func:`run_oneshot` is the driver of the one-shot methods (GPTQ, SparseGPT,
Wanda): kernels in traced order, each group calibrated on the params that
already hold the earlier kernels' results; the methods pass its options on as
:class:`OneShotOptions`.

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> import jaxzip.calib, jaxzip.layout
  >>> model = nn.Dense(2)
  >>> params = model.init(jax.random.key(0), jnp.ones((1, 3)))
  >>> batches = [jnp.ones((4, 3)), 2 * jnp.ones((4, 3))]
  >>> lay = jaxzip.layout.trace_layouts(model.apply, params, batches[0])
  >>> stats = jaxzip.calib.collect_stats(model.apply, params, batches, layouts=lay)
  >>> stats["params/kernel"].sq_sum.tolist()
  [20.0, 20.0, 20.0]
"""

from jaxzip.calib._oneshot import OneShotOptions, Process, Select, Stack, run_oneshot
from jaxzip.calib._stats import (
    KernelStats,
    add_stats,
    collect_stats,
    init_stats,
    make_stats_step,
    row_stats,
)

__all__ = [
    "KernelStats",
    "OneShotOptions",
    "Process",
    "Select",
    "Stack",
    "add_stats",
    "collect_stats",
    "init_stats",
    "make_stats_step",
    "row_stats",
    "run_oneshot",
]
