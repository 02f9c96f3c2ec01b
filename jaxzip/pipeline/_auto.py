"""``jaxzip auto``: the accuracy-bounded compression search on an experiment config.

The config's data, model and train stages give the baseline params (usually
``model.params_from`` with ``train.epochs = 0``); :func:`jaxzip.auto.search`
then searches per-layer sparsity and k-means bits. Each candidate is pruned
gradually while it is trained on the training split (``prune_fn``: cubic
schedule over the first two thirds of its epochs), then weight-shared, then its
centroids are fine-tuned (``codebook_fn``).

The honest bound: the config's validation split (carved from the training
data, never trained on) is cut in two, deterministically (``train_val_split``
with ``experiment.seed``): the *ranking* split, on which every candidate is
judged, and the *confirmation* split (``confirm_fraction`` of it), on which
only the chosen candidate is confirmed (:func:`jaxzip.auto.search`). The test
split is evaluated once, at the end, and only reported. ``auto.json`` gives the
drop on each of the three (:func:`jaxzip.auto.drop_summary`).

Settings read from the config: ``[prune] where`` (the layers searched; default
``".*/kernel"``), ``[prune] epochs_per_round`` and ``learning_rate`` (each
candidate's training; default 1 epoch at a fifth of ``train.learning_rate``; 0
epochs: one-shot pruning, no training), ``[kmeans] iters``, ``finetune_epochs`` and
``learning_rate`` (the centroids; default 1 epoch of Adam at 1e-4; 0: none) and
``unshared_bits`` (the biases, stored as integers with one scale per leaf; 0:
float32); the optimizer, batch size and augmentation of ``[train]``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxzip import auto as jz_auto
from jaxzip import data as jz_data
from jaxzip import prune as jz_prune
from jaxzip import quant as jz_quant
from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip._io import atomic_write_json
from jaxzip._keys import named_key
from jaxzip._types import Params
from jaxzip.config import (
    ExperimentConfig,
    KMeansConfig,
    PruneConfig,
    lookup,
    make_train_tx,
)
from jaxzip.pipeline._auto_lm import run_auto_lm
from jaxzip.pipeline._codec_stage import finetune_codebooks
from jaxzip.pipeline._core_stages import build_model, load_data, train_stage
from jaxzip.pipeline._stage_utils import (
    AUTO_FILE,
    divergence_hint,
    jsonable,
    log,
    retrain,
    search_dir,
    with_hint,
)
from jaxzip.pipeline._state import RunState

__all__ = ["AUTO_FILE", "run_auto"]


def _finetune_settings(cfg: ExperimentConfig) -> tuple[str, int, float]:
    if cfg.prune is not None:
        return cfg.prune.where, cfg.prune.epochs_per_round, cfg.prune.learning_rate
    return ".*/kernel", 1, cfg.train.learning_rate / 5


def _check_fraction(confirm_fraction: Any) -> float | None:
    if confirm_fraction is None:
        return None
    ok = not isinstance(confirm_fraction, bool) and isinstance(confirm_fraction, (int, float))
    if not ok or not 0 < confirm_fraction < 1:
        raise ValueError(
            f"confirm_fraction: expected a number in (0, 1) or None, got {confirm_fraction!r}"
        )
    return float(confirm_fraction)


def _carve(cfg: ExperimentConfig, val: Any, fraction: float, max_drop_pp: float) -> tuple:
    """(ranking, confirmation) halves of the validation split; ConfigError if too small."""
    if not isinstance(val, jz_data.Dataset):
        raise ConfigError(
            f"jaxzip auto: the confirmation split is carved from an image "
            f"dataset's validation split; data.name {cfg.data.name!r} gives "
            f"{type(val).__name__}"
        )
    n = len(val)
    n_conf = min(max(round(n * fraction), 1), n - 1) if n >= 2 else 0
    need = jz_auto.min_confirm_size(max_drop_pp / 100.0)
    if n < 2 or n_conf < need:
        raise ConfigError(
            f"data.val_fraction: the confirmation split ({n_conf} of the {n} validation "
            f"examples, confirm_fraction {fraction:g}) cannot resolve --max-drop {max_drop_pp:g} "
            f"points: one error there is {100 / max(n_conf, 1):.3g} points; it needs at least "
            f"{need} examples (n * max_drop >= 1). Raise data.val_fraction or --max-drop"
        )
    return jz_data.train_val_split(val, val_fraction=fraction, seed=int(cfg.experiment.seed))


def _distill_setting(section: PruneConfig | KMeansConfig) -> dict[str, Any]:
    """``{"distill": {alpha, temperature}}`` for a section that distills, else ``{}`` (so a
    journal written without distillation still matches)."""
    if section.distill_alpha == 0:
        return {}
    return {"distill": {"alpha": section.distill_alpha, "temperature": section.distill_temperature}}


def _without_distill(hook: Callable[..., Params]) -> Callable[..., Params]:
    """``hook`` without its ``distill`` keyword, so the search does not offer the choice."""
    return lambda *args, **kwargs: hook(*args, **kwargs)


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
    confirm_fraction: float | None = 0.5,
    confidence: float = 0.0,
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
      max_drop_pp: allowed validation accuracy drop in percentage points (>= 0); for
        text data (``data.name`` ``"kjv"``), a language model, the allowed increase of
        bits per byte in percent (> 0; 2 is +2%): :func:`jaxzip.auto.search_lm` over
        per-kernel GPTQ bit widths, with the embedding tables as int8 (``strategy``,
        ``space`` and ``seed`` do not apply; ``confirm_fraction`` is required).
      time_budget_s: stop starting new trials after this many seconds.
      max_trials: at most this many candidate trials.
      seed: the root seed of the search (``named_key(jax.random.key(seed), "auto")``
        keys fine-tuning and the optuna sampler); default ``experiment.seed``.
      strategy: a name of :func:`jaxzip.config.names` ``("strategy")``:
        ``"greedy"`` or ``"optuna"`` (``jaxzip.auto.Greedy()`` / ``Optuna()``).
      space: the per-layer choices; default :class:`jaxzip.auto.SearchSpace`.
      progress: progress bars on stderr.
      confirm_fraction: the share of the validation split held out as the
        confirmation split (None: no confirmation, every candidate judged on the
        whole validation split).
      confidence: standard errors of a drop that must fit within the bound too (>= 0): a
        candidate is feasible on the ranking split, and confirmed, when its drop there plus
        ``confidence`` paired standard errors is within the bound (1.645: the one-sided 95%
        upper limit; 0, the default: the drop alone). Not for language models.

    Returns:
      What ``auto.json`` holds.

    Raises:
      TypeError: ``cfg`` is not an :class:`ExperimentConfig`.
      ValueError: bad ``max_drop_pp``, budgets or ``confirm_fraction``; ConfigError (a
        ValueError) for an unknown strategy name, a ``[quantize]`` section (the search
        chooses the bits), or a confirmation split too small to resolve the bound (fewer
        than ``ceil(100 / max_drop_pp)`` examples; the message names the sizes).
      jaxzip.auto.BudgetTooSmall: the time budget ended before the baseline was
        measured on the confirmation split.
      jaxzip.ConfigError: a journal from another config is in ``out_dir``.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"run_auto: cfg must be an ExperimentConfig, got {type(cfg)!r}")
    if isinstance(max_drop_pp, bool) or not isinstance(max_drop_pp, (int, float)):
        raise ValueError(f"max_drop: expected a number of percentage points, got {max_drop_pp!r}")
    if not max_drop_pp >= 0:
        raise ValueError(f"max_drop: expected percentage points >= 0, got {max_drop_pp!r}")
    confirm_fraction = _check_fraction(confirm_fraction)
    if cfg.quantize is not None:
        raise ConfigError(
            "quantize: jaxzip auto chooses each kernel's bits itself; remove the [quantize] "
            "section (it is for jaxzip run)"
        )
    if cfg.data.name in jz_data.TEXT_DATASETS:
        return run_auto_lm(
            cfg,
            Path(out_dir),
            max_drop_pct=max_drop_pp,
            progress=progress,
            time_budget_s=time_budget_s,
            max_trials=max_trials,
            confirm_fraction=confirm_fraction,
            confidence=confidence,
        )
    search_strategy = lookup("strategy", strategy, where="strategy")
    seed = cfg.experiment.seed if seed is None else seed
    space = jz_auto.SearchSpace() if space is None else space
    where, epochs, lr = _finetune_settings(cfg)
    iters = cfg.kmeans.iters if cfg.kmeans is not None else space.kmeans_iters
    if iters != space.kmeans_iters:
        space = jz_auto.SearchSpace(**{**space.__dict__, "kmeans_iters": iters})
    kmeans = cfg.kmeans if cfg.kmeans is not None else KMeansConfig()
    settings = {
        "where": where,
        "finetune_epochs": epochs,
        "finetune_learning_rate": lr,
        "seed": int(seed),
        "strategy": strategy,
        "space": space.to_dict(),
        "confirm_fraction": confirm_fraction,
        "longer_finetune": "one schedule of rounds x epochs",
        "pruning": "gradual (cubic) over the first 2/3 of the fine-tuning",
        "codebook_finetune": {
            "epochs": kmeans.finetune_epochs,
            "learning_rate": kmeans.learning_rate,
            **_distill_setting(kmeans),
        },
        "unshared_bits": kmeans.unshared_bits,
    }
    if cfg.prune is not None:
        settings.update(_distill_setting(cfg.prune))
    start, out = time.perf_counter(), Path(out_dir)
    with search_dir(cfg, out, settings) as journal:
        state = RunState(out_dir=out, progress=progress)
        state = state.updated(load_data(cfg, state)[0])
        rank, conf = state.splits.val, None
        if confirm_fraction is not None:  # before training: a bad size fails fast
            rank, conf = _carve(cfg, state.splits.val, confirm_fraction, max_drop_pp)
        for stage in (build_model, train_stage):
            state = state.updated(stage(cfg, state)[0])
        splits, apply_fn, dense = state.splits, state.apply_fn, state.params
        t = cfg.train

        def evaluate(params: Params, ds: Any) -> dict[str, Any]:
            bs = t.eval_batch_size
            return jz_train.evaluate(apply_fn, params, ds, batch_size=bs, per_example=True)

        def eval_fn(params: Params) -> Any:  # each example's correctness: paired errors
            return evaluate(params, rank)["correct"]

        confirm = {}
        if conf is not None:
            confirm = {
                "confirm_fn": lambda params: evaluate(params, conf)["correct"],
                "confirm_n": len(conf),
            }

        steps = len(splits.train) // t.batch_size
        prune = cfg.prune if cfg.prune is not None else PruneConfig()
        setting = "prune.learning_rate" if cfg.prune is not None else "train.learning_rate"
        hint = divergence_hint(
            setting, lr if cfg.prune is not None else t.learning_rate, clip_norm=t.clip_norm
        )

        def prune_fn(
            params: Params,
            sparsity: dict[str, float],
            *,
            key: jax.Array,
            rounds: int = 1,
            distill: bool = True,
        ) -> Params:
            """Gradual magnitude pruning (Zhu & Gupta's cubic schedule) over the first two
            thirds of ``epochs * rounds`` epochs, then training with the final mask; with
            ``[prune] distill_alpha`` (and ``distill``), distilling from the dense baseline."""
            n = epochs * rounds
            every = max(1, steps // 4)
            end = max(every, (2 * n * steps) // 3 // every * every)
            tx = optax.chain(
                make_train_tx(t, learning_rate=lr, epochs=n, steps_per_epoch=steps),
                *(
                    jz_prune.gradual_pruning(
                        jz_prune.polynomial_sparsity(
                            s, begin_step=0, end_step=end, update_every=every
                        ),
                        update_every=every,
                        where=[path],
                    )
                    for path, s in sparsity.items()
                    if s > 0
                ),
            )
            with with_hint(hint):  # a diverged candidate stops the search, naming its setting
                tuned, _ = retrain(
                    apply_fn,
                    params,
                    tx,
                    splits.train,
                    prune=prune if distill else dataclasses.replace(prune, distill_alpha=0.0),
                    train=t,
                    teacher=dense,
                    epochs=n,
                    key=key,
                )
            return tuned

        quiet = dataclasses.replace(state, progress=False)  # no bar per candidate

        def codebook_fn(books: Params, *, key: jax.Array, distill: bool = True) -> Params:
            """Deep Compression's centroid fine-tuning: ``[kmeans] finetune_epochs`` epochs of
            Adam at ``[kmeans] learning_rate``, indices fixed; with ``[kmeans]
            distill_alpha`` (and ``distill``), distilling from the dense baseline."""
            keep = jax.tree.map(
                lambda b: jnp.ones(() if jz_quant.is_quantized(b) else jnp.shape(b), bool),
                books,
                is_leaf=jz_quant.is_quantized,
            )
            k = kmeans if distill else dataclasses.replace(kmeans, distill_alpha=0.0)
            return finetune_codebooks(cfg, quiet, books, keep, kmeans=k, key=key, teacher=dense)

        # the search may choose to train on the labels only where some hook distills
        distills = (epochs > 0 and prune.distill_alpha > 0) or (
            kmeans.finetune_epochs > 0 and kmeans.distill_alpha > 0
        )
        offer = (lambda hook: hook) if distills else _without_distill
        hooks = {
            "prune_fn": offer(prune_fn) if epochs > 0 else None,
            "codebook_fn": offer(codebook_fn) if kmeans.finetune_epochs > 0 else None,
            "unshared": jz_quant.QuantSpec(bits=kmeans.unshared_bits)
            if kmeans.unshared_bits
            else None,
        }
        result = jz_auto.search(
            dense,
            eval_fn=eval_fn,
            max_drop=max_drop_pp / 100.0,
            confidence=confidence,
            where=where,
            key=named_key(jax.random.key(seed), "auto"),
            **hooks,
            space=space,
            strategy=search_strategy,
            out_dir=out,
            journal=journal,
            time_budget_s=time_budget_s,
            max_trials=max_trials,
            progress=progress,
            val_n=len(rank),
            **confirm,
        )
        on_test = [evaluate(params, splits.test) for params in (dense, result.params)]
        test = {
            f"{name}_test_{k}": float(m[k])
            for name, m in zip(("dense", "best"), on_test, strict=True)
            for k in ("accuracy", "error")
        }
        drops = {
            "bound_pp": max_drop_pp,
            **jz_auto.result_drops(result, val_n=len(rank), test=[m["correct"] for m in on_test]),
        }
        summary = {
            "config_name": cfg.experiment.name,
            "max_drop_pp": max_drop_pp,
            "confidence": confidence,
            "time_budget_s": time_budget_s,
            "max_trials": max_trials,
            "settings": settings,
            "splits": {
                "train": len(splits.train),
                "validation": len(rank),
                "confirmation": 0 if conf is None else len(conf),
                "test": len(splits.test),
            },
            "drops": drops,
            "test": test,
            "result": result.to_dict(),
            "wall_time_s": round(time.perf_counter() - start, 3),
            "files": {"best": jz_auto.BEST_FILE, "journal": jz_auto.JOURNAL_FILE},
        }
        try:
            jz_auto.write_report(result, out, test_metrics=test, drops=drops)
            summary["files"]["report"] = "report.md"
        except ImportError as e:
            log(f"jaxzip auto: no report written: {e}")
        summary = jsonable(summary)
        atomic_write_json(out / AUTO_FILE, summary)
        return summary
