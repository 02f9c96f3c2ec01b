"""The stage runner behind ``jaxzip run``.

data → model → train → [prune] → [kmeans] → evaluate → [encode] → results.

An experiment is a short list of :class:`Stage` s. Each stage is a function
``(cfg, ctx) -> (updates, metrics)``: it reads what earlier stages produced
from the context mapping ``ctx`` and returns new context entries and the
metrics it reports. Later stages (prune, quantize, encode) slot into
:func:`default_stages` without touching the runner.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from jaxzip import data as jz_data
from jaxzip import models as jz_models
from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip._io import atomic_write_json
from jaxzip.pipeline._codec_stage import (
    CODEC_REPORT,
    KMEANS_REPORT,
    codec_of,
    encode_stage,
    kmeans_stage,
)
from jaxzip.pipeline._config import ExperimentConfig
from jaxzip.pipeline._load import save_config
from jaxzip.pipeline._prune_stage import PRUNE_REPORT, evaluate_dense, prune_stage
from jaxzip.pipeline._report import format_table
from jaxzip.pipeline._stage_utils import augment_of, make_train_tx
from jaxzip.pipeline._stage_utils import jsonable as _jsonable

__all__ = [
    "CONFIG_FILE",
    "PARAMS_FILE",
    "RESULTS_FILE",
    "Stage",
    "default_stages",
    "run_experiment",
]

CONFIG_FILE = "config.toml"
PARAMS_FILE = "params.npz"
RESULTS_FILE = "results.json"

Context = Mapping[str, Any]
Metrics = dict[str, Any]
StageFn = Callable[[ExperimentConfig, Context], tuple[dict[str, Any], Metrics]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One named step of an experiment.

    Attributes:
      name: shown in the results table and as the key of its wall time.
      run: ``(cfg, ctx) -> (updates, metrics)``; ``updates`` are merged into
        the context seen by later stages, ``metrics`` (name → number) are reported.
    """

    name: str
    run: StageFn


def _load_data(cfg: ExperimentConfig, ctx: Context) -> tuple[dict[str, Any], Metrics]:
    d = cfg.data
    splits = jz_data.load_splits(
        d.name,
        data_dir=d.data_dir or None,
        val_fraction=d.val_fraction,
        seed=cfg.experiment.seed,
        download=d.download,
        progress=ctx["progress"],
    )
    metrics = {
        "train_examples": len(splits.train),
        "val_examples": len(splits.val),
        "test_examples": len(splits.test),
    }
    return {"splits": splits}, metrics


def _build_model(cfg: ExperimentConfig, ctx: Context) -> tuple[dict[str, Any], Metrics]:
    m, splits = cfg.model, ctx["splits"]
    kwargs: dict[str, Any] = {"num_classes": splits.train.num_classes}
    if m.name == "mlp":
        kwargs.update(widths=m.widths, dropout_rate=m.dropout_rate)
    module = jz_models.make_model(m.name, **kwargs)
    key = jax.random.key(cfg.experiment.seed)
    # One compiled init instead of one dispatch (and compile) per initializer op.
    init = jax.jit(lambda k, x: jz_models.init_params(module, k, x))
    if not m.params_from:
        params = init(key, splits.train.x[:1])
    else:  # only the shapes and dtypes are needed to check and load the file
        like = jax.eval_shape(init, key, splits.train.x[:1])
        try:
            params = jz_train.load_params(m.params_from, like)
        except (OSError, ValueError) as e:
            where = "" if os.path.isabs(m.params_from) else f" (relative to {os.getcwd()!r})"
            raise ConfigError(
                f"model.params_from: cannot use {m.params_from!r}{where} as {m.name!r} params: {e}"
            ) from e
    updates = {"apply_fn": jz_models.linen_apply_fn(module), "params": params}
    return updates, {"param_count": jz_models.param_count(params)}


def _train(cfg: ExperimentConfig, ctx: Context) -> tuple[dict[str, Any], Metrics]:
    t, splits = cfg.train, ctx["splits"]
    if t.epochs == 0:  # allowed only with model.params_from: use the loaded params as they are
        return {"history": []}, {"epochs": 0, "steps": 0}
    tx = make_train_tx(
        t,
        learning_rate=t.learning_rate,
        epochs=t.epochs,
        steps_per_epoch=len(splits.train) // t.batch_size,  # fit drops the last partial batch
    )
    state, history = jz_train.fit(
        ctx["apply_fn"],
        ctx["params"],
        tx,
        splits.train,
        epochs=t.epochs,
        batch_size=t.batch_size,
        seed=cfg.experiment.seed,
        val_ds=splits.val,
        progress=ctx["progress"],
        eval_batch_size=t.eval_batch_size,
        augment=augment_of(t),
    )
    history = _jsonable(history)
    last = history[-1] if history else {}
    metrics = {"epochs": len(history), "steps": int(state.step)}
    metrics.update({k: v for k, v in last.items() if k.startswith("train_")})
    return {"params": state.params, "history": history}, metrics


def _evaluate(cfg: ExperimentConfig, ctx: Context) -> tuple[dict[str, Any], Metrics]:
    splits, bs = ctx["splits"], cfg.train.eval_batch_size
    metrics: Metrics = {}
    for part in ("val", "test"):
        m = jz_train.evaluate(ctx["apply_fn"], ctx["params"], getattr(splits, part), batch_size=bs)
        metrics[f"{part}_accuracy"] = float(m["accuracy"])
        metrics[f"{part}_error"] = float(m["error"])
        metrics[f"{part}_errors"] = int(m["errors"])
        metrics[f"{part}_loss"] = float(m["loss"])
    return {}, metrics


def default_stages(cfg: ExperimentConfig) -> tuple[Stage, ...]:
    """The stages :func:`run_experiment` runs for ``cfg``, in order.

    With a ``[prune]`` or ``[kmeans]`` section the trained (or loaded) model is
    evaluated (``dense_*`` metrics) first, and ``evaluate`` reports the pruned
    and/or weight-shared model (decoded from its codebooks). With ``[kmeans]``
    or ``[codec]`` (unless ``codec.write = false``), ``encode`` then writes the
    compressed file and checks that it decodes to the evaluated params.

    Example:
      >>> from jaxzip.pipeline import ExperimentConfig
      >>> from jaxzip.pipeline._config import PruneConfig
      >>> [s.name for s in default_stages(ExperimentConfig())]
      ['data', 'model', 'train', 'evaluate']
      >>> [s.name for s in default_stages(ExperimentConfig(prune=PruneConfig()))]
      ['data', 'model', 'train', 'evaluate_dense', 'prune', 'evaluate']
      >>> from jaxzip.pipeline._config import KMeansConfig
      >>> [s.name for s in default_stages(ExperimentConfig(kmeans=KMeansConfig()))][3:]
      ['evaluate_dense', 'kmeans', 'evaluate', 'encode']
    """
    stages = [Stage("data", _load_data), Stage("model", _build_model), Stage("train", _train)]
    if cfg.prune is not None or cfg.kmeans is not None:
        stages.append(Stage("evaluate_dense", evaluate_dense))
    if cfg.prune is not None:
        stages.append(Stage("prune", prune_stage))
    if cfg.kmeans is not None:
        stages.append(Stage("kmeans", kmeans_stage))
    stages.append(Stage("evaluate", _evaluate))
    codec = codec_of(cfg)
    if codec is not None and codec.write:
        stages.append(Stage("encode", encode_stage))
    return tuple(stages)


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    report: bool = True,
    stages: Sequence[Stage] | None = None,
) -> dict[str, Any]:
    """Runs an experiment's stages and writes its results to ``out_dir``.

    Writes ``config.toml`` (the resolved config) first, so a run is
    identifiable even if it fails; removes ``results.json``, ``params.npz``
    (and the ``[codec]`` file) left by an earlier run there; and writes those two only after every stage
    has succeeded (``results.json`` last), each atomically. A failed run thus
    leaves ``config.toml`` and no results.

    Args:
      cfg: the validated experiment config.
      out_dir: the directory for the output files (created if missing).
      progress: show progress bars (download, training) on stderr.
      report: print a table of the results (stage, metric, value) to stdout.
      stages: the stages to run; default :func:`default_stages` of ``cfg``.

    Returns:
      The results written to ``results.json``: ``metrics`` (val/test
      accuracy and error, test error count, param count, epochs, ...),
      ``stages`` (each stage's metrics), ``wall_time_s`` per stage and in
      total, ``history`` (one dict per epoch of dense training), ``prune``
      (with a ``[prune]`` section: per round and per layer sparsity, val
      accuracy, retraining histories, FLOPs), ``kmeans`` (with ``[kmeans]``:
      per-layer bits, sizes, distinct values; val accuracy before and after
      fine-tuning), ``codec`` (when a file is written: its name, bytes,
      ``compression_ratio = 4 * param_count / file_bytes`` and the per-leaf
      size report), ``config_name``,
      ``jax_version``, ``backend`` and ``jaxzip_version``.

    Raises:
      TypeError: ``cfg`` is not an :class:`ExperimentConfig`.
      jaxzip.JaxzipError, ValueError, OSError: from a stage (e.g. missing data)
        or from writing the files.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"run_experiment: cfg must be an ExperimentConfig, got {type(cfg)!r}")
    from jaxzip import __version__

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output directory {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    save_config(out / CONFIG_FILE, cfg)
    codec = codec_of(cfg)
    for stale in (RESULTS_FILE, PARAMS_FILE, *([codec.file] if codec is not None else [])):
        (out / stale).unlink(missing_ok=True)

    ctx: dict[str, Any] = {"progress": progress, "out_dir": out}
    per_stage: dict[str, Metrics] = {}
    wall: dict[str, float] = {}
    start = time.perf_counter()
    for stage in default_stages(cfg) if stages is None else stages:
        t0 = time.perf_counter()
        updates, metrics = stage.run(cfg, ctx)
        jax.block_until_ready(updates)
        wall[stage.name] = round(time.perf_counter() - t0, 4)
        ctx = {**ctx, **updates}
        per_stage[stage.name] = _jsonable(metrics)
    wall["total"] = round(time.perf_counter() - start, 4)

    flat: Metrics = {}
    for metrics in per_stage.values():
        flat.update(metrics)
    results: dict[str, Any] = {
        "config_name": cfg.experiment.name,
        "metrics": flat,
        "stages": per_stage,
        "wall_time_s": wall,
        "history": ctx.get("history", []),
        **({"prune": ctx[PRUNE_REPORT]} if PRUNE_REPORT in ctx else {}),
        **({"kmeans": ctx[KMEANS_REPORT]} if KMEANS_REPORT in ctx else {}),
        **({"codec": ctx[CODEC_REPORT]} if CODEC_REPORT in ctx else {}),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "jaxzip_version": __version__,
    }
    results = _jsonable(results)
    if "params" in ctx:
        jz_train.save_params(out / PARAMS_FILE, ctx["params"])
    atomic_write_json(out / RESULTS_FILE, results)
    if report:
        print(format_table(results), flush=True)
    return results
