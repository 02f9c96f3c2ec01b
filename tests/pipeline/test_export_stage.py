"""Tests for jaxzip/pipeline/_export_stage.py (the shared tiny run is in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import jaxzip as jz
from jaxzip.config import ExperimentConfig, ExportConfig
from jaxzip.pipeline import RunState
from jaxzip.pipeline._export_stage import export_files, export_stage


def test_export_loads_with_deploy_and_matches_the_model(full_run):
    out, _, results = full_run
    e = results["export"]
    assert e["file"] == "m.jzx" and e["input_shape"] == [None, 8, 8, 1]
    assert e["output_shape"] == [None, 10] and e["export_max_abs_diff"] < 1e-4
    assert e["export_bytes"] == (out / "m.jzx").stat().st_size
    f = jz.deploy.load_exported(out / "m.jzx")
    splits = jz.data.load_splits("digits", val_fraction=0.1, seed=0, progress=False)
    predictions = np.argmax(np.asarray(f(splits.test.x)), axis=-1)
    accuracy = float(np.mean(predictions == splits.test.y))
    assert accuracy == pytest.approx(results["metrics"]["test_accuracy"], abs=1e-6)


def test_export_files_and_missing_section():
    assert export_files(ExperimentConfig()) == ()
    assert export_files(ExperimentConfig(export=ExportConfig(file="a.jzx"))) == ("a.jzx",)
    with pytest.raises(ValueError, match=r"no \[export\] section"):
        export_stage(ExperimentConfig(), RunState(out_dir=Path("o")))
