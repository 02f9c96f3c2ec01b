"""Tests for jaxzip/pipeline/_runner.py: stage order, output files, failure behaviour.

These use small fake stages so they run without training; the real stages run
end to end in tests/test_cli.py.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.config import ExperimentConfig, load_config
from jaxzip.pipeline import (
    CONFIG_FILE,
    PARAMS_FILE,
    RESULTS_FILE,
    Stage,
    default_stages,
    run_experiment,
)
from jaxzip.pipeline._cache import CACHE_DIR, DONE_FILE
from jaxzip.pipeline._runner import _jsonable


def _fake_stages(calls: list[str]) -> list[Stage]:
    def first(cfg, state):
        calls.append("first")
        assert state.progress is False
        return {"params": {"w": jnp.arange(3.0)}}, {"n": np.int64(3), "x": np.float32(0.5)}

    def second(cfg, state):
        calls.append("second")
        w = state.params["w"] * 2  # sees what the first stage produced
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


def test_failure_midway_keeps_the_previous_outputs(tmp_path):
    # Issue 19.3b: a failed rerun must not destroy the previous run's results; its own
    # config is kept in .pending/ so the failure is identifiable.
    (tmp_path / RESULTS_FILE).write_text("{}")
    (tmp_path / PARAMS_FILE).write_bytes(b"old")

    def boom(cfg, state):
        raise jz.DataError("the data is gone")

    stages = [*_fake_stages([]), Stage("boom", boom)]
    cfg = ExperimentConfig()
    with pytest.raises(jz.DataError, match="the data is gone"):
        run_experiment(cfg, tmp_path, progress=False, stages=stages)
    assert (tmp_path / RESULTS_FILE).read_text() == "{}"
    assert (tmp_path / PARAMS_FILE).read_bytes() == b"old"
    assert not (tmp_path / CONFIG_FILE).exists()
    assert load_config(tmp_path / jz.pipeline.PENDING_DIR / CONFIG_FILE) == cfg
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        ".jaxzip.lock",
        jz.pipeline.PENDING_DIR,
        PARAMS_FILE,
        RESULTS_FILE,
    ]  # no temp files


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


# --- the stage cache, with fake stages that declare what they depend on -----------------


def _cached_stages(calls: list[str], fail_at: str = "") -> list[Stage]:
    """``a`` -> ``b`` -> ``c``: params arrays, a JSON report and a file; ``b`` depends on train."""

    def a(cfg, state):
        calls.append("a")
        return {"params": {"w": jnp.arange(3.0)}}, {"n": 3}

    def b(cfg, state):
        calls.append("b")
        if fail_at == "b":
            raise jz.DataError("disk on fire")
        w = state.params["w"] * cfg.train.epochs
        (state.out_dir / "b.txt").write_text(f"{float(w.sum())}")
        return {"params": {"w": w}, "reports": {"b": {"sum": w.sum()}}}, {"total": float(w.sum())}

    def c(cfg, state):
        calls.append("c")
        if fail_at == "c":
            raise jz.DataError("disk on fire")
        return {}, {"seen": state.reports["b"]["sum"]}

    return [
        Stage("a", a, provides=("params",), depends=lambda cfg: {"seed": cfg.experiment.seed}),
        Stage(
            "b",
            b,
            needs=("params",),
            provides=("params", "reports"),
            depends=lambda cfg: {"epochs": cfg.train.epochs},
            files=lambda cfg: ("b.txt",),
        ),
        Stage("c", c, needs=("reports",), depends=lambda cfg: {}),
    ]


def _run_fake(cfg, out, calls, fail_at="", **kw):
    calls.clear()
    stages = _cached_stages(calls, fail_at)
    return run_experiment(cfg, out, progress=False, report=False, stages=stages, **kw)


def _dirs(out) -> list[str]:
    return sorted(p.name for p in (out / CACHE_DIR).iterdir())


def test_cache_hit_restores_every_stage(tmp_path):
    calls: list[str] = []
    cfg = ExperimentConfig(train=jz.config.TrainConfig(epochs=2))
    first = _run_fake(cfg, tmp_path, calls)
    assert calls == ["a", "b", "c"] and first["cached"] == []
    assert [d[:-13] for d in _dirs(tmp_path)] == ["01-a", "02-b", "03-c"]
    assert all((tmp_path / CACHE_DIR / d / DONE_FILE).is_file() for d in _dirs(tmp_path))
    (tmp_path / "b.txt").write_text("clobbered")
    second = _run_fake(cfg, tmp_path, calls)
    assert calls == [] and second["cached"] == ["a", "b", "c"]
    assert second["metrics"] == first["metrics"] == {"n": 3, "total": 6.0, "seen": 6.0}
    assert (tmp_path / "b.txt").read_text() == "6.0"  # the stage's file is restored
    params = jz.train.load_params(tmp_path / PARAMS_FILE, {"w": jnp.zeros(3)})
    np.testing.assert_array_equal(params["w"], [0.0, 2.0, 4.0])


def test_changed_section_reruns_that_stage_and_later_ones(tmp_path):
    calls: list[str] = []
    _run_fake(ExperimentConfig(train=jz.config.TrainConfig(epochs=2)), tmp_path, calls)
    before = _dirs(tmp_path)
    results = _run_fake(ExperimentConfig(train=jz.config.TrainConfig(epochs=3)), tmp_path, calls)
    assert calls == ["b", "c"] and results["cached"] == ["a"]
    assert results["metrics"]["seen"] == 9.0
    after = _dirs(tmp_path)  # one directory per position: the stale ones are replaced
    assert after[0] == before[0] and after[1:] != before[1:] and len(after) == 3
    results = _run_fake(
        ExperimentConfig(
            experiment=jz.config.ExperimentSection(seed=1), train=jz.config.TrainConfig(epochs=3)
        ),
        tmp_path,
        calls,
    )
    assert calls == ["a", "b", "c"]  # the first stage changed: the whole chain reruns


def test_torn_stage_directory_is_rerun(tmp_path):
    calls: list[str] = []
    cfg = ExperimentConfig()
    _run_fake(cfg, tmp_path, calls)
    (tmp_path / CACHE_DIR / _dirs(tmp_path)[1] / DONE_FILE).unlink()
    results = _run_fake(cfg, tmp_path, calls)
    assert calls == ["b"] and results["cached"] == ["a", "c"]
    assert (tmp_path / CACHE_DIR / _dirs(tmp_path)[1] / DONE_FILE).is_file()


def test_crash_keeps_finished_stages_cached(tmp_path):
    calls: list[str] = []
    cfg = ExperimentConfig()
    with pytest.raises(jz.DataError, match="disk on fire"):
        _run_fake(cfg, tmp_path, calls, fail_at="c")
    assert not (tmp_path / RESULTS_FILE).exists()
    assert [d[:-13] for d in _dirs(tmp_path)] == ["01-a", "02-b"]
    results = _run_fake(cfg, tmp_path, calls)
    assert calls == ["c"] and results["cached"] == ["a", "b"]


def test_use_cache_false_runs_everything_and_leaves_the_cache(tmp_path):
    calls: list[str] = []
    cfg = ExperimentConfig()
    _run_fake(cfg, tmp_path, calls)
    before = {d: (tmp_path / CACHE_DIR / d / DONE_FILE).read_bytes() for d in _dirs(tmp_path)}
    results = _run_fake(cfg, tmp_path, calls, use_cache=False)
    assert calls == ["a", "b", "c"] and results["cached"] == []
    assert {
        d: (tmp_path / CACHE_DIR / d / DONE_FILE).read_bytes() for d in _dirs(tmp_path)
    } == before


def test_stage_without_depends_ends_caching_from_there_on(tmp_path):
    calls: list[str] = []
    stages = _cached_stages(calls)
    stages[1] = dataclasses.replace(stages[1], depends=None)
    for _ in range(2):
        calls.clear()
        run_experiment(ExperimentConfig(), tmp_path, progress=False, report=False, stages=stages)
    assert calls == ["b", "c"] and _dirs(tmp_path) == _dirs(tmp_path)[:1]


def test_custom_stage_order_is_checked(tmp_path):
    needy = Stage("needy", lambda cfg, state: ({}, {}), needs=("params",))
    with pytest.raises(jz.ConfigError, match="'needy' at position 1 needs 'params'"):
        run_experiment(ExperimentConfig(), tmp_path, stages=[needy])
    assert not list(tmp_path.iterdir())  # nothing written
    odd = Stage("odd", lambda cfg, state: ({}, {}), provides=("b_report",))
    with pytest.raises(jz.ConfigError, match="'odd' at position 1 names 'b_report', which is not"):
        run_experiment(ExperimentConfig(), tmp_path, stages=[odd])
    assert not list(tmp_path.iterdir())
    sneaky = Stage("sneaky", lambda cfg, state: ({"b_report": 1}, {}))
    with pytest.raises(ValueError, match="'b_report' is not a field a stage can set"):
        run_experiment(ExperimentConfig(), tmp_path, stages=[sneaky], report=False)
    with pytest.raises(TypeError, match="use_cache"):
        run_experiment(ExperimentConfig(), tmp_path, stages=[], use_cache=1)


def test_a_model_function_is_stored_as_its_arch_and_one_without_an_arch_is_not_cached(tmp_path):
    from jaxzip.config import make_module, model_arch

    calls: list[str] = []
    arch = model_arch("mlp", [4], 0.0, 0.0)
    splits = jz.data.load_splits("digits", val_fraction=0.1, seed=0, progress=False)
    x = splits.train.x[:2]
    params = jz.models.init_params(make_module(arch, 10), jax.random.key(0), x)

    def data(cfg, state):
        return {"splits": splits}, {}

    def model(cfg, state):  # the arch beside the function: restorable
        calls.append("model")
        return {"apply_fn": jz.models.linen_apply_fn(make_module(arch, 10)), "arch": arch}, {}

    def plain(cfg, state):  # a function without an arch: not stored, so it reruns
        calls.append("plain")
        return {"apply_fn": state.apply_fn}, {}

    def use(cfg, state):  # uncached: runs the function the state holds every time
        calls.append("use")
        return {}, {"out": np.asarray(state.apply_fn(params, x, train=False, key=None)).tolist()}

    stages = [
        Stage("data", data, provides=("splits",), depends=lambda cfg: {}, cache=False),
        Stage("model", model, provides=("apply_fn", "arch"), depends=lambda cfg: {}),
        Stage("plain", plain, provides=("apply_fn",), depends=lambda cfg: {}),
        Stage("use", use, needs=("apply_fn",), depends=lambda cfg: {}, cache=False),
    ]

    def run():
        calls.clear()
        return run_experiment(
            ExperimentConfig(), tmp_path, progress=False, report=False, stages=stages
        )

    first = run()
    assert calls == ["model", "plain", "use"]
    second = run()
    assert calls == ["plain", "use"] and second["cached"] == ["model"]
    assert second["metrics"]["out"] == first["metrics"]["out"]  # the rebuilt model's logits
