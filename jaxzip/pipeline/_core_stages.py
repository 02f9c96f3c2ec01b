"""The basic stages: ``data``, ``model``, ``train`` and ``evaluate``.

Each is ``(cfg, state) -> (updates, metrics)`` (see :class:`jaxzip.pipeline.Stage`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxzip import data as jz_data
from jaxzip import models as jz_models
from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip.config import (
    ExperimentConfig,
    augment_of,
    config_arch,
    make_module,
    make_train_tx,
    run_key,
    stage_names,
)
from jaxzip.models import ApplyFn
from jaxzip.pipeline._stage_utils import MAX_LOSS_GROWTH, divergence_hint, jsonable, with_hint
from jaxzip.pipeline._state import RunState

__all__ = [
    "arch_apply_fn",
    "build_model",
    "config_model",
    "config_module",
    "evaluate_splits",
    "evaluate_stage",
    "load_data",
    "seq_len_of",
    "train_stage",
]

Metrics = dict[str, Any]


def load_data(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``data``: the train/val/test splits of ``[data]`` (field ``splits``)."""
    d = cfg.data
    windows = {
        "seq_len": d.seq_len,
        "train_windows": d.train_windows,
        "held_out_windows": d.held_out_windows,
    }
    splits = jz_data.load_splits(
        d.name,
        data_dir=d.data_dir or None,
        val_fraction=d.val_fraction,
        seed=cfg.experiment.seed,
        download=d.download,
        progress=state.progress,
        **(windows if d.name in jz_data.TEXT_DATASETS else {}),
    )
    image = splits.train.x.shape[1:3]
    for key, section in (("train", cfg.train), ("distill", cfg.distill)):
        shift = getattr(section, "augment_shift", 0) if section is not None else 0
        if shift and len(image) == 2 and shift >= min(image):
            raise ConfigError(
                f"{key}.augment_shift: expected fewer pixels than the images' height and width "
                f"({image[0]}x{image[1]} for {d.name!r}), got {shift}"
            )
    metrics = {
        "train_examples": len(splits.train),
        "val_examples": len(splits.val),
        "test_examples": len(splits.test),
    }
    return {"splits": splits}, metrics


CHECKPOINT_EVERY_S = 60.0
"""How often (seconds) the ``train`` stage saves its progress when the stage cache is on."""


def checkpoint_in(state: RunState, name: str) -> jz_train.Checkpoint | None:
    """The running stage's training checkpoint ``name`` in its ``scratch`` directory, saved
    every :data:`CHECKPOINT_EVERY_S` seconds (None without the stage cache): a rerun after a
    kill resumes the training where it stood."""
    if state.scratch is None:
        return None
    return jz_train.Checkpoint(state.scratch / name, every_seconds=CHECKPOINT_EVERY_S)


MAX_MODEL_PARAMS = 1 << 30
"""The largest model ``jaxzip run`` builds: 2**30 params (4 GiB in float32)."""


def init_checked(module: Any, key: jax.Array, x: Any, *, fields: str) -> tuple[Any, Any]:
    """``(init, shapes)``: a jitted ``init(key, x)`` and its params' shapes, once the
    model's size is known to be within :data:`MAX_MODEL_PARAMS` (nothing allocated before).

    Raises:
      ConfigError: the model would be larger, or it does not take ``x`` (a LeNet-5 on
        8x8 images); the message names ``fields``.
    """
    init = jax.jit(lambda k, inputs: jz_models.init_params(module, k, inputs))
    try:
        shapes = jax.eval_shape(init, key, x)
    except ValueError as e:  # the model's own check of its input
        raise ConfigError(f"{fields}: the model cannot take these inputs: {e}") from e
    n = jz_models.param_count(shapes)
    if n > MAX_MODEL_PARAMS:
        raise ConfigError(
            f"{fields}: expected a model of at most {MAX_MODEL_PARAMS:,} params, got one of "
            f"{n:,} ({4 * n / 2**30:,.1f} GiB in float32); make it smaller"
        )
    return init, shapes


def seq_len_of(splits: jz_data.Splits) -> int:
    """The windows' length for token windows, else 0 (no context)."""
    return getattr(splits.train, "seq_len", 0)


def config_module(cfg: ExperimentConfig, splits: jz_data.Splits) -> Any:
    """The linen module of ``[model]`` for the data of ``splits`` (its classes or vocabulary,
    and a transformer's context)."""
    return make_module(config_arch(cfg.model, seq_len_of(splits)), splits.train.num_classes)


def arch_apply_fn(arch: Mapping[str, Any], splits: jz_data.Splits) -> ApplyFn:
    """The apply function of the model ``arch`` describes, for the data of ``splits`` (its
    classes or vocabulary): how the runner rebuilds ``apply_fn`` from a restored ``arch``."""
    return jz_models.linen_apply_fn(make_module(arch, splits.train.num_classes))


def student_arch(cfg: ExperimentConfig, splits: jz_data.Splits) -> dict[str, Any]:
    """The ``arch`` of the ``[distill]`` student for the data of ``splits`` (a transformer's
    context is their windows' length).

    Raises:
      ValueError: the config has no ``[distill]`` section.
    """
    if cfg.distill is None:
        raise ValueError("distill_stage: the config has no [distill] section")
    return config_arch(cfg.distill, seq_len_of(splits))


def config_model(cfg: ExperimentConfig, *, progress: bool = False) -> tuple[Any, np.ndarray]:
    """The model ``jaxzip run`` ends with for ``cfg``, and one example input of its data.

    That is ``[model]``, or the ``[distill]`` student when the run distills (the student
    replaces the model for the later stages). Loads the ``[data]`` splits (as the ``data``
    stage does) for what the model's shape depends on: the number of classes, a
    transformer's vocabulary and context.

    Returns:
      ``(module, x)``: the linen module and the first training example with a
      batch dimension (float images or int32 tokens).

    Raises:
      ConfigError, DataError: as the ``data`` stage (e.g. the data files are missing).

    Example:
      >>> from jaxzip.config import ModelConfig
      >>> module, x = config_model(ExperimentConfig(model=ModelConfig(name="mlp", widths=[8])))
      >>> type(module).__name__, module.widths, x.shape
      ('MLP', (8,), (1, 8, 8, 1))
    """
    from pathlib import Path  # the run state's out_dir: the data stage writes nothing

    updates, _ = load_data(cfg, RunState(out_dir=Path("."), progress=progress))
    splits = updates["splits"]
    if "distill" in stage_names(cfg):
        module = make_module(student_arch(cfg, splits), splits.train.num_classes)
        return module, splits.train.x[:1]
    return config_module(cfg, splits), splits.train.x[:1]


def build_model(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``model``: ``apply_fn``, ``params`` (fresh or ``model.params_from``) and ``arch``."""
    m, splits = cfg.model, state.splits
    arch = config_arch(m, seq_len_of(splits))
    module = config_module(cfg, splits)
    key = run_key(cfg, "model")
    # One compiled init instead of one dispatch (and compile) per initializer op.
    fields = {
        "transformer": "model.name/model.d_model/model.num_layers",
        "mlp": "model.name/model.widths",
    }.get(m.name, "model.name")
    init, like = init_checked(module, key, splits.train.x[:1], fields=fields)
    if not m.params_from:
        params = init(key, splits.train.x[:1])
    else:  # only the shapes and dtypes are needed to check and load the file
        try:
            params = jz_train.load_params(m.params_from, like, require_finite=True)
        except (OSError, ValueError) as e:
            where = "" if os.path.isabs(m.params_from) else f" (relative to {os.getcwd()!r})"
            raise ConfigError(
                f"model.params_from: cannot use {m.params_from!r}{where} as {m.name!r} params: {e}"
            ) from e
    updates = {"apply_fn": arch_apply_fn(arch, splits), "params": params, "arch": arch}
    return updates, {"param_count": jz_models.param_count(params)}


def train_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``train``: ``[train]`` on the current model; new ``params`` and ``history``.

    With the stage cache, the training saves its progress every
    :data:`CHECKPOINT_EVERY_S` seconds to ``state.scratch``: rerun after a kill, it
    resumes mid-epoch and ends as an uninterrupted run would.

    Token windows (text data) train with the per-token cross-entropy of the same
    step (:func:`jaxzip.train.fit` takes them), and each epoch's record adds
    ``val_bits_per_byte``.
    """
    t, splits = cfg.train, state.splits
    if t.epochs == 0:  # allowed only with model.params_from: use the loaded params as they are
        return {"history": []}, {"epochs": 0, "steps": 0}
    tx = make_train_tx(
        t,
        learning_rate=t.learning_rate,
        epochs=t.epochs,
        steps_per_epoch=len(splits.train) // t.batch_size,  # fit drops the last partial batch
    )
    with with_hint(divergence_hint("train.learning_rate", t.learning_rate, clip_norm=t.clip_norm)):
        trained, history = jz_train.fit(
            state.apply_fn,
            state.params,
            tx,
            splits.train,
            epochs=t.epochs,
            batch_size=t.batch_size,
            key=run_key(cfg, "train"),
            val_ds=splits.val,
            progress=state.progress,
            eval_batch_size=t.eval_batch_size,
            augment=augment_of(t),
            check_finite=True,  # a diverged run stops with an error, never reports success
            max_loss_growth=MAX_LOSS_GROWTH,
            checkpoint=checkpoint_in(state, "train"),
        )
    # the text datasets are byte-level: a token is a byte
    history = [
        {k.replace("bits_per_token", "bits_per_byte"): v for k, v in r.items()}
        for r in jsonable(history)
    ]
    last = history[-1] if history else {}
    metrics = {"epochs": len(history), "steps": int(trained.step)}
    metrics.update({k: v for k, v in last.items() if k.startswith("train_")})
    return {"params": trained.params, "history": history}, metrics


def evaluate_splits(
    cfg: ExperimentConfig, state: RunState, params: Any, *, prefix: str = "", loss: bool = True
) -> Metrics:
    """``<prefix><val|test>_<accuracy|error|errors|loss>`` of ``params`` on the current model.

    The metrics of every evaluating stage (``evaluate``, ``evaluate_dense``, ...),
    at ``[train] eval_batch_size``; ``loss=False`` leaves out the losses. On
    token windows (text) every token counts as one prediction, and the metrics
    add ``<prefix><val|test>_bits_per_byte`` and ``<prefix>held_out_bits_per_byte``
    (val and test together: the whole held-out text).
    """
    splits, bs = state.splits, cfg.train.eval_batch_size
    metrics: Metrics = {}
    nats = count = 0.0
    for part in ("val", "test"):
        m = jz_train.evaluate(state.apply_fn, params, getattr(splits, part), batch_size=bs)
        metrics[f"{prefix}{part}_accuracy"] = float(m["accuracy"])
        metrics[f"{prefix}{part}_error"] = float(m["error"])
        metrics[f"{prefix}{part}_errors"] = int(m["errors"])
        if loss:
            metrics[f"{prefix}{part}_loss"] = float(m["loss"])
        if "bits_per_token" in m:
            metrics[f"{prefix}{part}_bits_per_byte"] = float(m["bits_per_token"])
            nats, count = nats + m["loss"] * m["count"], count + m["count"]
    if count:
        metrics[f"{prefix}held_out_bits_per_byte"] = float(nats / count / np.log(2))
    return metrics


def evaluate_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``evaluate``: val/test accuracy, error, error count and loss of the current model
    (and bits per byte on text)."""
    return {}, evaluate_splits(cfg, state, state.params)
