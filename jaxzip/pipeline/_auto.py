"""``jaxzip auto``: the accuracy-bounded compression search on an experiment config.

The config's data, model and train stages give the baseline params (usually
``model.params_from`` with ``train.epochs = 0``); :func:`jaxzip.auto.search`
then searches per-layer sparsity and k-means bits, judging accuracy on the
validation split and fine-tuning each candidate briefly on the training split
with its mask kept. The test split is evaluated once, at the end.

Settings read from the config: ``[prune] where`` (the layers searched; default
``".*/kernel"``), ``[prune] epochs_per_round`` and ``learning_rate`` (each
candidate's fine-tuning; default 1 epoch at a fifth of ``train.learning_rate``),
``[kmeans] iters``; the optimizer, batch size and augmentation of ``[train]``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import jax
import optax

from jaxzip import auto as jz_auto
from jaxzip import prune as jz_prune
from jaxzip import train as jz_train
from jaxzip._io import atomic_write_json, directory_lock
from jaxzip._keys import named_key
from jaxzip._types import Mask, Params
from jaxzip.pipeline._config import ExperimentConfig
from jaxzip.pipeline._core_stages import build_model, load_data, train_stage
from jaxzip.pipeline._load import config_to_dict, save_config
from jaxzip.pipeline._names import lookup
from jaxzip.pipeline._stage_utils import augment_of, jsonable, make_train_tx
from jaxzip.pipeline._state import RunState

__all__ = ["AUTO_FILE", "run_auto"]

AUTO_FILE = "auto.json"


def _finetune_settings(cfg: ExperimentConfig) -> tuple[str, int, float]:
    if cfg.prune is not None:
        return cfg.prune.where, cfg.prune.epochs_per_round, cfg.prune.learning_rate
    return ".*/kernel", 1, cfg.train.learning_rate / 5


def run_auto(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    max_drop_pp: float,
    time_budget_s: float | None = None,
    max_trials: int | None = None,
    seed: int | None = None,
    strategy: str = "greedy",
    space: jz_auto.SearchSpace | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Runs the compression search for ``cfg`` and writes its results to ``out_dir``.

    Writes ``config.toml``; ``journal.jsonl`` (one line per finished trial,
    keyed by the config and search settings, so rerunning the same command
    resumes without redoing trials); ``best.jz`` and ``best.json`` whenever
    the best candidate improves; at the end ``auto.json`` (the search result,
    baseline and best test metrics, settings, wall time) and ``report.md`` with
    its plots (when matplotlib is installed).

    Args:
      cfg: the experiment config (its baseline params come from its data, model
        and train stages).
      out_dir: the output directory (created if missing).
      max_drop_pp: allowed validation accuracy drop in percentage points (>= 0).
      time_budget_s: stop starting new trials after this many seconds.
      max_trials: at most this many candidate trials.
      seed: the root seed of the search (``named_key(jax.random.key(seed), "auto")``
        keys fine-tuning and the optuna sampler); default ``experiment.seed``.
      strategy: a name of :func:`jaxzip.pipeline.names` ``("strategy")``:
        ``"greedy"`` or ``"optuna"`` (``jaxzip.auto.Greedy()`` / ``Optuna()``).
      space: the per-layer choices; default :class:`jaxzip.auto.SearchSpace`.
      progress: progress bars on stderr.

    Returns:
      What ``auto.json`` holds.

    Raises:
      TypeError: ``cfg`` is not an :class:`ExperimentConfig`.
      ValueError: bad ``max_drop_pp`` or budgets; ConfigError (a ValueError) for an
        unknown strategy name.
      jaxzip.ConfigError: a journal from another config is in ``out_dir``.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"run_auto: cfg must be an ExperimentConfig, got {type(cfg)!r}")
    if isinstance(max_drop_pp, bool) or not isinstance(max_drop_pp, (int, float)):
        raise ValueError(f"max_drop: expected a number of percentage points, got {max_drop_pp!r}")
    if not max_drop_pp >= 0:
        raise ValueError(f"max_drop: expected percentage points >= 0, got {max_drop_pp!r}")
    search_strategy = lookup("strategy", strategy, where="strategy")
    seed = cfg.experiment.seed if seed is None else seed
    space = jz_auto.SearchSpace() if space is None else space
    where, epochs, lr = _finetune_settings(cfg)
    iters = cfg.kmeans.iters if cfg.kmeans is not None else space.kmeans_iters
    if iters != space.kmeans_iters:
        space = jz_auto.SearchSpace(**{**space.__dict__, "kmeans_iters": iters})
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output directory {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    with directory_lock(out, what="jaxzip auto"):  # one search per directory at a time
        save_config(out / "config.toml", cfg)
        start = time.perf_counter()
        settings = {"where": where, "finetune_epochs": epochs, "finetune_learning_rate": lr,
                    "seed": int(seed), "strategy": strategy, "space": space.to_dict()}  # fmt: skip
        journal = jz_auto.Journal.open(  # first: a journal of another config fails fast
            out / jz_auto.JOURNAL_FILE, config={"experiment": config_to_dict(cfg), "auto": settings}
        )

        state = RunState(out_dir=out, progress=progress)
        for stage in (load_data, build_model, train_stage):
            state = state.updated(stage(cfg, state)[0])
        splits, apply_fn, dense = state.splits, state.apply_fn, state.params
        t = cfg.train

        def eval_fn(params: Params) -> float:
            m = jz_train.evaluate(apply_fn, params, splits.val, batch_size=t.eval_batch_size)
            return float(m["accuracy"])

        def finetune_fn(params: Params, mask: Mask, *, key: jax.Array) -> Params:
            if epochs == 0:
                return params
            tx = optax.chain(
                make_train_tx(t, learning_rate=lr, epochs=epochs,
                              steps_per_epoch=len(splits.train) // t.batch_size),
                jz_prune.keep_masked(mask),
            )  # fmt: skip
            tuned, _ = jz_train.fit(apply_fn, params, tx, splits.train, epochs=epochs,
                                    batch_size=t.batch_size, key=key, progress=False,
                                    eval_batch_size=t.eval_batch_size, augment=augment_of(t))  # fmt: skip
            return tuned.params

        result = jz_auto.search(
            dense, eval_fn=eval_fn, max_drop=max_drop_pp / 100.0, where=where,
            key=named_key(jax.random.key(seed), "auto"),
            finetune_fn=finetune_fn, space=space, strategy=search_strategy, out_dir=out, journal=journal,
            time_budget_s=time_budget_s, max_trials=max_trials, progress=progress,
        )  # fmt: skip
        test = {}
        for name, params in (("dense", dense), ("best", result.params)):
            m = jz_train.evaluate(apply_fn, params, splits.test, batch_size=t.eval_batch_size)
            test[f"{name}_test_accuracy"] = float(m["accuracy"])
            test[f"{name}_test_error"] = float(m["error"])
        summary = {
            "config_name": cfg.experiment.name, "max_drop_pp": max_drop_pp,
            "time_budget_s": time_budget_s, "max_trials": max_trials, "settings": settings,
            "test": test, "result": result.to_dict(), "wall_time_s": round(time.perf_counter() - start, 3),
            "files": {"best": jz_auto.BEST_FILE, "journal": jz_auto.JOURNAL_FILE},
        }  # fmt: skip
        try:
            jz_auto.write_report(result, out, test_metrics=test)
            summary["files"]["report"] = "report.md"
        except ImportError as e:
            print(f"jaxzip auto: no report written: {e}", file=sys.stderr)
        summary = jsonable(summary)
        atomic_write_json(out / AUTO_FILE, summary)
        return summary
