"""Helpers shared by the pipeline's stages and commands: training loop, JSON, the search directory."""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip import auto as jz_auto
from jaxzip import distill as jz_distill
from jaxzip import train as jz_train
from jaxzip._errors import NonFiniteError
from jaxzip._io import directory_lock
from jaxzip.config import (
    ExperimentConfig,
    PruneConfig,
    TrainConfig,
    augment_of,
    config_to_dict,
    run_key,
    save_config,
)

__all__ = [
    "AUTO_FILE",
    "MAX_LOSS_GROWTH",
    "calibration_batches",
    "describe_val",
    "divergence_hint",
    "jsonable",
    "leaked",
    "log",
    "retrain",
    "search_dir",
    "val_figures",
    "with_hint",
]

AUTO_FILE = "auto.json"
"""``jaxzip auto``'s summary in its search directory (beside the journal and ``best.jz``)."""

MAX_LOSS_GROWTH = 100.0
"""Every training stage of a run (train, the ``[prune]`` rounds, distill, the k-means
fine-tune) stops as diverged when an epoch's mean loss exceeds 100x the loss of its first
step (``max_loss_growth`` of :func:`jaxzip.train.run_epochs`)."""


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
    checkpoint: jz_train.Checkpoint | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Training after (or while) pruning: ``(params, history)`` after ``epochs`` epochs of ``tx``.

    Cross-entropy on the labels (:func:`jaxzip.train.fit`), or with ``prune.distill_alpha > 0``
    :func:`jaxzip.distill.kd_loss` against ``teacher`` (params of ``apply_fn``, the model
    before pruning) with :func:`jaxzip.distill.fit`; both with ``train``'s
    batch size and augmentation and the divergence guard :data:`MAX_LOSS_GROWTH`.
    ``params`` is not consumed. With ``checkpoint``, a killed retraining resumes.
    """
    common = {
        "epochs": epochs,
        "batch_size": train.batch_size,
        "key": key,
        "progress": progress,
        "max_loss_growth": MAX_LOSS_GROWTH,
        "checkpoint": checkpoint,
    }
    if prune.distill_alpha == 0:
        state, history = jz_train.fit(
            apply_fn,
            params,
            tx,
            train_ds,
            augment=augment_of(train),
            check_finite=check_finite,
            **common,
        )
        return state.params, history
    state, history = jz_distill.fit(
        apply_fn,
        params,
        tx,
        train_ds,
        teacher_apply=apply_fn,
        teacher_params=teacher,
        loss=jz_distill.kd_loss(temperature=prune.distill_temperature, alpha=prune.distill_alpha),
        augment=augment_of(train),
        check_finite=check_finite,
        desc="retrain",
        **common,
    )
    return state.params, history


def log(text: str) -> None:
    """A stage's progress line on stderr (results go to stdout)."""
    print(text, file=sys.stderr, flush=True)


def leaked(params: Any, mask: Any) -> int:
    """How many weights ``mask`` prunes that ``params`` still hold as nonzero (0 when kept at zero)."""
    counts = jax.tree.map(lambda p, m: jnp.count_nonzero(jnp.where(m, 0, p)), params, mask)
    return int(sum(jax.tree.leaves(counts)))  # one host fetch


def calibration_batches(cfg: ExperimentConfig, train: Any, section: Any, *, name: str) -> list:
    """``section.calibration_examples`` training inputs (all if fewer) in batches of
    ``section.calibration_batch_size``: a random subset drawn with the run's key ``name``,
    in dataset order. ``section`` is a config section (``[quantize]``, ``[prune]``) or
    any object with those two attributes."""
    n, b = min(section.calibration_examples, len(train)), section.calibration_batch_size
    idx = np.sort(np.asarray(jax.random.permutation(run_key(cfg, name), len(train))[:n]))
    return [jnp.asarray(train.x[idx[i : i + b]]) for i in range(0, n, b)]


def val_figures(result: Mapping[str, Any]) -> dict[str, float]:
    """``val_accuracy`` of a :func:`jaxzip.train.evaluate` result on the validation split,
    and for text (byte tokens) ``val_bits_per_byte``.

    Example:
      >>> val_figures({"accuracy": 0.25, "error": 0.75, "bits_per_token": 2.5})
      {'val_accuracy': 0.25, 'val_bits_per_byte': 2.5}
    """
    out = {"val_accuracy": float(result["accuracy"])}
    if "bits_per_token" in result:
        out["val_bits_per_byte"] = float(result["bits_per_token"])
    return out


def describe_val(figures: Mapping[str, float]) -> str:
    """``"val_accuracy 0.2500"``, with ``", 2.5000 bits per byte"`` for text."""
    text = f"val_accuracy {figures['val_accuracy']:.4f}"
    if "val_bits_per_byte" in figures:
        text += f", {figures['val_bits_per_byte']:.4f} bits per byte"
    return text


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


@contextlib.contextmanager
def search_dir(
    cfg: ExperimentConfig, out: Path, settings: dict[str, Any]
) -> Iterator[jz_auto.Journal]:
    """The search's journal, while this process holds ``out``'s lock (one search per directory at a
    time; created if missing): ``config.toml`` written, the journal of ``cfg`` and ``settings``
    opened (first, so a journal of another config fails fast)."""
    with directory_lock(out, what="jaxzip auto"):  # NotADirectoryError if it is a file
        save_config(out / "config.toml", cfg)
        config = {"experiment": config_to_dict(cfg), "auto": settings}
        yield jz_auto.Journal.open(out / jz_auto.JOURNAL_FILE, config=config)
