"""Tests of jaxzip/pipeline/_auto.py (``jaxzip auto``) on digits with a tiny MLP."""

from __future__ import annotations

import json

import pytest

from jaxzip import auto as jz_auto
from jaxzip._errors import ConfigError
from jaxzip.cli import main, parse_duration
from jaxzip.config import apply_overrides, load_config
from jaxzip.pipeline import run_auto

SPACE = jz_auto.SearchSpace(sparsities=(0.0, 0.5), bits=(4,), kmeans_iters=5)


def test_run_auto_writes_everything(write_config, digits_auto_toml, tmp_path):
    cfg = load_config(write_config(digits_auto_toml))
    out = tmp_path / "out"
    s = run_auto(cfg, out, max_drop_pp=5.0, max_trials=1, space=SPACE, progress=False)
    for name in (
        "config.toml",
        "journal.jsonl",
        "best.jz",
        "best.json",
        "auto.json",
        "report.md",
        "trials.png",
        "sensitivity.png",
    ):
        assert (out / name).exists(), name
    assert json.loads((out / "auto.json").read_text()) == s
    res = s["result"]
    assert res["max_drop"] == pytest.approx(0.05) and len(res["trials"]) == 1
    assert res["stopped"] == "max_trials" and res["layers"] == ["Dense_0/kernel"]
    assert 0 < s["test"]["best_test_accuracy"] <= 1 and s["test"]["dense_test_accuracy"] > 0.3
    assert s["settings"]["finetune_epochs"] == 1
    # the journal holds the baseline (validation and confirmation), the probes, the candidate
    # and its confirmation, keyed
    lines = (out / "journal.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 2 + 2 + 1 + 1 and '"kind":"candidate"' in lines[-2]
    assert '"kind":"confirm"' in lines[-1]
    # another config may not reuse this journal
    other = apply_overrides(cfg, ["experiment.seed=0"])
    with pytest.raises(ConfigError, match="another config"):
        run_auto(other, out, max_drop_pp=5.0, max_trials=1, space=SPACE, progress=False)


def test_run_auto_bad_input(write_config, digits_auto_toml, tmp_path):
    cfg = load_config(write_config(digits_auto_toml))
    with pytest.raises(ValueError, match="max_drop"):
        run_auto(cfg, tmp_path, max_drop_pp=-0.1)
    with pytest.raises(TypeError, match="ExperimentConfig"):
        run_auto({"a": 1}, tmp_path, max_drop_pp=0.1)


def test_cli_auto_errors_are_one_line(write_config, digits_auto_toml, tmp_path, capsys):
    path = str(write_config(digits_auto_toml))
    cases = [
        (["auto", path, "--max-drop", "-1"], "--max-drop: expected"),
        (["auto", path, "--max-drop", "x"], "--max-drop: expected"),
        (["auto", path, "--max-drop", "0.1", "--time-budget", "0s"], "--time-budget"),
        (["auto", path, "--max-drop", "0.1", "--time-budget", "ten"], "--time-budget"),
        (["auto", path, "--max-drop", "0.1", "--max-trials", "0"], "--max-trials"),
        (["auto", str(tmp_path / "missing.toml"), "--max-drop", "0.1"], "missing.toml"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("jaxzip: error:") and needle in err[0], err
    assert main(["auto", path]) == 2  # --max-drop is required (argparse usage error)


def test_cli_auto_passes_settings_to_run_auto(
    write_config, digits_auto_toml, tmp_path, capsys, monkeypatch
):
    import jaxzip.pipeline

    seen = {}

    def fake_run_auto(cfg, out_dir, **kw):
        seen.update(cfg=cfg, out_dir=out_dir, **kw)
        best = {"bytes": 100, "ratio": 40.0, "accuracy": 0.98}
        return {
            "result": {"best": best, "feasible": True, "baseline": 0.99},
            "test": {"best_test_accuracy": 0.97},
        }

    monkeypatch.setattr(jaxzip.pipeline, "run_auto", fake_run_auto)
    argv = [
        "auto",
        str(write_config(digits_auto_toml)),
        "--max-drop",
        "0.1",
        "--time-budget",
        "10m",
        "--max-trials",
        "7",
        "--out",
        str(tmp_path / "o"),
        "--strategy",
        "optuna",
        "--no-progress",
        "--set",
        "experiment.seed=3",
    ]
    assert main(argv) == 0
    assert seen["max_drop_pp"] == 0.1 and seen["time_budget_s"] == 600.0
    assert seen["max_trials"] == 7 and seen["strategy"] == "optuna" and seen["progress"] is False
    assert seen["cfg"].experiment.seed == 3 and str(seen["out_dir"]) == str(tmp_path / "o")
    out = capsys.readouterr().out
    assert "best: 100 bytes, 40.00x" in out and "feasible" in out and "auto.json" in out


def test_parse_duration():
    assert parse_duration("600s") == 600.0 and parse_duration("10m") == 600.0
    assert parse_duration("1h") == 3600.0 and parse_duration("2.5") == 2.5
    for bad in ("0", "-1m", "inf", "10x", "", "nanh"):
        with pytest.raises(ValueError, match="--time-budget"):
            parse_duration(bad)
