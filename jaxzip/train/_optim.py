"""``make_optimizer``: the optax optimizers the pipeline's config can name."""

from __future__ import annotations

import math
from typing import Any

import optax

from jaxzip._errors import ConfigError
from jaxzip._types import Params, PyTree
from jaxzip.paths import min_ndim, select

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
"""The ``name`` values :func:`make_optimizer` accepts."""

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "warmup_cosine")
"""The ``schedule`` values :func:`make_optimizer` accepts."""


def kernel_mask(params: Params) -> PyTree:
    """True for the leaves with at least 2 dimensions (kernels), False for biases and scalars.

    The weight-decay mask of :func:`make_optimizer`; usable as optax's ``mask=``.

    Example:
      >>> import jax.numpy as jnp
      >>> kernel_mask({"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}})
      {'Dense_0': {'bias': False, 'kernel': True}}
    """
    return select(params, min_ndim(2), allow_empty=True)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"make_optimizer: {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"make_optimizer: {name} must be finite, got {value!r}")
    return float(value)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"make_optimizer: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"make_optimizer: {name} must be at least {minimum}, got {value}")
    return value


def _schedule(
    schedule: str, learning_rate: float, total_steps: int, warmup_steps: int
) -> optax.Schedule:
    if schedule == "constant":
        return optax.constant_schedule(learning_rate)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, decay_steps=total_steps)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=0.0,
    )


def make_optimizer(
    *,
    name: str,
    learning_rate: float,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> optax.GradientTransformation:
    """Builds an optax optimizer with a learning-rate schedule and kernel-only weight decay.

    Weight decay applies to kernels only (leaves with ``ndim >= 2``, see
    :func:`kernel_mask`), never to biases. For ``"sgd"`` and ``"adam"`` it is L2
    regularization, ``optax.add_decayed_weights`` before the optimizer; for
    ``"adamw"`` it is AdamW's decoupled decay (``optax.adamw(..., mask=...)``).

    Args:
      name: ``"sgd"`` (with Nesterov ``momentum``), ``"adam"`` or ``"adamw"``.
      learning_rate: the (peak) learning rate, > 0.
      schedule: ``"constant"``; ``"cosine"`` (decays to 0 over ``total_steps``);
        ``"warmup_cosine"`` (linear warm-up from 0 over ``warmup_steps``, then
        cosine decay to 0 at ``total_steps``).
      total_steps: the number of optimizer steps of the run (>= 1).
      warmup_steps: warm-up steps; only ``"warmup_cosine"`` uses them and then
        needs ``1 <= warmup_steps < total_steps``; other schedules need 0.
      weight_decay: decay coefficient, >= 0 (0 disables it).
      momentum: SGD momentum in ``[0, 1)``; ignored by ``"adam"`` and ``"adamw"``.

    Returns:
      The ``optax.GradientTransformation``.

    Raises:
      ConfigError: (a ``ValueError``) an unknown ``name``/``schedule`` or a value
        out of range; the message names the argument.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_optimizer(name="sgd", learning_rate=0.1, schedule="constant",
      ...                     total_steps=100, weight_decay=0.5, momentum=0.0)
      >>> params = {"kernel": jnp.ones((1, 1)), "bias": jnp.ones(1)}
      >>> grads = {"kernel": jnp.zeros((1, 1)), "bias": jnp.zeros(1)}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> round(float(updates["kernel"][0, 0]), 6), abs(float(updates["bias"][0]))
      (-0.05, 0.0)
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"make_optimizer: name must be one of {list(OPTIMIZERS)}, got {name!r}")
    if schedule not in SCHEDULES:
        raise ConfigError(
            f"make_optimizer: schedule must be one of {list(SCHEDULES)}, got {schedule!r}"
        )
    learning_rate = _number("learning_rate", learning_rate)
    if learning_rate <= 0:
        raise ConfigError(f"make_optimizer: learning_rate must be > 0, got {learning_rate}")
    total_steps = _int("total_steps", total_steps, 1)
    warmup_steps = _int("warmup_steps", warmup_steps, 0)
    if schedule == "warmup_cosine" and not 1 <= warmup_steps < total_steps:
        raise ConfigError(
            "make_optimizer: schedule='warmup_cosine' needs 1 <= warmup_steps < total_steps, "
            f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if schedule != "warmup_cosine" and warmup_steps != 0:
        raise ConfigError(
            f"make_optimizer: warmup_steps={warmup_steps} needs schedule='warmup_cosine', "
            f"got schedule={schedule!r} (set warmup_steps=0)"
        )
    weight_decay = _number("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ConfigError(f"make_optimizer: weight_decay must be >= 0, got {weight_decay}")
    momentum = _number("momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"make_optimizer: momentum must be in [0, 1), got {momentum}")

    lr = _schedule(schedule, learning_rate, total_steps, warmup_steps)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay, mask=kernel_mask)
    if name == "sgd":
        base = optax.sgd(lr, momentum=momentum if momentum > 0 else None, nesterov=momentum > 0)
    else:
        base = optax.adam(lr)
    if weight_decay == 0.0:
        return base
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=kernel_mask), base)
