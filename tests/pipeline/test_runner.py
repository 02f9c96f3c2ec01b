"""Tests for jaxzip/pipeline/_runner.py: stage order, output files, failure behaviour.

These use small fake stages so they run without training; the real stages run
end to end in tests/test_cli.py.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.pipeline import (
    CONFIG_FILE,
    PARAMS_FILE,
    RESULTS_FILE,
    ExperimentConfig,
    Stage,
    default_stages,
    load_config,
    run_experiment,
)
from jaxzip.pipeline._runner import _jsonable


def _fake_stages(calls: list[str]) -> list[Stage]:
    def first(cfg, ctx):
        calls.append("first")
        assert ctx["progress"] is False
        return {"params": {"w": jnp.arange(3.0)}}, {"n": np.int64(3), "x": np.float32(0.5)}

    def second(cfg, ctx):
        calls.append("second")
        w = ctx["params"]["w"] * 2  # sees what the first stage produced
        history = [{"epoch": 1, "train_loss": jnp.float32(0.25)}]
        return {"params": {"w": w}, "history": history}, {"total": float(w.sum())}

    return [Stage("first", first), Stage("second", second)]


def test_runs_stages_in_order_and_writes_outputs(tmp_path, capsys):
    calls: list[str] = []
    cfg = ExperimentConfig()
    out = tmp_path / "run"
    results = run_experiment(cfg, out, progress=False, stages=_fake_stages(calls))
    assert calls == ["first", "second"]
    assert results["metrics"] == {"n": 3, "x": 0.5, "total": 6.0}
    assert results["stages"] == {"first": {"n": 3, "x": 0.5}, "second": {"total": 6.0}}
    assert set(results["wall_time_s"]) == {"first", "second", "total"}
    assert results["history"] == [{"epoch": 1, "train_loss": 0.25}]
    assert results["config_name"] == cfg.experiment.name
    assert results["backend"] == jax.default_backend()
    assert json.loads((out / RESULTS_FILE).read_text()) == results
    assert load_config(out / CONFIG_FILE) == cfg
    params = jz.train.load_params(out / PARAMS_FILE, {"w": jnp.zeros(3)})
    np.testing.assert_array_equal(params["w"], [0.0, 2.0, 4.0])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["stage", "metric", "value"]
    assert ["second", "total", "6.00"] in [line.split() for line in printed]


def test_report_false_prints_nothing(tmp_path, capsys):
    run_experiment(ExperimentConfig(), tmp_path, progress=False, report=False, stages=[])
    assert capsys.readouterr().out == ""
    assert not (tmp_path / PARAMS_FILE).exists()  # no stage made params
    assert (tmp_path / RESULTS_FILE).exists()


def test_failure_midway_leaves_config_and_no_results(tmp_path):
    # An earlier run's results must not survive next to the new run's config.
    (tmp_path / RESULTS_FILE).write_text("{}")
    (tmp_path / PARAMS_FILE).write_bytes(b"old")

    def boom(cfg, ctx):
        raise jz.DataError("the data is gone")

    stages = [*_fake_stages([]), Stage("boom", boom)]
    cfg = ExperimentConfig()
    with pytest.raises(jz.DataError, match="the data is gone"):
        run_experiment(cfg, tmp_path, progress=False, stages=stages)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE]  # no temp files either
    assert load_config(tmp_path / CONFIG_FILE) == cfg


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="ExperimentConfig"):
        run_experiment({"train": {}}, tmp_path)  # type: ignore[arg-type]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        run_experiment(ExperimentConfig(), tmp_path / "file", stages=[])


def test_default_stages():
    assert [s.name for s in default_stages(ExperimentConfig())] == [
        "data",
        "model",
        "train",
        "evaluate",
    ]


def test_jsonable():
    obj = {"a": np.float32(0.5), "b": jnp.int32(2), "c": (np.nan, float("inf")), 3: [np.ones(2)]}
    assert _jsonable(obj) == {"a": 0.5, "b": 2, "c": [None, None], "3": [[1.0, 1.0]]}
    json.dumps(_jsonable(obj), allow_nan=False)
