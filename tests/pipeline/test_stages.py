"""Tests for jaxzip/pipeline/_stages.py: the named stages run and restore through the cache."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from jaxzip.config import apply_overrides
from jaxzip.pipeline import default_stages, run_experiment
from jaxzip.pipeline._cache import CACHE_DIR
from jaxzip.pipeline._report import REPORT_FILE
from jaxzip.pipeline._stages import named_stage


def _spied(cfg, calls):
    def spy(stage):
        def run(cfg, state):
            calls.append(stage.name)
            return stage.run(cfg, state)

        return dataclasses.replace(stage, run=run)

    return [spy(s) for s in default_stages(cfg)]


def test_named_stage_declares_the_plan_and_rejects_unknown_names():
    s = named_stage("distill")
    assert s.needs == ("splits", "params", "apply_fn") and "params" in s.provides
    assert s.depends is not None and "arch" in s.provides  # apply_fn is stored as its arch
    assert not named_stage("data").cache and not named_stage("report").cache
    with pytest.raises(ValueError, match="got 'sparsify'"):
        named_stage("sparsify")


def test_every_stage_ran_and_its_outputs_were_stored(full_run):
    out, _, results = full_run
    assert list(results["stages"]) == [
        "data",
        "model",
        "train",
        "distill",
        "prune",
        "evaluate",
        "export",
        "report",
    ]
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
    from jaxzip.config import ExperimentConfig, ModelConfig
    from jaxzip.pipeline import RunState
    from jaxzip.pipeline._core_stages import arch_apply_fn, build_model

    cfg = ExperimentConfig(model=ModelConfig(name="mlp", widths=[8], input_dropout_rate=0.5))
    splits = jz.data.load_splits("digits", val_fraction=0.1, seed=0, progress=False)
    state = RunState(out_dir=Path("unused"), splits=splits)
    state = state.updated(build_model(cfg, state)[0])
    assert state.arch["input_dropout_rate"] == 0.5
    x = splits.train.x[:4]
    rebuilt = arch_apply_fn(state.arch, splits)  # what a restored run uses
    for apply_fn in (state.apply_fn, rebuilt):
        clean = apply_fn(state.params, x, train=False, key=None)
        noisy = apply_fn(state.params, x, train=True, key=jax.random.key(0))
        # no hidden dropout: only dropped input pixels can change the training logits
        assert not np.allclose(clean, noisy)


def test_evaluate_int8_reports_the_int8_model_and_restores(tmp_path):
    import jax

    from jaxzip import data, models, quant, train
    from jaxzip.config import load_config, make_model
    from jaxzip.paths import min_ndim

    stages = '["data", "model", "train", "evaluate_int8", "evaluate"]'
    cfg = apply_overrides(
        load_config(),
        ["model.name=mlp", "model.widths=[16]", "train.epochs=1", f"experiment.stages={stages}"],
    )
    out = tmp_path / "run"
    first = run_experiment(cfg, out, progress=False, report=False)
    m = first["stages"]["evaluate_int8"]
    assert set(m) == {
        f"int8_{p}_{k}" for p in ("val", "test") for k in ("accuracy", "error", "errors", "loss")
    }
    # by hand: the trained params (params.npz), kernels int8 per output channel, dequantized
    splits = data.load_splits(
        cfg.data.name, val_fraction=cfg.data.val_fraction, seed=cfg.experiment.seed
    )
    apply_fn = models.linen_apply_fn(make_model("mlp", widths=(16,), num_classes=10))
    like = jax.eval_shape(
        lambda: models.init_params(
            make_model("mlp", widths=(16,)), jax.random.key(0), splits.train.x[:1]
        )
    )
    params = train.load_params(out / "params.npz", like)
    q = quant.quantize_params(params, [(min_ndim(2), quant.QuantSpec(bits=8, axes=(-1,)))])
    assert quant.is_quantized(q["Dense_0"]["kernel"]) and not quant.is_quantized(
        q["Dense_0"]["bias"]
    )
    hand = train.evaluate(apply_fn, quant.dequantize_params(q), splits.test)
    assert hand["errors"] == m["int8_test_errors"]
    # int8 is close to the float model on this small MLP, but not the float model itself
    fm = first["stages"]["evaluate"]
    assert abs(m["int8_test_accuracy"] - fm["test_accuracy"]) <= 0.02
    assert m["int8_test_loss"] != fm["test_loss"]
    again = run_experiment(cfg, out, progress=False, report=False)
    assert "evaluate_int8" in again["cached"]
    assert again["stages"]["evaluate_int8"] == m
