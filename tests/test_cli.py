"""Tests for jaxzip/cli.py: help, exit codes, one-line errors, and one real end-to-end run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxzip as jz
from jaxzip.cli import main
from jaxzip.config import apply_overrides, load_config


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: jaxzip" in out and "run" in out and "examples:" in out
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for needle in ("--set", "--out", "--no-progress", "CONFIG", "train.epochs=", "examples:"):
        assert needle in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"jaxzip {jz.__version__}"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["run", "--bogus"], ["run", "a", "b"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage: jaxzip" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "missing.toml"], "missing.toml: config file not found"),
        (["run", "--set", "train.epocs=3"], "did you mean train.epochs?"),
        (["run", "--set", "trian.epochs=3"], "unknown section [trian]"),
        (["run", "--set", "train.epochs=three"], "--set train.epochs: expected an integer"),
        (["run", "--set", "train.epochs=true"], "True (a boolean)"),
        (["run", "--set", "train.epochs=0"], "expected an integer >= 1, got 0"),
        (["run", "--set", "epochs"], "expected SECTION.KEY=VALUE"),
    ],
)
def test_config_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch, one_error_line):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert needle in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()  # nothing written for a bad config


def test_bad_toml_file(capsys, tmp_path, one_error_line):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepochs = 3\n[model\n")
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and "invalid TOML" in line


def _mnist_args(data_dir: Path, out: Path) -> list[str]:
    return [
        "run",
        "--set",
        "data.name=mnist",
        "--set",
        f"data.data_dir={data_dir}",
        "--set",
        "data.download=false",
        "--out",
        str(out),
        "--no-progress",
    ]


def test_missing_data_directory(capsys, tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(tmp_path / "no_env_data"))
    monkeypatch.setenv("JAXZIP_CACHE_DIR", str(tmp_path / "no_cache"))
    assert main(_mnist_args(tmp_path / "does_not_exist", tmp_path / "out")) == 2
    line = one_error_line(capsys)
    assert "does_not_exist" in line or "mnist" in line


def test_corrupt_idx_file(capsys, tmp_path, monkeypatch, one_error_line):
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(tmp_path / "no_env_data"))
    monkeypatch.setenv("JAXZIP_CACHE_DIR", str(tmp_path / "no_cache"))
    data = tmp_path / "mnist"
    data.mkdir()
    for pair in jz.data.IDX_FILES.values():
        for name in pair:
            (data / name).write_bytes(b"\x00\x00\x08\x03 this is not an IDX file")
    assert main(_mnist_args(data, tmp_path / "out")) == 2
    one_error_line(capsys)
    assert not (tmp_path / "out" / "results.json").exists()
    assert (tmp_path / "out" / ".pending" / "config.toml").exists()  # identifiable failed run


def test_out_is_a_file(capsys, tmp_path, one_error_line):
    (tmp_path / "f").write_text("")
    assert main(["run", "--out", str(tmp_path / "f"), "--no-progress"]) == 2
    assert "not a directory" in one_error_line(capsys)


def test_keyboard_interrupt(capsys, monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(jz.pipeline, "run_experiment", interrupted)
    assert main(["run", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["jaxzip: interrupted"]


def test_traceback_flag_shows_the_traceback(capsys):
    assert main(["--traceback", "run", "--set", "train.epochs=0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("jaxzip: error:")


def test_a_reader_that_stops_early_gets_no_error(tmp_path):
    """`jaxzip inspect FILE | head -1`: when head exits, the rest of the report meets a closed
    pipe; jaxzip stops quietly (exit 141, as a shell reports SIGPIPE), no error line."""
    params = {f"layer_{i:04d}": {"w": np.full((2,), i, np.float32)} for i in range(3000)}
    path = tmp_path / "many.jz"
    jz.codec.save(path, params)  # its report: ~3,000 lines, far more than a pipe buffer
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxzip", "inspect", str(path)],
        stdout=write,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        first = reader.readline()  # then the reader goes away, as head does
    _, err = proc.communicate(timeout=120)
    assert first.split()[0] == b"path"
    assert proc.returncode == 141, err.decode()
    assert err == b""


def test_end_to_end_subprocess(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "jaxzip", "run", "--set", "train.epochs=1", "--out", str(out)],
        cwd=tmp_path,  # not the repository: the packaged default must be found anyway
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0] == ["stage", "metric", "value"]
    table = {(r[0], r[1]): r[2] for r in rows[2:] if len(r) == 3}
    assert table[("train", "epochs")] == "1"
    accuracy = float(table[("evaluate", "test_accuracy")])
    assert 0.0 <= accuracy <= 1.0

    results = json.loads((out / "results.json").read_text())
    m = results["metrics"]
    assert m["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert m["test_error"] == pytest.approx(1 - m["test_accuracy"])
    assert m["test_errors"] == round(m["test_error"] * m["test_examples"])
    assert m["epochs"] == 1 and len(results["history"]) == 1 and m["param_count"] > 0
    assert set(results["wall_time_s"]) == {"data", "model", "train", "evaluate", "total"}
    assert results["config_name"] == load_config().experiment.name
    assert results["jax_version"] and results["backend"] == "cpu"

    cfg = load_config(out / "config.toml")
    assert cfg == apply_overrides(load_config(), ["train.epochs=1"])
    with np.load(out / "params.npz", allow_pickle=False) as npz:
        assert sum(npz[k].size for k in npz.files) == m["param_count"]
        assert all("/" in k for k in npz.files)


# --- jaxzip auto: --confirm-fraction, the summary, BudgetTooSmall ---------------------------


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "-0.2", "x", "nan", "inf"])
def test_auto_confirm_fraction_must_lie_in_0_1(bad, capsys, tmp_path, one_error_line):
    argv = ["auto", str(tmp_path / "missing.toml"), "--max-drop", "1", "--confirm-fraction", bad]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert (
        line
        == f"jaxzip: error: --confirm-fraction: expected a number in (0, 1), e.g. 0.5, got {bad!r}"
    )


def _fake_summary(*, feasible: bool, attempts: list, confirmed: str | None) -> dict:
    def drop(d, se):
        return {"drop_pp": d, "se_pp": se}

    best = {"bytes": 100, "ratio": 40.0, "accuracy": 0.98}
    conf = {"attempts": attempts, "confirmed": confirmed}
    return {
        "result": {
            "best": best,
            "feasible": feasible,
            "baseline": 0.99,
            "stopped": "time_budget",
            "confirmation": conf,
        },
        "test": {"best_test_accuracy": 0.97},
        "drops": {
            "validation": drop(0.5, 0.25),
            "confirmation": drop(0.75, 0.3125),
            "test": drop(1.0, 0.125),
        },
    }


@pytest.mark.parametrize(
    ("feasible", "attempts", "confirmed", "status"),
    [
        (True, [{"key": "a"}], "a", ", feasible;"),
        (False, [{"key": "a"}, {"key": "b"}], None, "no candidate passed its confirmation"),
        (False, [], None, "NOT feasible (no candidate met the bound)"),
    ],
)
def test_auto_summary_status_stop_reason_and_drops(
    feasible, attempts, confirmed, status, capsys, tmp_path, monkeypatch, digits_auto_toml
):
    import jaxzip.pipeline

    seen = {}

    def fake_run_auto(cfg, out_dir, **kw):
        seen.update(kw)
        return _fake_summary(feasible=feasible, attempts=attempts, confirmed=confirmed)

    monkeypatch.setattr(jaxzip.pipeline, "run_auto", fake_run_auto)
    (tmp_path / "a.toml").write_text(digits_auto_toml)
    argv = ["auto", str(tmp_path / "a.toml"), "--out", str(tmp_path / "o")]
    argv += shlex.split("--max-drop 1 --confirm-fraction 0.25 --no-progress")
    assert main(argv) == 0
    assert seen["confirm_fraction"] == 0.25
    out = capsys.readouterr().out
    assert status in out
    assert ("NOT feasible (no candidate met the bound)" in out) == (not feasible and not attempts)
    assert (
        "stopped: time_budget; accuracy drop in points (+- standard error, paired where "
        "per-example results are known), validation 0.50 +- 0.25 / "
        "confirmation 0.75 +- 0.31 / test 1.00 +- 0.12"
    ) in out
    assert seen["confidence"] == 0.0


def test_auto_confidence_reaches_run_auto_and_paired_errors_are_printed(
    capsys, tmp_path, monkeypatch, digits_auto_toml
):
    import jaxzip.pipeline

    seen = {}

    def fake_run_auto(cfg, out_dir, **kw):
        seen.update(kw)
        s = _fake_summary(feasible=True, attempts=[{"key": "a"}], confirmed="a")
        s["drops"]["test"]["paired_se_pp"] = 0.0625
        return s

    monkeypatch.setattr(jaxzip.pipeline, "run_auto", fake_run_auto)
    (tmp_path / "a.toml").write_text(digits_auto_toml)
    argv = ["auto", str(tmp_path / "a.toml"), "--out", str(tmp_path / "o"), "--max-drop", "1"]
    assert main([*argv, "--confidence", "1.645", "--no-progress"]) == 0
    assert seen["confidence"] == 1.645
    assert "/ test 1.00 +- 0.06" in capsys.readouterr().out  # the paired one where known


@pytest.mark.parametrize("bad", ["-1", "x", "nan", "inf"])
def test_auto_confidence_must_be_a_number_at_least_0(bad, capsys, tmp_path, one_error_line):
    argv = ["auto", str(tmp_path / "missing.toml"), "--max-drop", "1", "--confidence", bad]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line == f"jaxzip: error: --confidence: expected a number >= 0, got {bad!r}"


def test_auto_confirm_fraction_default_is_half(capsys, tmp_path, monkeypatch, digits_auto_toml):
    import jaxzip.pipeline

    seen = {}

    def fake_run_auto(cfg, out_dir, **kw):
        seen.update(kw)
        return _fake_summary(feasible=True, attempts=[{"key": "a"}], confirmed="a")

    monkeypatch.setattr(jaxzip.pipeline, "run_auto", fake_run_auto)
    (tmp_path / "a.toml").write_text(digits_auto_toml)
    assert (
        main(
            [
                "auto",
                str(tmp_path / "a.toml"),
                "--max-drop",
                "1",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert seen["confirm_fraction"] == 0.5


def test_auto_warnings_are_one_line_on_stderr_as_they_happen(
    capsys, tmp_path, monkeypatch, digits_auto_toml
):
    import warnings

    import jaxzip.pipeline
    from jaxzip.auto import NoisyBoundWarning

    def fake_run_auto(cfg, out_dir, **kw):
        warnings.warn("max_drop 0.001 is under one standard error", NoisyBoundWarning, stacklevel=1)
        print("after the warning", file=sys.stderr)
        return _fake_summary(feasible=True, attempts=[{"key": "a"}], confirmed="a")

    monkeypatch.setattr(jaxzip.pipeline, "run_auto", fake_run_auto)
    (tmp_path / "a.toml").write_text(digits_auto_toml)
    argv = ["auto", str(tmp_path / "a.toml"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--max-drop", "0.1", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(
        "jaxzip auto: warning: max_drop 0.001 is under one standard error\nafter the warning\n"
    )


def test_auto_budget_too_small_is_one_line(
    capsys, tmp_path, monkeypatch, digits_auto_toml, one_error_line
):
    import jaxzip.pipeline
    from jaxzip.auto import BudgetTooSmall

    def fake_run_auto(cfg, out_dir, **kw):
        raise BudgetTooSmall(
            "time_budget_s: 1 s was spent before the baseline was measured on "
            "the confirmation split; found so far: the baseline's validation "
            "accuracy 0.9375, no candidate. Give a larger budget"
        )

    monkeypatch.setattr(jaxzip.pipeline, "run_auto", fake_run_auto)
    (tmp_path / "a.toml").write_text(digits_auto_toml)
    argv = ["auto", str(tmp_path / "a.toml"), "--out", str(tmp_path / "o")]
    argv += shlex.split("--max-drop 1 --time-budget 1s --no-progress")
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert line.startswith("jaxzip: error: --time-budget 1s: 1 s was spent before the baseline")
    assert "found so far: the baseline's validation accuracy 0.9375, no candidate" in line


def test_auto_real_run_prints_what_auto_json_holds(capsys, tmp_path, digits_auto_toml):
    """A real tiny search (digits, one candidate): the flag reaches run_auto; the lines match."""
    (tmp_path / "a.toml").write_text(digits_auto_toml)
    out = tmp_path / "o"
    argv = [
        "auto",
        str(tmp_path / "a.toml"),
        "--max-drop",
        "5",
        "--max-trials",
        "1",
        "--confirm-fraction",
        "0.3",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    s = json.loads((out / "auto.json").read_text())
    n_val = s["splits"]["validation"] + s["splits"]["confirmation"]
    assert s["settings"]["confirm_fraction"] == 0.3
    assert s["splits"]["confirmation"] == round(n_val * 0.3)
    d = s["drops"]
    text = capsys.readouterr().out
    want = (  # the paired standard errors on confirmation and test
        f"stopped: {s['result']['stopped']}; accuracy drop in points (+- standard error, paired "
        f"where per-example results are known), validation "
        f"{d['validation']['drop_pp']:.2f} +- {d['validation']['paired_se_pp']:.2f} / confirmation "
        f"{d['confirmation']['drop_pp']:.2f} +- {d['confirmation']['paired_se_pp']:.2f} / test "
        f"{d['test']['drop_pp']:.2f} +- {d['test']['paired_se_pp']:.2f}"
    )
    assert want in text and s["result"]["stopped"] == "max_trials"
