"""The stage runner behind ``jaxzip run``, with its stage cache.

An experiment is a short list of :class:`Stage` s (by default
data → model → train → [distill] → [prune] → [kmeans] → evaluate → [encode] →
[export], or the config's ``experiment.stages``). Each stage is a function
``(cfg, state) -> (updates, metrics)``: it reads what earlier stages produced
from the typed, frozen :class:`~jaxzip.pipeline.RunState` and returns the
fields it changes and the metrics it reports.

Each stage's outputs are kept in ``out_dir/stages/<NN>-<name>-<hash12>/``,
keyed by a hash of the config parts it depends on chained with the key of the
stage before it, so a rerun restores every stage whose inputs did not change
and reruns the first changed one and all after it (see
:mod:`jaxzip.pipeline._cache`). ``data`` and ``report`` always run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import jax

from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip._io import atomic_write_json, directory_lock, publish
from jaxzip.config import ExperimentConfig, save_config
from jaxzip.pipeline._cache import (
    CACHE_DIR,
    find_complete,
    remove_entry,
    restore_outputs,
    stage_dir_name,
    stage_key,
    store_outputs,
)
from jaxzip.pipeline._core_stages import arch_apply_fn
from jaxzip.pipeline._report import format_table
from jaxzip.pipeline._stage_utils import jsonable as _jsonable
from jaxzip.pipeline._stage_utils import log
from jaxzip.pipeline._stages import Stage, default_stages
from jaxzip.pipeline._state import OUTPUTS, RunState

__all__ = [
    "CONFIG_FILE",
    "PARAMS_FILE",
    "PENDING_DIR",
    "RESULTS_FILE",
    "Stage",
    "default_stages",
    "run_experiment",
]

PENDING_DIR = ".pending"
"""Where a run writes its files until every stage has succeeded (then they are moved out)."""
CONFIG_FILE = "config.toml"
PARAMS_FILE = "params.npz"
RESULTS_FILE = "results.json"

Metrics = dict[str, Any]


def _check_order(stages: Sequence[Stage]) -> None:
    provided: set[str] = set()
    for pos, stage in enumerate(stages, start=1):
        if not isinstance(stage, Stage):
            raise TypeError(f"stages: item {pos} must be a Stage, got {type(stage).__name__}")
        for key in (*stage.needs, *stage.provides):
            if key not in OUTPUTS:
                raise ConfigError(
                    f"stages: {stage.name!r} at position {pos} names {key!r}, which is not a "
                    f"RunState field a stage provides ({sorted(OUTPUTS)})"
                )
        for key in stage.needs:
            if key not in provided:
                raise ConfigError(
                    f"stages: {stage.name!r} at position {pos} needs {key!r}, "
                    "which no earlier stage provides"
                )
        provided.update(stage.provides)


class _Cache:
    """Where each stage's outputs live, and whether to use them."""

    def __init__(self, cfg: ExperimentConfig, out: Path, files: Path, enabled: bool) -> None:
        from jaxzip import __version__

        self.cfg, self.out, self.enabled, self.version = cfg, out, enabled, __version__
        self.files = files  # where the stages write (and restored stages get back) their files
        self.previous: str | None = ""  # None once a stage without `depends` breaks the chain

    def key(self, index: int, stage: Stage) -> str | None:
        if self.previous is None or stage.depends is None:
            self.previous = None
            return None
        self.previous = stage_key(
            index=index,
            name=stage.name,
            depends=stage.depends(self.cfg),
            previous=self.previous,
            version=self.version,
        )
        return self.previous

    def dir(self, index: int, stage: Stage, key: str) -> Path:
        return self.out / CACHE_DIR / stage_dir_name(index, stage.name, key)

    def scratch(self, index: int, stage: Stage, key: str) -> Path:
        """The running stage's resume files (a checkpoint) inside its entry, which storing
        the stage replaces; never through a planted link."""
        d = self.dir(index, stage, key)
        if d.parent.is_symlink():
            d.parent.unlink()
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            remove_entry(d)
        return d / "partial"

    def restore(self, index: int, stage: Stage, key: str, state: RunState):
        d = self.dir(index, stage, key)
        manifest = find_complete(d, key)
        if manifest is None:
            return None
        try:
            updates, metrics = restore_outputs(d, manifest, self.files)
            if "arch" in updates and "apply_fn" in stage.provides:  # stored as its arch
                updates["apply_fn"] = arch_apply_fn(updates["arch"], state.splits)
            state.updated(updates)  # only RunState fields (a tampered manifest is refused)
        except (OSError, ValueError, KeyError, TypeError) as e:
            log(f"stage {stage.name!r}: cannot restore {d} ({e}); running it again")
            return None
        log(f"stage {stage.name!r}: restored from {d.relative_to(self.out)}")
        return updates, metrics

    def store(self, index: int, stage: Stage, key: str, updates: Mapping, metrics: Mapping):
        d = self.dir(index, stage, key)
        if d.parent.is_symlink():  # never write through a planted link: the cache is ours
            d.parent.unlink()
        for old in (self.out / CACHE_DIR).glob(f"{index:02d}-*"):
            if old != d:  # an earlier run's outputs for this position
                remove_entry(old)
        skip = ("apply_fn",) if "arch" in updates else ()  # rebuilt from the arch on restore
        files = stage.files(self.cfg) if stage.files is not None else ()
        ok = store_outputs(
            d,
            key=key,
            name=stage.name,
            updates=updates,
            metrics=metrics,
            out_dir=self.files,
            files=files,
            skip=skip,
        )
        if not ok:
            log(f"stage {stage.name!r}: its outputs cannot be stored; not cached")


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    report: bool = True,
    stages: Sequence[Stage] | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Runs an experiment's stages and writes its results to ``out_dir``.

    Holds an exclusive lock on ``out_dir`` for the whole run (a second run
    into it fails at once, naming this one's PID). Every file is first written
    to ``out_dir/.pending/``: ``config.toml`` (the resolved config) first, so
    a failed run is identifiable there, then the files the stages write (the
    ``[codec]`` file, the export, ``report.md``), ``params.npz`` and
    ``results.json``. Only when every stage has succeeded do they replace the
    previous run's files in ``out_dir`` (each atomically, ``results.json``
    last; an old output this run does not produce is removed). A failed run
    thus leaves the previous run's outputs intact, its own config in
    ``.pending/``, and the cache of the stages that finished.

    With ``use_cache``, each stage that declares ``depends`` (all named stages)
    is restored from ``out_dir/stages/`` when a complete entry with its key is
    there, and otherwise run and stored (``data`` and ``report`` always run).
    Changing a config section reruns the first stage depending on it and every
    later stage; so does a crash (only finished stages were stored).

    Args:
      cfg: the validated experiment config.
      out_dir: the directory for the output files (created if missing).
      progress: show progress bars (download, training) on stderr.
      report: print a table of the results (stage, metric, value) to stdout.
      stages: the stages to run; default :func:`default_stages` of ``cfg``.
      use_cache: restore and store stage outputs under ``out_dir/stages/``;
        ``False`` runs every stage and leaves the cache alone.

    Returns:
      The results written to ``results.json``: ``metrics`` (val/test
      accuracy and error, test error count, param count, epochs, ...),
      ``stages`` (each stage's metrics), ``wall_time_s`` per stage and in
      total, ``cached`` (the names of the stages restored from the cache),
      ``history`` (one dict per epoch of dense training), ``distill``,
      ``prune`` (per round and per layer sparsity, val accuracy, retraining
      histories, FLOPs), ``kmeans`` (per-layer bits, sizes, distinct values;
      val accuracy before and after fine-tuning), ``codec`` (when a file is
      written: its name, bytes, ``compression_ratio = 4 * param_count /
      file_bytes`` and the per-leaf size report) and ``export``, each when its
      stage ran, ``config_name``, ``jax_version``, ``backend`` and ``jaxzip_version``.

    Raises:
      TypeError: ``cfg`` is not an :class:`ExperimentConfig`, or a stage is not a :class:`Stage`.
      jaxzip.DirectoryLockedError: another process is running into ``out_dir``.
      ConfigError: a stage needs a field no earlier stage provides, or names one
        that is not a :class:`RunState` field.
      jaxzip.JaxzipError, ValueError, OSError: from a stage (e.g. missing data)
        or from writing the files.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"run_experiment: cfg must be an ExperimentConfig, got {type(cfg)!r}")
    if not isinstance(use_cache, bool):
        raise TypeError(f"run_experiment: use_cache must be a bool, got {use_cache!r}")

    stage_list = tuple(default_stages(cfg) if stages is None else stages)
    _check_order(stage_list)
    out = Path(out_dir)
    with directory_lock(out, what="jaxzip run"):  # NotADirectoryError if it is a file
        return _run_locked(
            cfg, out, stage_list, progress=progress, report=report, use_cache=use_cache
        )


def _run_locked(
    cfg: ExperimentConfig,
    out: Path,
    stage_list: tuple[Stage, ...],
    *,
    progress: bool,
    report: bool,
    use_cache: bool,
) -> dict[str, Any]:
    """:func:`run_experiment` once it holds ``out``'s lock: the stages write into
    ``out/.pending/``; their files replace the previous run's only after all succeeded."""
    from jaxzip import __version__

    pending = out / PENDING_DIR
    remove_entry(pending)  # what a failed or killed run left
    pending.mkdir()
    save_config(pending / CONFIG_FILE, cfg)
    written = {f for s in stage_list if s.files is not None for f in s.files(cfg)}

    cache = _Cache(cfg, out, pending, use_cache)
    state = RunState(out_dir=pending, progress=progress)
    per_stage: dict[str, Metrics] = {}
    wall: dict[str, float] = {}
    cached: list[str] = []
    start = time.perf_counter()
    for index, stage in enumerate(stage_list, start=1):
        t0 = time.perf_counter()
        state = replace(state, results={"stages": per_stage, "wall_time_s": wall, "cached": cached})
        key = cache.key(index, stage)
        usable = use_cache and stage.cache and key is not None
        restored = cache.restore(index, stage, key, state) if usable else None
        if restored is not None:
            updates, metrics = restored
            cached.append(stage.name)
        else:
            scratch = cache.scratch(index, stage, key) if usable else None
            updates, metrics = stage.run(cfg, replace(state, scratch=scratch))
            jax.block_until_ready(updates)
            if usable:
                cache.store(index, stage, key, updates, _jsonable(metrics))
        wall[stage.name] = round(time.perf_counter() - t0, 4)
        state = state.updated(updates)
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
        "cached": cached,
        "history": state.history or [],
        **state.reports,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "jaxzip_version": __version__,
    }
    results = _jsonable(results)
    if state.params is not None:
        jz_train.save_params(pending / PARAMS_FILE, state.params)
    atomic_write_json(pending / RESULTS_FILE, results)
    # Publish: every new file replaces its old one (results.json last); an output of the
    # previous run that this run does not produce is removed.
    for name in (CONFIG_FILE, PARAMS_FILE, *sorted(written), RESULTS_FILE):
        if (pending / name).is_file():
            publish(pending / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)
    remove_entry(pending)
    if report:
        print(format_table(results), flush=True)
    return results
