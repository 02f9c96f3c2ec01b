"""``make_train_step``: one jitted, state-donating step of distillation from a teacher."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax
from jax.sharding import Mesh

from jaxzip._types import Params
from jaxzip.distill._common import Loss
from jaxzip.distill._core import (
    Metrics,
    Transform,
    check_factory_args,
    check_step_inputs,
    make_transform_check,
    student_update,
    teacher_forward,
)
from jaxzip.distill._shard import (
    check_divisible,
    check_mesh,
    data_sharded,
    replicate,
    replicated,
)
from jaxzip.models._apply import ApplyFn
from jaxzip.train import TrainState

DistillStep = Callable[
    [TrainState, Params, Mapping[str, Any], jax.Array], tuple[TrainState, Metrics]
]

_AUGMENT_STREAM = 1
"""``fold_in`` data of the augmentation's key, apart from the student's dropout key."""


def make_train_step(
    student_apply: ApplyFn,
    teacher_apply: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    loss: Loss,
    student_transform: Transform | None = None,
    mesh: Mesh | None = None,
    check_finite: bool = False,
    augment: Callable[..., jax.Array] | None = None,
) -> DistillStep:
    """Builds ``step(state, teacher_params, batch, key) -> (state, metrics)``: one jitted step.

    The teacher runs on ``batch["x"]`` with ``train=False, key=None`` under
    ``jax.lax.stop_gradient``; its params are an argument of every call (never
    closed over), so one step serves any teacher of that shape. The student runs
    with ``train=True`` and ``key`` folded with ``state.step``, on
    ``student_transform(params)`` when a transform is given (a pruning mask, fake
    quantization: compression-aware distillation), and the optimizer updates the
    untransformed params. The loss is ``masked_mean(loss(student_out,
    teacher_out, batch["y"], mask=batch.get("mask")))``.

    The step follows :func:`jaxzip.train.make_train_step`: it is compiled once per
    batch shape, donates ``state`` (use the returned one), and checks the batch
    (a mapping with ``"x"`` and integer ``"y"``, optional boolean ``"mask"`` of
    padded examples, which must hold finite values: their loss is masked out, but
    a NaN input would still reach the gradient through ``0 * NaN``) before
    tracing. On its first call with a params structure it checks the transform
    with ``jax.eval_shape``.

    With ``mesh``, training is data-parallel: the batch is split along the mesh's
    ``"data"`` axis (see :func:`shard_batch`), the state, teacher params and
    metrics are replicated (the step places them with :func:`replicate`), and XLA
    inserts the gradient all-reduce. The same step runs multi-process under
    ``jax.distributed`` with a mesh over all processes' devices: every process
    calls it with the same state, teacher params and key, and its own part of the
    global batch placed by ``shard_batch(part, mesh, local=True)`` (a host batch
    is taken as the global batch); see ``docs/distributed.md``.

    With ``augment`` (e.g. :class:`jaxzip.train.RandomShift`), ``batch["x"]`` is
    augmented inside the step, from a key derived from ``key`` and the step count
    (apart from the student's dropout key), and the teacher and the student both
    see the augmented images: consistent views, so the student learns the
    teacher's answer on exactly what it sees (Beyer et al., "Knowledge
    distillation: A good teacher is patient and consistent", 2022). Without it
    the transfer set is the batches as given, as in Hinton et al.

    With ``check_finite=True`` the step applies the update only if the loss, the
    gradients and the new params are finite, and adds ``"finite"`` and
    ``"nonfinite"`` (per-leaf NaN/Inf counts) to the metrics, as
    :func:`jaxzip.train.make_train_step` does; see
    :func:`jaxzip.train.raise_if_nonfinite`. Off by default, at no cost.

    Args:
      student_apply: ``apply_fn(params, x, *, train, key)`` of the student,
        returning logits or a mapping ``{"logits": ..., <features>...}``.
      teacher_apply: the teacher's apply function, same convention.
      tx: the optax optimizer of the student.
      loss: a distillation loss such as :func:`kd_loss` (or :func:`combine_losses`).
      student_transform: optional ``params -> params`` of the same structure,
        shapes and dtypes, applied to the student's params inside the loss.
      mesh: optional ``jax.sharding.Mesh`` with a ``"data"`` axis of type
        ``jax.sharding.AxisType.Auto``.
      check_finite: guard the update against NaN/Inf and report per-leaf counts.
      augment: optional ``augment(x, key=key) -> x`` applied to the images that
        the teacher and the student both see.

    Returns:
      ``step(state, teacher_params, batch, key)`` returning the new
      :class:`jaxzip.train.TrainState` and ``{"loss", "accuracy", <each loss
      term>}`` scalars (masked means over the batch).

    Raises:
      TypeError: an apply function, ``tx``, ``loss``, ``student_transform`` or
        ``augment`` has the wrong type, or ``mesh`` is not a Mesh. The step raises
        ``TypeError``/``ValueError`` for a bad state, batch or key, a batch size not
        divisible over the mesh, a transform that changes the params' tree, and
        (from the loss) student and teacher outputs of different shapes.
      ValueError: ``mesh`` has no ``"data"`` axis.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxzip.train import init_state
      >>> from jaxzip.distill import kd_loss
      >>> linear = lambda params, x, *, train, key: x @ params
      >>> tx = optax.sgd(1.0)
      >>> step = make_train_step(linear, linear, tx, loss=kd_loss(temperature=2.0, alpha=0.5))
      >>> state = init_state(jnp.zeros((2, 2)), tx)
      >>> batch = {"x": jnp.eye(2), "y": jnp.array([0, 1])}
      >>> for _ in range(3):
      ...     state, metrics = step(state, 3.0 * jnp.eye(2), batch, jax.random.key(0))
      >>> int(state.step), float(metrics["accuracy"]), sorted(metrics)
      (3, 1.0, ['accuracy', 'ce', 'kd', 'loss'])
    """
    where = "distill.make_train_step"
    check_factory_args(where, student_apply, teacher_apply, tx, student_transform, check_finite)
    if not callable(loss):
        raise TypeError(f"{where}: loss must be a loss function such as kd_loss(...), got {loss!r}")
    if mesh is not None:
        mesh = check_mesh(where, mesh)
    if augment is not None and not callable(augment):
        raise TypeError(
            f"{where}: augment must be None or callable as augment(x, key=key) "
            f"(e.g. jaxzip.train.RandomShift(pixels=2)), got {augment!r}"
        )

    def _step(state, teacher_params, x, y, mask, key):
        if augment is not None:
            step_key = jax.random.fold_in(key, state.step)
            x = augment(x, key=jax.random.fold_in(step_key, _AUGMENT_STREAM))
        teacher_out = teacher_forward(teacher_apply, teacher_params, x)
        return student_update(
            student_apply,
            tx,
            student_transform,
            loss,
            state,
            teacher_out,
            x,
            y,
            mask,
            key,
            check_finite=check_finite,
        )

    if mesh is None:
        jitted = jax.jit(_step, donate_argnums=0)
    else:
        rep, data = replicated(mesh), data_sharded(mesh)
        jitted = jax.jit(
            _step,
            donate_argnums=0,
            in_shardings=(rep, rep, data, data, data, rep),
            out_shardings=(rep, rep),
        )
    step_where = "distill train step"
    check_params = make_transform_check(step_where, student_transform)

    def step(
        state: TrainState, teacher_params: Params, batch: Mapping[str, Any], key: jax.Array
    ) -> tuple[TrainState, Metrics]:
        x, y, mask = check_step_inputs(step_where, state, batch, key)
        check_params(state.params)
        if mesh is not None:
            check_divisible(step_where, len(y), mesh)
            state, teacher_params = replicate((state, teacher_params), mesh)
            data = data_sharded(mesh)
            x, y, mask = (jax.device_put(a, data) for a in (x, y, mask))
        return jitted(state, teacher_params, x, y, mask, key)

    return step
