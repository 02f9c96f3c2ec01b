"""Helpers shared by the pipeline's stages: the ``[train]`` optimizer, their training loop, JSON values."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import jax
import numpy as np
import optax

from jaxzip import distill as jz_distill
from jaxzip import train as jz_train
from jaxzip._errors import NonFiniteError
from jaxzip._keys import named_key
from jaxzip.pipeline._config import ExperimentConfig, TrainConfig
from jaxzip.pipeline._names import make_optimizer
from jaxzip.pipeline._stage_config import DistillConfig, PruneConfig
from jaxzip.pipeline._state import RunState

__all__ = [
    "MAX_LOSS_GROWTH",
    "augment_of",
    "divergence_hint",
    "jsonable",
    "make_train_tx",
    "retrain",
    "run_key",
    "run_stage_epochs",
    "with_hint",
]

S = TypeVar("S")

MAX_LOSS_GROWTH = 100.0
"""Every training stage of a run (train, the ``[prune]`` rounds, distill, the k-means
fine-tune) stops as diverged when an epoch's mean loss exceeds 100x the loss of its first
step (``max_loss_growth`` of :func:`jaxzip.train.run_epochs`)."""


def run_key(cfg: Any, name: str) -> jax.Array:
    """The key of the consumer ``name`` in a run: ``named_key(jax.random.key(experiment.seed), name)``.

    The config's one seed is the run's root key; each stage takes its own key
    from it by name (``"model"``, ``"train"``, ``"distill"``, ...), never by an
    integer offset.

    Example:
      >>> from jaxzip.pipeline._config import ExperimentConfig
      >>> a = run_key(ExperimentConfig(), "train")
      >>> bool((jax.random.key_data(a) == jax.random.key_data(run_key(ExperimentConfig(), "model"))).all())
      False
    """
    return named_key(jax.random.key(cfg.experiment.seed), name)


def retrain(
    apply_fn: Any,
    params: Any,
    tx: optax.GradientTransformation,
    train_ds: Any,
    *,
    prune: PruneConfig,
    train: TrainConfig,
    teacher: Any,
    epochs: int,
    key: jax.Array,
    progress: bool = False,
    check_finite: bool = False,
) -> tuple[Any, list[dict[str, Any]]]:
    """Training after (or while) pruning: ``(params, history)`` after ``epochs`` epochs of ``tx``.

    Cross-entropy on the labels (:func:`jaxzip.train.fit`), or with ``prune.distill_alpha > 0``
    :func:`jaxzip.distill.kd_loss` against ``teacher`` (params of ``apply_fn``, the model
    before pruning) through :func:`jaxzip.distill.make_train_step`; both with ``train``'s
    batch size and augmentation and the divergence guard :data:`MAX_LOSS_GROWTH`.
    ``params`` is not consumed.
    """
    common = {"epochs": epochs, "batch_size": train.batch_size, "key": key,
              "progress": progress, "max_loss_growth": MAX_LOSS_GROWTH}  # fmt: skip
    if prune.distill_alpha == 0:
        state, history = jz_train.fit(apply_fn, params, tx, train_ds, augment=augment_of(train),
                                      check_finite=check_finite, **common)  # fmt: skip
        return state.params, history
    loss = jz_distill.kd_loss(temperature=prune.distill_temperature, alpha=prune.distill_alpha)
    step = jz_distill.make_train_step(apply_fn, apply_fn, tx, loss=loss, augment=augment_of(train),
                                      check_finite=check_finite)  # fmt: skip
    state, history = jz_train.run_epochs(lambda s, batch, k: step(s, teacher, batch, k),
                                         jz_train.init_state(params, tx), train_ds,
                                         desc="retrain", **common)  # fmt: skip
    return state.params, history


def run_stage_epochs(
    cfg: ExperimentConfig,
    state: RunState,
    step: Callable[[S, dict[str, np.ndarray], jax.Array], tuple[S, Mapping[str, Any]]],
    init: S,
    *,
    name: str,
    epochs: int,
    hint: str = "",
    key: jax.Array | None = None,
    **options: Any,
) -> tuple[S, list[dict[str, Any]]]:
    """:func:`jaxzip.train.run_epochs` for a stage: ``step`` from ``init`` over the train split.

    Batches of ``[train] batch_size``, ``key`` (default ``run_key(cfg, name)``), the run's
    progress setting and the divergence guard :data:`MAX_LOSS_GROWTH`; ``options``
    (``desc``, ...) pass through. A diverged run's error ends with ``hint`` (see
    :func:`divergence_hint`).
    """
    options.setdefault("max_loss_growth", MAX_LOSS_GROWTH)
    with with_hint(hint):
        return jz_train.run_epochs(
            step,
            init,
            state.splits.train,
            key=run_key(cfg, name) if key is None else key,
            epochs=epochs,
            batch_size=cfg.train.batch_size,
            progress=bool(state.progress),
            **options,
        )


def divergence_hint(setting: str, value: float, *, clip_norm: float | None = None) -> str:
    """``"; lower kmeans.learning_rate (now 1e+10)"``, plus ``" or set train.clip_norm"``
    where the training's optimizer clips by ``[train] clip_norm`` and none is set."""
    hint = f"; lower {setting} (now {value:g})"
    return hint + (" or set train.clip_norm" if clip_norm is not None and not clip_norm else "")


@contextlib.contextmanager
def with_hint(hint: str) -> Iterator[None]:
    """Re-raises a :class:`NonFiniteError` (:class:`DivergedError` too) with ``hint`` appended."""
    try:
        yield
    except NonFiniteError as err:
        if not hint:
            raise
        raise type(err)(f"{err}{hint}", paths=err.paths, state=err.state) from err


def make_train_tx(
    t: TrainConfig, *, learning_rate: float, epochs: int, steps_per_epoch: int
) -> optax.GradientTransformation:
    """The optimizer of ``[train]`` (name, schedule, warmup, weight decay, momentum, gradient
    clipping) at a given LR.

    The schedule spans ``epochs * steps_per_epoch`` steps, so a retraining run
    (``[prune]``) gets its own full schedule at its own peak learning rate. With
    ``clip_norm`` the gradients are clipped to that global norm first, in every
    training of the run (train, prune, distill, auto).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_train_tx(TrainConfig(optimizer="sgd", momentum=0.0), learning_rate=0.5,
      ...                    epochs=1, steps_per_epoch=10)
      >>> updates, _ = tx.update({"w": jnp.ones(1)}, tx.init({"w": jnp.zeros(1)}))
      >>> float(updates["w"][0])
      -0.5
    """
    total_steps = max(1, epochs * steps_per_epoch)
    warmup_steps = 0
    if t.warmup_epochs > 0:  # at least one step of warmup and one of decay
        warmup_steps = min(max(1, round(t.warmup_epochs * steps_per_epoch)), total_steps - 1)
    tx = make_optimizer(
        name=t.optimizer,
        learning_rate=learning_rate,
        schedule=t.schedule,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        weight_decay=t.weight_decay,
        momentum=t.momentum,
    )
    return optax.chain(optax.clip_by_global_norm(t.clip_norm), tx) if t.clip_norm else tx


def augment_of(t: TrainConfig | DistillConfig) -> jz_train.RandomShift | None:
    """The training-time augmentation ``[train]`` (or ``[distill]``) asks for with
    its ``augment_shift`` (None when off).

    Example:
      >>> augment_of(TrainConfig(augment_shift=2)), augment_of(TrainConfig())
      (RandomShift(pixels=2), None)
    """
    return jz_train.RandomShift(pixels=t.augment_shift) if t.augment_shift else None


def jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy / JAX scalars and containers; non-finite floats → None.

    Example:
      >>> jsonable({"a": np.float32(0.5), "b": [np.int64(2), float("nan")]})
      {'a': 0.5, 'b': [2, None]}
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, jax.Array | np.ndarray | np.generic):
        obj = np.asarray(obj)
        return jsonable(obj.item() if obj.ndim == 0 else obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
