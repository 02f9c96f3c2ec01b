"""``fit``: the epoch loop around :func:`make_train_step`, with a progress bar and a history."""

from __future__ import annotations

import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxzip._types import Params
from jaxzip.data import Dataset, batches
from jaxzip.models._apply import ApplyFn
from jaxzip.train._augment import RandomShift
from jaxzip.train._evaluate import evaluate
from jaxzip.train._guard import raise_if_nonfinite
from jaxzip.train._state import TrainState, init_state
from jaxzip.train._step import make_train_step

_REFRESH_EVERY = 25
"""Steps between host fetches of the running metrics for the progress bar."""


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"fit: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"fit: {name} must be at least {minimum}, got {value}")
    return int(value)


def fit(
    apply_fn: ApplyFn,
    params: Params,
    tx: optax.GradientTransformation,
    train_ds: Dataset,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    val_ds: Dataset | None = None,
    progress: bool = True,
    eval_batch_size: int = 1000,
    augment: RandomShift | None = None,
    check_finite: bool = False,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains with softmax cross-entropy for ``epochs`` epochs.

    Each epoch runs the jitted step of :func:`make_train_step` over
    ``jaxzip.data.batches(train_ds, batch_size, seed=seed, epoch=e, drop_last=True)``
    (a fresh shuffle per epoch, every batch the same shape), with dropout keys
    from ``jax.random.key(seed)``. Metrics are summed on the device; the host
    fetches them only every few steps for the progress bar and once per epoch.
    ``params`` is not consumed (training works on a copy).

    With ``check_finite=True`` the step is built with ``check_finite=True`` (see
    :func:`make_train_step`) and the loop stops at the first step whose loss,
    gradients or new params hold NaN or Inf, raising :class:`jaxzip._errors.NonFiniteError`
    that names the step, the epoch and batch, and the offending paths with their
    counts. No garbage is returned: the step was not applied, and the error's
    ``state`` attribute is the last finite :class:`TrainState` (the one before
    the bad step). The check costs one host fetch of a bool per step.

    Args:
      apply_fn: the model, ``apply_fn(params, x, *, train, key) -> logits``.
      params: the initial parameter pytree.
      tx: the optax optimizer (see :func:`make_optimizer`).
      train_ds: the training :class:`jaxzip.data.Dataset`.
      epochs: number of passes over ``train_ds`` (at least 1).
      batch_size: examples per step (at least 1, at most ``len(train_ds)``).
      seed: non-negative int for the shuffles and the dropout keys.
      val_ds: evaluated with :func:`evaluate` after every epoch, if given.
      progress: show a tqdm bar on stderr with the running loss and accuracy.
      eval_batch_size: batch size for the validation passes.
      augment: optional augmentation applied inside the train step (e.g.
        :class:`RandomShift`); see :func:`make_train_step`.
      check_finite: stop with :class:`jaxzip._errors.NonFiniteError` at the first non-finite step.

    Returns:
      ``(state, history)``: the final :class:`TrainState` and one dict per epoch
      with ``epoch`` (1-based), ``train_loss`` and ``train_accuracy`` (means over
      the epoch's steps), ``val_loss`` and ``val_accuracy`` (``None`` without
      ``val_ds``) and ``seconds`` (wall time of the epoch, validation included).

    Raises:
      TypeError: an argument has the wrong type.
      ValueError: ``epochs``/``batch_size``/``seed`` out of range, or
        ``batch_size`` larger than the training set.
      NonFiniteError: with ``check_finite``, a step met NaN or Inf (a ``ValueError``).

    Example:
      >>> import numpy as np, optax
      >>> from jaxzip.data import Dataset
      >>> ds = Dataset(x=np.eye(2, dtype=np.float32).reshape(2, 1, 1, 2),
      ...              y=np.array([0, 1], np.int32), num_classes=2, name="toy")
      >>> apply_fn = lambda params, x, *, train, key: x.reshape(len(x), -1) @ params
      >>> state, history = fit(apply_fn, np.zeros((2, 2), np.float32), optax.sgd(1.0), ds,
      ...                      epochs=2, batch_size=2, seed=0, val_ds=ds, progress=False)
      >>> [h["epoch"] for h in history], history[-1]["val_accuracy"], int(state.step)
      ([1, 2], 1.0, 2)
    """
    if not callable(apply_fn):
        raise TypeError(f"fit: apply_fn must be callable, got {apply_fn!r}")
    for name, ds in (("train_ds", train_ds), ("val_ds", val_ds)):
        if not (ds is None and name == "val_ds") and not isinstance(ds, Dataset):
            raise TypeError(f"fit: {name} must be a jaxzip.data.Dataset, got {type(ds).__name__}")
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    eval_batch_size = _check_int("eval_batch_size", eval_batch_size, 1)
    if batch_size > len(train_ds):
        raise ValueError(
            f"fit: batch_size={batch_size} exceeds the {len(train_ds)} training examples of "
            f"{train_ds.name!r} (incomplete batches are dropped, so no step would run)"
        )
    steps_per_epoch = len(train_ds) // batch_size
    if not isinstance(check_finite, bool):
        raise TypeError(f"fit: check_finite must be a bool, got {check_finite!r}")
    step = make_train_step(apply_fn, tx, augment=augment, check_finite=check_finite)
    state = init_state(params, tx)
    key = jax.random.key(seed)
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        start = time.perf_counter()
        loss_sum = jnp.zeros((), jnp.float32)
        acc_sum = jnp.zeros((), jnp.float32)
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            file=sys.stderr,
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        with bar:
            it = batches(train_ds, batch_size, seed=seed, epoch=epoch, drop_last=True)
            for i, batch in enumerate(it, start=1):
                state, metrics = step(state, batch, key)
                if check_finite and not bool(metrics["finite"]):
                    where = f"fit: step {int(state.step) + 1} (epoch {epoch + 1}, batch {i})"
                    raise_if_nonfinite(metrics, state, where=where)
                loss_sum = loss_sum + metrics["loss"]
                acc_sum = acc_sum + metrics["accuracy"]
                bar.update(1)
                if progress and (i % _REFRESH_EVERY == 0 or i == steps_per_epoch):
                    bar.set_postfix(
                        loss=f"{float(loss_sum) / i:.4f}", acc=f"{float(acc_sum) / i:.4f}"
                    )
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(loss_sum) / steps_per_epoch,
            "train_accuracy": float(acc_sum) / steps_per_epoch,
            "val_loss": None,
            "val_accuracy": None,
        }
        if val_ds is not None:
            val = evaluate(apply_fn, state.params, val_ds, batch_size=eval_batch_size)
            record["val_loss"], record["val_accuracy"] = val["loss"], val["accuracy"]
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if progress:
            val_text = (
                ""
                if val_ds is None
                else f" val_loss={record['val_loss']:.4f} val_acc={record['val_accuracy']:.4f}"
            )
            tqdm.write(
                f"epoch {epoch + 1}/{epochs}: loss={record['train_loss']:.4f} "
                f"acc={record['train_accuracy']:.4f}{val_text} ({record['seconds']:.1f}s)",
                file=sys.stderr,
            )
    return state, history
