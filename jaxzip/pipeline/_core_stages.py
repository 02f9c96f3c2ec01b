"""The basic stages: ``data``, ``model``, ``train`` and ``evaluate``.

Each is ``(cfg, state) -> (updates, metrics)`` (see :class:`jaxzip.pipeline.Stage`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from jaxzip import data as jz_data
from jaxzip import models as jz_models
from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip.pipeline._config import ExperimentConfig
from jaxzip.pipeline._names import make_model
from jaxzip.pipeline._stage_utils import augment_of, jsonable, make_train_tx, run_key
from jaxzip.pipeline._state import RunState

__all__ = [
    "build_model",
    "evaluate_splits",
    "evaluate_stage",
    "load_data",
    "make_module",
    "model_arch",
    "train_stage",
]

Metrics = dict[str, Any]


def load_data(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``data``: the train/val/test splits of ``[data]`` (field ``splits``)."""
    d = cfg.data
    splits = jz_data.load_splits(
        d.name,
        data_dir=d.data_dir or None,
        val_fraction=d.val_fraction,
        seed=cfg.experiment.seed,
        download=d.download,
        progress=state.progress,
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


MAX_MODEL_PARAMS = 1 << 30
"""The largest model ``jaxzip run`` builds: 2**30 params (4 GiB in float32)."""


def init_checked(module: Any, key: jax.Array, x: Any, *, fields: str) -> tuple[Any, Any]:
    """``(init, shapes)``: a jitted ``init(key, x)`` and its params' shapes, once the
    model's size is known to be within :data:`MAX_MODEL_PARAMS` (nothing allocated before).

    Raises:
      ConfigError: the model would be larger; the message names ``fields``.
    """
    init = jax.jit(lambda k, inputs: jz_models.init_params(module, k, inputs))
    shapes = jax.eval_shape(init, key, x)
    n = jz_models.param_count(shapes)
    if n > MAX_MODEL_PARAMS:
        raise ConfigError(
            f"{fields}: expected a model of at most {MAX_MODEL_PARAMS:,} params, got one of "
            f"{n:,} ({4 * n / 2**30:,.1f} GiB in float32); make it smaller"
        )
    return init, shapes


def model_arch(
    name: str, widths: Sequence[int], dropout_rate: float, input_dropout_rate: float
) -> dict[str, Any]:
    """The run state's ``arch``: what :func:`make_module` builds a network from, for
    ``[model]`` and for the ``[distill]`` student alike.

    Example:
      >>> model_arch("mlp", (8,), 0.5, 0.2)
      {'name': 'mlp', 'widths': [8], 'dropout_rate': 0.5, 'input_dropout_rate': 0.2}
    """
    return {
        "name": name,
        "widths": list(widths),
        "dropout_rate": dropout_rate,
        "input_dropout_rate": input_dropout_rate,
    }


def make_module(arch: Mapping[str, Any], num_classes: int) -> Any:
    """The linen module of an ``arch`` from :func:`model_arch` (the run state's ``arch``).

    Example:
      >>> module = make_module(model_arch("mlp", [8], 0.0, 0.2), 10)
      >>> type(module).__name__, module.input_dropout_rate
      ('MLP', 0.2)
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if arch["name"] == "mlp":
        kwargs.update(
            widths=tuple(arch["widths"]),
            dropout_rate=arch["dropout_rate"],
            input_dropout_rate=arch["input_dropout_rate"],
        )
    return make_model(arch["name"], **kwargs)


def build_model(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``model``: ``apply_fn``, ``params`` (fresh or ``model.params_from``) and ``arch``."""
    m, splits = cfg.model, state.splits
    arch = model_arch(m.name, m.widths, m.dropout_rate, m.input_dropout_rate)
    module = make_module(arch, splits.train.num_classes)
    key = run_key(cfg, "model")
    # One compiled init instead of one dispatch (and compile) per initializer op.
    init, like = init_checked(module, key, splits.train.x[:1], fields="model.name/model.widths")
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
    updates = {"apply_fn": jz_models.linen_apply_fn(module), "params": params, "arch": arch}
    return updates, {"param_count": jz_models.param_count(params)}


def train_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``train``: ``[train]`` on the current model; new ``params`` and ``history``."""
    t, splits = cfg.train, state.splits
    if t.epochs == 0:  # allowed only with model.params_from: use the loaded params as they are
        return {"history": []}, {"epochs": 0, "steps": 0}
    tx = make_train_tx(
        t,
        learning_rate=t.learning_rate,
        epochs=t.epochs,
        steps_per_epoch=len(splits.train) // t.batch_size,  # fit drops the last partial batch
    )
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
        check_finite=True,  # a diverged run stops with NonFiniteError, never reports success
    )
    history = jsonable(history)
    last = history[-1] if history else {}
    metrics = {"epochs": len(history), "steps": int(trained.step)}
    metrics.update({k: v for k, v in last.items() if k.startswith("train_")})
    return {"params": trained.params, "history": history}, metrics


def evaluate_splits(
    cfg: ExperimentConfig, state: RunState, params: Any, *, prefix: str = "", loss: bool = True
) -> Metrics:
    """``<prefix><val|test>_<accuracy|error|errors|loss>`` of ``params`` on the current model.

    The metrics of every evaluating stage (``evaluate``, ``evaluate_dense``, ...),
    at ``[train] eval_batch_size``; ``loss=False`` leaves out the losses.
    """
    splits, bs = state.splits, cfg.train.eval_batch_size
    metrics: Metrics = {}
    for part in ("val", "test"):
        m = jz_train.evaluate(state.apply_fn, params, getattr(splits, part), batch_size=bs)
        metrics[f"{prefix}{part}_accuracy"] = float(m["accuracy"])
        metrics[f"{prefix}{part}_error"] = float(m["error"])
        metrics[f"{prefix}{part}_errors"] = int(m["errors"])
        if loss:
            metrics[f"{prefix}{part}_loss"] = float(m["loss"])
    return metrics


def evaluate_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], Metrics]:
    """Stage ``evaluate``: val/test accuracy, error, error count and loss of the current model."""
    return {}, evaluate_splits(cfg, state, state.params)
