"""The ``[prune]`` stage: iterative magnitude pruning with retraining, and its report.

Round ``r`` prunes the selected weights to ``iterative_rounds(sparsity,
rounds=rounds)[r - 1]`` by magnitude (scores from the already masked params,
and the new mask ANDed with the old one, so a pruned weight stays pruned),
zeroes them, and retrains for ``epochs_per_round`` epochs with
``optax.chain(<[train]'s optimizer at prune.learning_rate>, keep_masked(mask))``
(on the labels, or with ``distill_alpha > 0`` distilling from the model before pruning).
The final params are checked to hold exact zeros wherever the mask prunes.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip import prune as jz_prune
from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip._types import Mask, Params
from jaxzip.config import ExperimentConfig, flop_layers, lookup, make_train_tx, run_key
from jaxzip.paths import select
from jaxzip.pipeline._core_stages import checkpoint_in, evaluate_splits
from jaxzip.pipeline._rounds import Rounds, RoundSaver
from jaxzip.pipeline._stage_utils import (
    calibration_batches,
    describe_val,
    jsonable,
    leaked,
    log,
    retrain,
    val_figures,
)
from jaxzip.pipeline._state import RunState

__all__ = ["evaluate_dense", "prune_stage"]


def _zeros_stats(params: Params, where: str | None) -> dict[str, Any]:
    """:func:`jaxzip.prune.mask_stats` of where the params are nonzero (real zeros, not the mask)."""
    return jz_prune.mask_stats(jz_prune.nonzero_mask(params), where=where)


def evaluate_dense(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: the trained (or loaded) dense model's val/test metrics, as ``dense_*``."""
    return {}, evaluate_splits(cfg, state, state.params, prefix="dense_", loss=False)


def _oneshot(cfg: ExperimentConfig, state: RunState, pruner: Any, params: Any) -> tuple:
    """``(params, mask)`` of a one-shot ``[prune] method`` on the calibration sample."""
    p, apply_fn = cfg.prune, state.apply_fn
    nm = p.n_of_m()
    batches = calibration_batches(cfg, state.splits.train, p, name="prune/calibration")
    log(f"prune: {p.method} on {sum(len(b) for b in batches)} calibration examples")
    try:
        return pruner.oneshot(
            lambda w, x: apply_fn(w, x, train=False, key=None),
            params,
            batches,
            sparsity=None if nm else p.sparsity,
            structure=None if nm is None else jz_prune.NByM(*nm),
            where=p.where,
            progress=state.progress,
        )
    except ValueError as e:
        hint = (  # a conv of one input channel cannot hold 2:4 groups: leave it out
            f" (N:M groups run along each kernel's last input axis; prune.where {p.where!r} "
            "chooses the kernels: leave that one out)"
            if nm is not None and "NByM" in str(e)
            else ""
        )
        raise ConfigError(f"prune.method = {p.method!r}: {e}{hint}") from None


def prune_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: prune ``cfg.prune.rounds`` times, retraining after each round.

    Reads ``splits``, ``apply_fn``, ``params`` and ``progress`` from ``state``;
    returns the pruned ``params``, the final ``mask`` and the detailed report
    ``prune`` (per round: target and measured sparsity, val
    accuracy, retraining history; per layer: size, nonzeros, sparsity), and
    flat metrics for the results table. One line per round goes to stderr.

    Nothing finished is lost to a kill: each round's retraining checkpoints
    into ``state.scratch`` (``round<r>``), and each finished round's params,
    mask and records are kept there too (:class:`RoundSaver`), so a rerun
    starts after the last finished round, from inside the one that was
    running, and ends as a run that never stopped.

    Raises:
      ConfigError: ``prune.where`` selects no weight of the model.
      RuntimeError: a weight the mask prunes is nonzero after retraining (a bug).
    """
    p, t = cfg.prune, cfg.train
    if p is None:
        raise ValueError("prune_stage: the config has no [prune] section")
    splits, apply_fn, params = state.splits, state.apply_fn, state.params
    progress, dense = state.progress, state.params  # the teacher of retraining with distill_alpha
    try:
        select(params, p.where)
    except ValueError as e:
        raise ConfigError(f"prune.where: {e}") from None
    allocation = lookup("allocation", p.allocation, where="prune.allocation")
    pruner = lookup("pruner", p.method, where="prune.method")
    steps_per_epoch = len(splits.train) // t.batch_size
    mask: Mask = jax.tree.map(lambda x: jnp.ones(jnp.shape(x), bool), params)
    # the last round hits the configured sparsity exactly (no float drift)
    targets = (*jz_prune.iterative_rounds(p.sparsity, rounds=p.rounds)[:-1], p.sparsity)
    rounds: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {"rounds": p.rounds, "target_sparsity": p.sparsity}
    saver = RoundSaver(None if state.scratch is None else state.scratch / "rounds", p.rounds)
    done = saver.restore({"params": params, "mask": mask})
    if done is not None:
        params, mask = done.trees["params"], done.trees["mask"]
        rounds, metrics = done.records, done.metrics
        log(f"prune: rounds 1-{done.done} restored from {saver.dir}")
    for r, target in enumerate(targets, start=1):
        if done is not None and r <= done.done:
            continue
        start = time.perf_counter()
        if pruner.oneshot is None:
            new = jz_prune.magnitude_mask(
                jz_prune.apply_mask(params, mask),
                sparsity=target,
                where=p.where,
                allocation=allocation,
            )
        else:  # rounds = 1 (the config checks it)
            params, new = _oneshot(cfg, state, pruner, params)
        mask = jz_prune.mask_and(mask, new)
        params = jz_prune.apply_mask(params, mask)
        history: list[dict[str, Any]] = []
        if p.epochs_per_round > 0:
            tx = optax.chain(
                make_train_tx(
                    t,
                    learning_rate=p.learning_rate,
                    epochs=p.epochs_per_round,
                    steps_per_epoch=steps_per_epoch,
                ),
                jz_prune.keep_masked(mask),  # copies the mask into its state
            )
            params, history = retrain(
                apply_fn,
                params,
                tx,
                splits.train,
                prune=p,
                train=t,
                teacher=dense,
                epochs=p.epochs_per_round,
                key=jax.random.fold_in(run_key(cfg, "prune"), r),
                progress=bool(progress),
                check_finite=True,
                checkpoint=checkpoint_in(state, f"round{r}"),
            )
        val = jz_train.evaluate(apply_fn, params, splits.val, batch_size=t.eval_batch_size)
        selected = _zeros_stats(params, p.where)
        overall = _zeros_stats(params, None)
        record = {
            "round": r,
            "target_sparsity": target,
            "sparsity": selected["sparsity"],
            "overall_sparsity": overall["sparsity"],
            **val_figures(val),
            "val_error": float(val["error"]),
            "epochs": len(history),
            "seconds": time.perf_counter() - start,
            "history": history,
        }
        rounds.append(record)
        metrics[f"round{r}_sparsity"] = record["sparsity"]
        metrics.update({f"round{r}_{k}": v for k, v in val_figures(val).items()})
        log(
            f"prune round {r}/{p.rounds}: sparsity {record['sparsity']:.4f} "
            f"(target {target:.4f}, overall {record['overall_sparsity']:.4f}), "
            f"{describe_val(record)}, {record['epochs']} epochs ({record['seconds']:.1f}s)"
        )
        rounds, metrics = jsonable(rounds), jsonable(metrics)  # as restored ones will be
        saver.save(Rounds(r, {"params": params, "mask": mask}, rounds, metrics))

    leaked_count = leaked(params, mask)
    if leaked_count:
        raise RuntimeError(
            f"prune_stage: {leaked_count} pruned weights are nonzero after retraining"
        )
    selected = _zeros_stats(params, p.where)
    overall = _zeros_stats(params, None)
    metrics.update(
        retrain_epochs=sum(rec["epochs"] for rec in rounds),
        sparsity=selected["sparsity"],
        nonzeros=selected["nonzeros"],
        overall_sparsity=overall["sparsity"],
        overall_nonzeros=overall["nonzeros"],
        compression=overall["size"] / max(1, overall["nonzeros"]),
    )
    for path, layer in selected["layers"].items():
        metrics[f"sparsity[{path}]"] = layer["sparsity"]
    report: dict[str, Any] = {
        "rounds": rounds,
        "selected": selected,
        "overall": {k: v for k, v in overall.items() if k != "layers"},
        "mask": {k: v for k, v in jz_prune.mask_stats(mask, where=p.where).items()},
    }
    layers = None if state.arch is None else flop_layers(state.arch)
    if layers is not None:
        shape = tuple(np.shape(splits.train.x)[1:])
        report["flops"] = jz_prune.flops(params, None, shape, layers=layers)
        metrics["dense_flops"] = report["flops"]["dense"]
        metrics["sparse_flops"] = report["flops"]["sparse"]
    return {"params": params, "mask": mask, "reports": {"prune": jsonable(report)}}, metrics
