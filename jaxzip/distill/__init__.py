"""Knowledge distillation: logit and feature losses, and jitted teacher-student train steps.

A loss is built by a factory and called as ``loss(student_out, teacher_out,
labels, *, mask=None) -> (per_example, terms)``; model outputs are logits or
mappings ``{"logits": ..., <feature>: ...}`` for the feature losses.
:func:`make_train_step` turns a loss into one jitted step with the teacher's
params passed in, and :func:`fit` runs it for a number of epochs (as
:func:`jaxzip.train.fit` does for labels); :func:`make_vmapped_train_step` trains K students at once and
``mesh=`` makes the step data-parallel.

Example:
  >>> import jax, jax.numpy as jnp, optax
  >>> import jaxzip as jz
  >>> from jaxzip import distill
  >>> linear = lambda params, x, *, train, key: x @ params
  >>> tx = optax.adam(0.1)
  >>> step = distill.make_train_step(linear, linear, tx,
  ...                                loss=distill.kd_loss(temperature=4.0, alpha=0.9))
  >>> state = jz.train.init_state(jnp.zeros((2, 2)), tx)
  >>> batch = {"x": jnp.eye(2), "y": jnp.array([0, 1])}
  >>> for i in range(20):
  ...     state, metrics = step(state, 2.0 * jnp.eye(2), batch, jax.random.key(i))
  >>> float(metrics["accuracy"])
  1.0
"""

from jaxzip.distill._combine import combine_losses
from jaxzip.distill._common import Loss, masked_mean
from jaxzip.distill._features import (
    apply_regressor,
    attention_loss,
    attention_map,
    hint_loss,
    init_regressor,
)
from jaxzip.distill._fit import fit
from jaxzip.distill._losses import (
    dkd_loss,
    kd_loss,
    kl_divergence,
    soft_cross_entropy,
    soft_cross_entropy_loss,
)
from jaxzip.distill._shard import replicate, shard_batch
from jaxzip.distill._step import make_train_step
from jaxzip.distill._vmap import make_vmapped_train_step, stack_states, unstack_states

__all__ = [
    "Loss",
    "apply_regressor",
    "attention_loss",
    "attention_map",
    "combine_losses",
    "dkd_loss",
    "fit",
    "hint_loss",
    "init_regressor",
    "kd_loss",
    "kl_divergence",
    "make_train_step",
    "make_vmapped_train_step",
    "masked_mean",
    "replicate",
    "shard_batch",
    "soft_cross_entropy",
    "soft_cross_entropy_loss",
    "stack_states",
    "unstack_states",
]
