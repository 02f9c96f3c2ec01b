"""``fit``: distillation for a number of epochs, :func:`jaxzip.train.fit`'s teacher-student twin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax

from jaxzip._types import Params
from jaxzip.data import Dataset, TokenWindows
from jaxzip.distill._common import Loss
from jaxzip.distill._step import make_train_step
from jaxzip.models._apply import ApplyFn
from jaxzip.train import Checkpoint, TrainState, evaluate, init_state, run_epochs
from jaxzip.train._fit import Callback

__all__ = ["fit"]


def fit(
    student_apply: ApplyFn,
    params: Params,
    tx: optax.GradientTransformation,
    train_ds: Dataset | TokenWindows,
    *,
    teacher_apply: ApplyFn,
    teacher_params: Params,
    loss: Loss,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    val_ds: Dataset | TokenWindows | None = None,
    eval_batch_size: int = 1000,
    augment: Callable[..., jax.Array] | None = None,
    check_finite: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    max_loss_growth: float | None = None,
    desc: str = "distill",
    checkpoint: Checkpoint | None = None,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains the student on ``loss`` against the teacher for ``epochs`` epochs.

    :func:`jaxzip.train.run_epochs` around the jitted step of :func:`make_train_step`
    (teacher params passed to every step, never closed over): a fresh shuffle per
    epoch from ``key``, every batch the same shape, the step's dropout and
    augmentation keys from ``key`` too. ``params`` is not consumed. With
    ``augment`` the teacher and the student see the same shifted images. With
    ``alpha = 0`` in :func:`kd_loss` this is training on the labels, but the
    teacher still runs: use :func:`jaxzip.train.fit` for that.

    Args:
      student_apply: the student, ``apply_fn(params, x, *, train, key)``.
      params: the student's initial params.
      tx: the student's optax optimizer.
      train_ds: the transfer set (a :class:`jaxzip.data.Dataset` or
        :class:`jaxzip.data.TokenWindows`).
      teacher_apply: the teacher, same convention (run with ``train=False``).
      teacher_params: the teacher's params.
      loss: a distillation loss such as :func:`kd_loss`.
      epochs, batch_size, key, callbacks, progress, max_loss_growth, checkpoint: as in
        :func:`jaxzip.train.run_epochs` (a :class:`jaxzip.train.Checkpoint` lets a
        killed run resume mid-epoch).
      val_ds: the student is evaluated on it after every epoch
        (:func:`jaxzip.train.evaluate`), if given.
      eval_batch_size: batch size of those evaluations.
      augment: optional ``augment(x, key=key) -> x`` (e.g. :class:`jaxzip.train.RandomShift`).
      check_finite: stop at the first step with NaN or Inf (see :func:`make_train_step`).
      desc: the progress bar's and the errors' label.

    Returns:
      ``(state, history)``: the student's final :class:`jaxzip.train.TrainState` and one
      dict per epoch (``epoch``, ``train_loss``, ``train_accuracy``, ``seconds``, and
      ``val_loss`` / ``val_accuracy`` with ``val_ds``).

    Raises:
      TypeError, ValueError: from :func:`make_train_step` and
        :func:`jaxzip.train.run_epochs` (bad functions, sizes or key); a
        :class:`jaxzip.NonFiniteError` with ``check_finite``, a
        :class:`jaxzip.DivergedError` past ``max_loss_growth``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> from jaxzip.data import Dataset
      >>> from jaxzip.distill import kd_loss
      >>> ds = Dataset(x=np.eye(2, dtype=np.float32).reshape(2, 1, 1, 2),
      ...              y=np.array([0, 1], np.int32), num_classes=2, name="toy")
      >>> linear = lambda p, x, *, train, key: x.reshape(len(x), -1) @ p
      >>> state, history = fit(linear, jnp.zeros((2, 2)), optax.sgd(1.0), ds,
      ...                      teacher_apply=linear, teacher_params=3.0 * jnp.eye(2),
      ...                      loss=kd_loss(temperature=2.0, alpha=0.5), epochs=3,
      ...                      batch_size=2, key=jax.random.key(0), progress=False)
      >>> int(state.step), float(history[-1]["train_accuracy"])
      (3, 1.0)
    """
    step = make_train_step(
        student_apply, teacher_apply, tx, loss=loss, augment=augment, check_finite=check_finite
    )

    def validate(state: TrainState) -> dict[str, Any]:
        val = evaluate(student_apply, state.params, val_ds, batch_size=eval_batch_size)
        return {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}

    return run_epochs(
        lambda state, batch, k: step(state, teacher_params, batch, k),
        init_state(params, tx),
        train_ds,
        key=key,
        epochs=epochs,
        batch_size=batch_size,
        evaluate=None if val_ds is None else validate,
        callbacks=callbacks,
        progress=progress,
        desc=desc,
        max_loss_growth=max_loss_growth,
        checkpoint=checkpoint,
    )
