"""Tests for jaxzip/pipeline/_distill_stage.py (the shared tiny run is in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.config import ExperimentConfig
from jaxzip.pipeline import RunState
from jaxzip.pipeline._core_stages import arch_apply_fn
from jaxzip.pipeline._distill_stage import distill_stage


def test_student_replaces_the_teacher(full_run):
    out, _, results = full_run
    d = results["distill"]
    assert d["student"] == {
        "name": "mlp",
        "widths": [8],
        "dropout_rate": 0.0,
        "input_dropout_rate": 0.0,
    }
    # teacher 64->32->10, student 64->8->10 (digits are 8x8)
    assert d["teacher_param_count"] == 64 * 32 + 32 + 32 * 10 + 10
    assert d["student_param_count"] == 64 * 8 + 8 + 8 * 10 + 10
    assert len(d["history"]) == 1 and np.isfinite(d["history"][0]["train_loss"])
    assert 0.0 <= d["student_val_accuracy"] <= 1.0
    with np.load(out / "params.npz") as f:  # the final params are the student's
        assert f["Dense_0/kernel"].shape == (64, 8)
    # 1 epoch of KD from a 1-epoch teacher learns something: twice chance on 10 classes
    assert results["metrics"]["student_val_accuracy"] > 0.2


def test_rebuilt_apply_fn_runs_the_restored_params(full_run):
    out, _, results = full_run
    splits = jz.data.load_splits("digits", val_fraction=0.1, seed=0, progress=False)
    apply_fn = arch_apply_fn(results["distill"]["student"], splits)  # as on restore
    like = {
        "Dense_0": {"kernel": jnp.zeros((64, 8)), "bias": jnp.zeros(8)},
        "Dense_1": {"kernel": jnp.zeros((8, 10)), "bias": jnp.zeros(10)},
    }
    params = jz.train.load_params(out / "params.npz", like)
    m = jz.train.evaluate(apply_fn, params, splits.test)
    assert float(m["accuracy"]) == pytest.approx(results["metrics"]["test_accuracy"], abs=1e-6)


def test_without_a_distill_section():
    with pytest.raises(ValueError, match=r"no \[distill\] section"):
        distill_stage(ExperimentConfig(), RunState(out_dir=Path("o"), params={}))


def test_augment_shift_gives_the_step_shifted_consistent_views(tmp_path, spy):
    from jaxzip.config import apply_overrides, load_config
    from jaxzip.pipeline import run_experiment

    calls = spy(jz.distill, "fit")
    stages = '["data", "model", "train", "distill"]'
    base = [
        "model.name=mlp",
        "model.widths=[16]",
        "train.epochs=1",
        "train.augment_shift=2",
        "distill.widths=[8]",
        "distill.epochs=1",
        f"experiment.stages={stages}",
    ]
    for shift in (0, 1):
        cfg = apply_overrides(load_config(), [*base, f"distill.augment_shift={shift}"])
        run_experiment(cfg, tmp_path / f"run{shift}", progress=False, report=False)
    # [train]'s shift is not the student's: off unless [distill] asks for it
    seen = [kwargs.get("augment") for _, kwargs in calls]
    assert seen == [None, jz.train.RandomShift(pixels=1)]
