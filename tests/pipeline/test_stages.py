"""Tests for jaxzip/pipeline/_stages.py: the named stages run and restore through the cache."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from jaxzip.pipeline import apply_overrides, default_stages, run_experiment
from jaxzip.pipeline._cache import CACHE_DIR
from jaxzip.pipeline._report import REPORT_FILE
from jaxzip.pipeline._stages import named_stage


def _spied(cfg, calls):
    def spy(stage):
        def run(cfg, ctx):
            calls.append(stage.name)
            return stage.run(cfg, ctx)

        return dataclasses.replace(stage, run=run)

    return [spy(s) for s in default_stages(cfg)]


def test_named_stage_declares_the_plan_and_rejects_unknown_names():
    s = named_stage("distill")
    assert s.needs == ("splits", "params", "apply_fn") and "params" in s.provides
    assert s.rebuild is not None and s.depends is not None
    assert not named_stage("data").cache and not named_stage("report").cache
    with pytest.raises(ValueError, match="got 'quantize'"):
        named_stage("quantize")


def test_every_stage_ran_and_its_outputs_were_stored(full_run):
    out, _, results = full_run
    assert list(results["stages"]) == ["data", "model", "train", "distill", "prune", "evaluate",
                                       "export", "report"]  # fmt: skip
    assert results["cached"] == []
    names = sorted(p.name[:-13] for p in (out / CACHE_DIR).iterdir())
    assert names == ["02-model", "03-train", "04-distill", "05-prune", "06-evaluate", "07-export"]
    report = (out / REPORT_FILE).read_text()
    assert report.startswith("# digits_small_cnn\n") and "| evaluate | test_accuracy |" in report
    assert results["metrics"]["sparsity"] == 0.5
    assert "dense_flops" in results["metrics"]  # FLOPs of the student's layers


def test_rerun_restores_every_stage_and_the_same_results(full_run, tmp_path):
    out, cfg, first = full_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    calls: list[str] = []
    again = run_experiment(cfg, copy, progress=False, report=False, stages=_spied(cfg, calls))
    assert calls == ["data", "report"]
    assert again["cached"] == ["model", "train", "distill", "prune", "evaluate", "export"]
    for key in ("metrics", "distill", "prune", "export", "history"):
        assert again[key] == first[key], key
    assert (copy / "m.jzx").read_bytes() == (out / "m.jzx").read_bytes()
    assert (copy / "params.npz").read_bytes() == (out / "params.npz").read_bytes()


def test_changed_prune_reruns_prune_and_later_stages_only(full_run, tmp_path):
    out, cfg, first = full_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    changed = apply_overrides(cfg, ["prune.sparsity=0.75"])
    calls: list[str] = []
    results = run_experiment(
        changed, copy, progress=False, report=False, stages=_spied(changed, calls)
    )
    assert calls == ["data", "prune", "evaluate", "export", "report"]
    assert results["cached"] == ["model", "train", "distill"]
    assert results["metrics"]["sparsity"] == 0.75
    assert results["distill"] == first["distill"]


def test_model_input_dropout_reaches_the_network_and_the_rebuilt_one():
    import jax
    import numpy as np

    import jaxzip as jz
    from jaxzip.pipeline import ExperimentConfig, ModelConfig
    from jaxzip.pipeline._core_stages import build_model

    cfg = ExperimentConfig(model=ModelConfig(name="mlp", widths=[8], input_dropout_rate=0.5))
    splits = jz.data.load_splits("digits", val_fraction=0.1, seed=0, progress=False)
    ctx, _ = build_model(cfg, {"splits": splits})
    assert ctx["arch"]["input_dropout_rate"] == 0.5
    x = splits.train.x[:4]
    rebuilt = named_stage("model").rebuild(cfg, {"splits": splits})["apply_fn"]
    for apply_fn in (ctx["apply_fn"], rebuilt):
        clean = apply_fn(ctx["params"], x, train=False, key=None)
        noisy = apply_fn(ctx["params"], x, train=True, key=jax.random.key(0))
        # no hidden dropout: only dropped input pixels can change the training logits
        assert not np.allclose(clean, noisy)
