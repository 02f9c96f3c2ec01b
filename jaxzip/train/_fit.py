"""The one training loop (:func:`run_epochs`) and :func:`fit`, the cross-entropy loop built on it."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxzip._keys import check_key, named_key
from jaxzip._types import Params
from jaxzip.data import Dataset, TokenWindows
from jaxzip.models._apply import ApplyFn
from jaxzip.train._augment import RandomShift
from jaxzip.train._batches import check_batch_size, check_data, check_int, epoch_batches
from jaxzip.train._evaluate import evaluate
from jaxzip.train._guard import first_loss, raise_if_diverged, raise_if_nonfinite
from jaxzip.train._resume import Checkpoint, LoopPoint, LoopSaver
from jaxzip.train._state import TrainState, init_state
from jaxzip.train._step import make_train_step

__all__ = ["fit", "run_epochs"]

S = TypeVar("S")
Step = Callable[[S, dict[str, np.ndarray], jax.Array], tuple[S, Mapping[str, Any]]]
Callback = Callable[[dict[str, Any], Any], bool | None]

_REFRESH_EVERY = 25
"""Steps between host fetches of the running metrics for the progress bar."""
_SHORT = {"accuracy": "acc"}
_GUARD_KEYS = ("finite", "nonfinite")


def _line(desc: str, record: Mapping[str, Any]) -> str:
    parts = []
    for name, value in record.items():
        if name in ("epoch", "seconds") or not isinstance(value, float):
            continue
        short = name.removeprefix("train_")
        parts.append(f"{_SHORT.get(short, short).replace('_accuracy', '_acc')}={value:.4f}")
    return f"{desc}: {' '.join(parts)} ({record['seconds']:.1f}s)"


def run_epochs(
    step: Step,
    state: S,
    train_ds: Dataset | TokenWindows,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    evaluate: Callable[[S], Mapping[str, Any]] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    desc: str = "run_epochs",
    max_loss_growth: float | None = None,
    checkpoint: Checkpoint | None = None,
) -> tuple[S, list[dict[str, Any]]]:
    """Runs ``step`` over ``epochs`` shuffled epochs of ``train_ds``: the one training loop.

    Dense training (:func:`fit`), distillation, codebook fine-tuning and student
    construction all run through it. Epoch ``e`` (from 0) visits
    :func:`epoch_batches` with key ``fold_in(named_key(key, "shuffle"), e)``;
    every step gets ``named_key(key, "step")`` (the steps fold in their own
    counter). Per-step scalar metrics are summed on the device and fetched once
    per epoch (and every few steps for the progress bar).

    The numerical guard: when a step's metrics hold ``"finite"`` (a step built
    with ``check_finite=True``), a non-finite step stops the loop with
    :class:`jaxzip._errors.NonFiniteError` naming the step, epoch and batch
    (see :func:`raise_if_nonfinite`; its ``.state`` is the last finite state).
    A loss can also explode and stay finite (a learning rate of 1e10 drives a
    cross-entropy to 1e9 and accuracy to chance without one NaN): with
    ``max_loss_growth``, an epoch whose mean ``"loss"`` exceeds ``max_loss_growth``
    times the first step's loss (the loss of the initial state; at least 0.1)
    stops the loop with :class:`jaxzip._errors.DivergedError`.

    Args:
      step: ``step(state, batch, key) -> (state, metrics)``; ``metrics`` maps
        names to scalars (``"loss"``, ``"accuracy"``, ...).
      state: the initial state (e.g. a :class:`TrainState`).
      train_ds: the training :class:`jaxzip.data.Dataset` or :class:`jaxzip.data.TokenWindows`.
      key: the run's PRNG key (shuffles and step keys derive from it).
      epochs: passes over ``train_ds`` (at least 1).
      batch_size: examples per step (1 to ``len(train_ds)``).
      evaluate: ``evaluate(state) -> metrics`` after every epoch (e.g. validation);
        its entries are added to the epoch's record as they are.
      callbacks: each called as ``callback(record, state)`` after every epoch;
        one returning ``True`` stops training after that epoch (early stop).
      progress: a tqdm bar on stderr and one line per epoch.
      desc: who is training, for the bar, the epoch lines (``"<desc> epoch <e>/<epochs>"``)
        and the error messages (``"<desc>: ..."``).
      max_loss_growth: None (no check) or a number > 1 (see above); the steps'
        metrics must then hold ``"loss"``.
      checkpoint: a :class:`Checkpoint`: the loop saves its progress there and, run
        again with the same arguments, resumes from it mid-epoch and ends as if never
        stopped (a resumed epoch's ``seconds`` count this process only; ``callbacks``
        that keep state of their own start afresh).

    Returns:
      ``(state, history)``: one record per epoch, ``{"epoch": e (1-based),
      "train_<metric>": the epoch's mean, <evaluate's entries>, "seconds": ...}``.

    Raises:
      TypeError: a wrong type (``step`` not callable, ``key`` not a PRNG key, ...).
      ValueError: ``epochs``/``batch_size`` out of range.
      NonFiniteError: a guarded step met NaN or Inf (a ``ValueError``).
      DivergedError: with ``max_loss_growth``, an epoch's loss grew past the limit
        (a :class:`~jaxzip._errors.NonFiniteError`).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> ds = Dataset(x=np.ones((4, 1, 1, 1), np.float32), y=np.zeros(4, np.int32),
      ...              num_classes=2, name="toy")
      >>> def step(total, batch, key):
      ...     return total + batch["x"].sum(), {"loss": jnp.float32(len(batch["x"]))}
      >>> stop = lambda record, state: record["epoch"] == 2
      >>> total, history = run_epochs(step, jnp.float32(0), ds, key=jax.random.key(0),
      ...                             epochs=5, batch_size=2, callbacks=[stop])
      >>> float(total), [(h["epoch"], h["train_loss"]) for h in history]
      (8.0, [(1, 2.0), (2, 2.0)])
    """
    if not callable(step):
        raise TypeError(f"run_epochs: step must be callable, got {step!r}")
    where = desc
    batch_size = check_batch_size(where, train_ds, batch_size)
    epochs = check_int(where, "epochs", epochs, 1)
    check_key(where, key)
    if evaluate is not None and not callable(evaluate):
        raise TypeError(f"{where}: evaluate must be callable, got {evaluate!r}")
    if isinstance(callbacks, str | bytes) or not all(callable(c) for c in callbacks):
        raise TypeError(f"{where}: callbacks must be a sequence of callables, got {callbacks!r}")
    if max_loss_growth is not None and not (
        isinstance(max_loss_growth, int | float)
        and not isinstance(max_loss_growth, bool)
        and max_loss_growth > 1
    ):
        raise ValueError(
            f"{where}: max_loss_growth must be None or a number > 1, got {max_loss_growth!r}"
        )
    start_loss: float | None = None
    shuffle_key, step_key = named_key(key, "shuffle"), named_key(key, "step")
    steps_per_epoch = len(train_ds) // batch_size
    history: list[dict[str, Any]] = []
    saver = point = None
    if checkpoint is not None:  # what a checkpoint must match to resume this loop
        run = {"desc": desc, "epochs": epochs, "batch_size": batch_size, "n": len(train_ds)}
        run["key"] = np.asarray(jax.random.key_data(key)).tolist()  # one host fetch
        saver = LoopSaver(checkpoint, state, run)
        point = saver.restore()
    if point is not None:
        state, history, start_loss = point.state, point.history, point.start_loss
    for epoch in range(0 if point is None else point.epoch, epochs):
        start = time.perf_counter()
        resumed = point is not None and epoch == point.epoch
        sums: dict[str, jax.Array] = dict(point.sums) if resumed else {}
        skip = point.batch if resumed else 0
        label = f"{desc} epoch {epoch + 1}/{epochs}"
        bar = tqdm(
            total=steps_per_epoch,
            desc=label,
            file=sys.stderr,
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        with bar:
            batches = epoch_batches(
                train_ds, batch_size, key=jax.random.fold_in(shuffle_key, epoch)
            )
            for i, batch in enumerate(batches, start=1):
                if i <= skip:  # taken before the checkpoint
                    bar.update(1)
                    continue
                state, metrics = step(state, batch, step_key)
                if "finite" in metrics and not bool(metrics["finite"]):
                    where_step = (
                        f"{where}: step {int(state.step) + 1} (epoch {epoch + 1}, batch {i})"
                    )
                    raise_if_nonfinite(metrics, state, where=where_step)
                if max_loss_growth is not None and start_loss is None:
                    start_loss = first_loss(where, metrics)
                for name, value in metrics.items():
                    if name not in _GUARD_KEYS and jnp.ndim(value) == 0:
                        sums[name] = sums.get(name, jnp.zeros((), jnp.float32)) + value
                bar.update(1)
                if progress and (i % _REFRESH_EVERY == 0 or i == steps_per_epoch):
                    bar.set_postfix({n: f"{float(v) / i:.4f}" for n, v in sums.items()})
                if saver is not None:
                    saver.tick(LoopPoint(state, history, epoch, i, sums, start_loss))
        record: dict[str, Any] = {"epoch": epoch + 1}
        record.update({f"train_{n}": float(v) / steps_per_epoch for n, v in sums.items()})
        if evaluate is not None:
            record.update(evaluate(state))
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if progress:
            tqdm.write(_line(label, record), file=sys.stderr)
        if max_loss_growth is not None and start_loss is not None:
            raise_if_diverged(where, record, start_loss, max_loss_growth, state)
        if any([bool(c(record, state)) for c in callbacks]):
            break  # (before the epoch's checkpoint: a resumed run never trains past a stop)
        if saver is not None:
            saver.tick(LoopPoint(state, history, epoch + 1, 0, {}, start_loss), force=True)
    if saver is not None:
        saver.clear()
    return state, history


def fit(
    apply_fn: ApplyFn,
    params: Params,
    tx: optax.GradientTransformation,
    train_ds: Dataset | TokenWindows,
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    val_ds: Dataset | TokenWindows | None = None,
    progress: bool = True,
    eval_batch_size: int = 1000,
    augment: RandomShift | None = None,
    check_finite: bool = False,
    callbacks: Sequence[Callback] = (),
    max_loss_growth: float | None = None,
    checkpoint: Checkpoint | None = None,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains a classifier or a language model with softmax cross-entropy for ``epochs`` epochs.

    :func:`run_epochs` around the jitted step of :func:`make_train_step`: a
    fresh shuffle per epoch from ``key``, every batch the same shape (the
    incomplete one dropped), dropout keys from ``key`` too. ``params`` is not
    consumed (training works on a copy). On :class:`jaxzip.data.TokenWindows`
    (a language model's windows of tokens) the loss is the per-token
    cross-entropy, every token one prediction, and each epoch's record adds
    ``val_bits_per_token``.

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
      tx: the optax optimizer.
      train_ds: the training :class:`jaxzip.data.Dataset` or :class:`jaxzip.data.TokenWindows`.
      epochs: number of passes over ``train_ds`` (at least 1).
      batch_size: examples per step (at least 1, at most ``len(train_ds)``).
      key: the PRNG key of the shuffles and the dropout keys.
      val_ds: evaluated with :func:`evaluate` after every epoch, if given (the
        same kind of data as ``train_ds``).
      progress: show a tqdm bar on stderr with the running loss and accuracy.
      eval_batch_size: batch size for the validation passes.
      augment: optional augmentation of images applied inside the train step
        (e.g. :class:`RandomShift`); see :func:`make_train_step`. Not for tokens.
      check_finite: stop with :class:`jaxzip._errors.NonFiniteError` at the first non-finite step.
      callbacks: per-epoch callbacks of :func:`run_epochs` (``True`` stops early).
      max_loss_growth: stop with :class:`jaxzip._errors.DivergedError` when an
        epoch's mean loss exceeds this many times the first step's (see :func:`run_epochs`).
      checkpoint: a :class:`Checkpoint` to save progress to and resume from (a killed
        run, started again with the same arguments, ends as if never stopped).

    Returns:
      ``(state, history)``: the final :class:`TrainState` and one dict per epoch
      with ``epoch`` (1-based), ``train_loss`` and ``train_accuracy`` (means over
      the epoch's steps), ``val_loss`` and ``val_accuracy`` (``None`` without
      ``val_ds``) and ``seconds`` (wall time of the epoch, validation included).

    Raises:
      TypeError: an argument has the wrong type (``key`` not a PRNG key, ``val_ds`` not
        the kind of data ``train_ds`` is, ...).
      ValueError: ``epochs``/``batch_size`` out of range, ``batch_size`` larger
        than the training set, or ``augment`` given with token windows.
      NonFiniteError: with ``check_finite``, a step met NaN or Inf (a ``ValueError``).

    Example:
      >>> import jax, numpy as np, optax
      >>> from jaxzip.data import Dataset
      >>> ds = Dataset(x=np.eye(2, dtype=np.float32).reshape(2, 1, 1, 2),
      ...              y=np.array([0, 1], np.int32), num_classes=2, name="toy")
      >>> apply_fn = lambda params, x, *, train, key: x.reshape(len(x), -1) @ params
      >>> state, history = fit(apply_fn, np.zeros((2, 2), np.float32), optax.sgd(1.0), ds,
      ...                      epochs=2, batch_size=2, key=jax.random.key(0), val_ds=ds,
      ...                      progress=False)
      >>> [h["epoch"] for h in history], history[-1]["val_accuracy"], int(state.step)
      ([1, 2], 1.0, 2)
    """
    if not callable(apply_fn):
        raise TypeError(f"fit: apply_fn must be callable, got {apply_fn!r}")
    check_data("fit", "train_ds", train_ds)
    if val_ds is not None:
        check_data("fit", "val_ds", val_ds)
        if type(val_ds) is not type(train_ds):
            raise TypeError(
                f"fit: val_ds must be the same kind of data as train_ds "
                f"({type(train_ds).__name__}), got {type(val_ds).__name__}"
            )
    if augment is not None and isinstance(train_ds, TokenWindows):
        raise ValueError(
            f"fit: augment shifts images; train_ds holds token windows, got {augment!r}"
        )
    check_int("fit", "epochs", epochs, 1)
    check_batch_size("fit", train_ds, batch_size)
    check_key("fit", key)
    eval_batch_size = check_int("fit", "eval_batch_size", eval_batch_size, 1)
    if not isinstance(check_finite, bool):
        raise TypeError(f"fit: check_finite must be a bool, got {check_finite!r}")
    step = make_train_step(apply_fn, tx, augment=augment, check_finite=check_finite)

    def validate(state: TrainState) -> dict[str, Any]:
        if val_ds is None:
            return {"val_loss": None, "val_accuracy": None}
        val = evaluate(apply_fn, state.params, val_ds, batch_size=eval_batch_size)
        record = {"val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        if "bits_per_token" in val:
            record["val_bits_per_token"] = val["bits_per_token"]
        return record

    return run_epochs(
        step,
        init_state(params, tx),
        train_ds,
        key=key,
        epochs=epochs,
        batch_size=batch_size,
        evaluate=validate,
        callbacks=callbacks,
        progress=progress,
        desc="fit",
        max_loss_growth=max_loss_growth,
        checkpoint=checkpoint,
    )
