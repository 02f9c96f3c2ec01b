"""``TrainState``: the explicit state the train step advances."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxzip._types import Params, PyTree


class TrainState(NamedTuple):
    """Everything a train step reads and returns: a plain pytree, checkpointable as is.

    Attributes:
      step: number of optimizer steps taken (int32 scalar array).
      params: the parameter pytree.
      opt_state: the optimizer state of ``tx``.
    """

    step: jax.Array
    params: Params
    opt_state: PyTree


def init_state(params: Params, tx: optax.GradientTransformation) -> TrainState:
    """Starts training: step 0, a copy of ``params`` and ``tx.init`` of them.

    The params are copied, because the jitted step from
    :func:`jaxzip.train.make_train_step` donates (consumes) its state's buffers:
    the caller's ``params`` stay valid.

    Args:
      params: the parameter pytree (arrays; numpy arrays are moved to the device).
      tx: the optax optimizer.

    Returns:
      ``TrainState(step=int32 0, params=copy of params, opt_state=tx.init(params))``.

    Raises:
      TypeError: ``tx`` is not an optax ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> state = init_state({"w": jnp.ones(2)}, optax.sgd(0.1))
      >>> int(state.step), state.step.dtype
      (0, dtype('int32'))
    """
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(f"init_state: tx must be an optax GradientTransformation, got {tx!r}")
    params = jax.tree.map(lambda leaf: jnp.array(leaf, copy=True), params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
