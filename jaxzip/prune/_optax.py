"""Optax transforms that keep pruned weights exactly zero, with no call after the step.

Both transforms end an ``optax.chain`` and need ``params`` in ``update``. For a
pruned weight ``w`` they emit the update ``-w``, so ``optax.apply_updates``
yields ``w + (-w)``, which is exactly ``0.0`` in IEEE arithmetic; pruned
weights that are already zero get ``-0.0`` and stay ``0.0``. Momentum, Adam
moments and weight decay therefore never revive a pruned weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxzip._types import Mask, Params, PyTree, Where
from jaxzip.paths._trees import check_mask, first_structure_difference
from jaxzip.prune._allocation import Allocation, Explicit
from jaxzip.prune._masks import KERNELS, UNIFORM, UNSTRUCTURED, make_mask
from jaxzip.prune._scores import magnitude_scores
from jaxzip.prune._structures import NByM, Structure


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name}: update(updates, state, params) needs params (the masked update is "
            "-params for pruned weights); got params=None. Call tx.update(grads, state, params)."
        )


def _masked_updates(updates: PyTree, mask: Mask, params: Params) -> PyTree:
    diff = first_structure_difference(params, updates)
    if diff is not None:
        raise ValueError(f"updates: expected the params' structure and shapes; {diff}")
    return jax.tree.map(lambda u, m, p: jnp.where(m, u, -p.astype(u.dtype)), updates, mask, params)


class KeepMaskedState(NamedTuple):
    """State of :func:`keep_masked`: the fixed keep-mask."""

    mask: Mask


def keep_masked(mask: Mask) -> optax.GradientTransformation:
    """Keeps the weights that ``mask`` prunes exactly zero after every optimizer step.

    Put it last in a chain: ``optax.chain(optax.adamw(1e-3), keep_masked(mask))``.
    The mask is copied into the state at ``init`` (so a jitted step takes it as an
    argument rather than baking it in as a constant).

    Args:
      mask: a bool tree with the params' structure (False = pruned).

    Returns:
      An ``optax.GradientTransformation``; ``update`` raises ``ValueError`` when
      ``params`` is None, and ``init`` when the mask does not fit the params.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> tx = optax.chain(optax.sgd(0.1), keep_masked({"w": jnp.array([True, False])}))
      >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)
      {'w': Array([0.9, 0. ], dtype=float32)}
    """

    def init(params: Params) -> KeepMaskedState:
        check_mask(params, mask)
        # A real copy: a train step that donates its state must not delete the caller's mask.
        return KeepMaskedState(
            mask=jax.tree.map(lambda m: jnp.array(m, dtype=bool, copy=True), mask)
        )

    def update(updates: PyTree, state: KeepMaskedState, params: Params | None = None):
        _need_params(params, "keep_masked")
        return _masked_updates(updates, state.mask, params), state

    return optax.GradientTransformation(init, update)


class GradualPruningState(NamedTuple):
    """State of :func:`gradual_pruning`.

    Attributes:
      count: int32 number of updates done so far (the schedule's step).
      mask: the current keep-mask (bool tree with the params' structure).
      sparsity: float32 target sparsity the mask was last computed for.
    """

    count: jax.Array
    mask: Mask
    sparsity: jax.Array


def gradual_pruning(
    schedule: Callable[[jax.Array], jax.Array],
    *,
    update_every: int,
    where: Where = KERNELS,
    structure: Structure = UNSTRUCTURED,
    allocation: Allocation = UNIFORM,
    scores: Callable[[Params], PyTree] = magnitude_scores,
) -> optax.GradientTransformation:
    """Prunes gradually during training, inside the jitted step (no host round trip).

    At every update whose ``count`` is a multiple of ``update_every``, the mask is
    recomputed with :func:`make_mask` from ``scores(params)`` (the current
    weights) at sparsity ``schedule(count)``; in between the mask is kept. The
    emitted updates are ``updates`` where kept and ``-params`` where pruned, so
    after ``optax.apply_updates`` the params are already masked. The recompute
    runs under ``lax.cond`` and does not depend on ``updates``, so XLA keeps the
    optimizer's update computation fused (scoring ``params + updates`` instead
    measured 1.15-1.29x the dense step's time; this form ~1.0x, see
    ``experiments/benchmarks/prune_overhead.py``).

    Args:
      schedule: ``step -> sparsity``, e.g. :func:`polynomial_sparsity`.
      update_every: mask recompute period in steps, ``>= 1``.
      where: the leaves to prune (default: leaves with at least 2 dimensions).
      structure: see :func:`make_mask` (not :class:`NByM`, whose sparsity is fixed).
      allocation: :class:`Uniform`, :class:`Global` or :class:`ERK`.
      scores: ``params -> score tree``; default :func:`magnitude_scores`.

    Returns:
      An ``optax.GradientTransformation`` with :class:`GradualPruningState`.

    Raises:
      ValueError: bad ``update_every``, a ``where`` selecting nothing (at
        ``init``), or ``params=None`` in ``update``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([[1.0, -4.0], [3.0, 2.0]])}
      >>> tx = optax.chain(optax.sgd(0.0), gradual_pruning(lambda t: 0.5, update_every=1))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
      >>> optax.apply_updates(params, updates)["w"]
      Array([[ 0., -4.],
             [ 3.,  0.]], dtype=float32)
    """
    if not isinstance(update_every, int) or isinstance(update_every, bool) or update_every < 1:
        raise ValueError(f"update_every: expected an int >= 1, got {update_every!r}")
    if not callable(schedule):
        raise TypeError(f"schedule: expected a callable step -> sparsity, got {schedule!r}")
    if isinstance(structure, NByM) or isinstance(allocation, Explicit):
        raise ValueError(
            "gradual_pruning: NByM structure and Explicit allocation fix their own sparsity; "
            "use magnitude_mask(...) with keep_masked(mask) instead, got "
            f"structure={structure!r}, allocation={allocation!r}"
        )
    options = {"where": where, "structure": structure, "allocation": allocation}

    def init(params: Params) -> GradualPruningState:
        s0 = jnp.asarray(schedule(jnp.int32(0)), jnp.float32)
        make_mask(scores(params), sparsity=jnp.float32(0), **options)  # validates early
        mask = jax.tree.map(lambda p: jnp.ones(jnp.shape(p), bool), params)
        return GradualPruningState(count=jnp.int32(0), mask=mask, sparsity=jnp.zeros_like(s0))

    def update(updates: PyTree, state: GradualPruningState, params: Params | None = None):
        _need_params(params, "gradual_pruning")
        count = jnp.asarray(state.count, jnp.int32)
        target = jnp.asarray(schedule(count), jnp.float32)

        def recompute(_):
            return make_mask(scores(params), sparsity=target, **options), target

        def keep(_):
            return state.mask, state.sparsity

        mask, sparsity = lax.cond(count % update_every == 0, recompute, keep, None)
        new_updates = _masked_updates(updates, mask, params)
        return new_updates, GradualPruningState(count=count + 1, mask=mask, sparsity=sparsity)

    return optax.GradientTransformation(init, update)
