"""Issue 19's defects in jaxzip run / jaxzip auto, each pinned by a test that failed before.

3a reserved output names, 3b a failed rerun keeps the previous outputs, 4 one run per
output directory, 5 diverged training and non-finite params_from stop the run,
augment_shift larger than the images, 6 seeds past 64 bits, a model too large to build,
TOML nested too deeply, config files that are not regular files or are too large.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import jaxzip as jz
from jaxzip._io import directory_lock
from jaxzip.cli import main as cli
from jaxzip.config import apply_overrides, load_config
from jaxzip.config._load import MAX_CONFIG_BYTES
from jaxzip.pipeline import CONFIG_FILE, PARAMS_FILE, RESULTS_FILE, run_experiment

TINY = ["model.name=mlp", "model.widths=[8]", "train.epochs=1"]


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("jaxzip: error: ")
    return err[0]


@pytest.mark.parametrize(
    "override",
    [
        "codec.file=results.json",
        "codec.file=params.npz",
        "codec.file=config.toml",
        "export.file=stages",
        "export.file=report.md",
    ],
)
def test_reserved_output_names_are_refused_at_config_time(override, tmp_path, capsys):
    assert cli(["run", "--set", override, "--out", str(tmp_path), "--no-progress"]) == 2
    assert "a file name the run does not write itself" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (
            ["codec.file=m.bin", "export.file=m.bin"],
            "export.file: expected a name other than codec.file",
        ),
        (["train.augment_shift=8"], "train.augment_shift: expected fewer pixels"),
        (["distill.augment_shift=8"], "distill.augment_shift: expected fewer pixels"),
        (
            [f"experiment.seed={2**63}"],
            "experiment.seed: expected an integer in [0, 9223372036854775807]",
        ),
        # a model too large is refused before allocating
        (
            ["model.name=mlp", "model.widths=[1000000000]"],
            "model.name/model.widths: expected a model of at most",
        ),
    ],
    ids=[
        "codec-export-same-file",
        "train-augment-shift",
        "distill-augment-shift",
        "seed-past-64-bits",
        "model-too-large",
    ],
)
def test_config_errors_are_one_line(overrides, needle, tmp_path, capsys):
    args = [a for o in overrides for a in ("--set", o)]
    assert cli(["run", *args, "--out", str(tmp_path), "--no-progress"]) == 2
    assert needle in _one_error_line(capsys)


def test_a_failing_rerun_keeps_every_previous_output(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = apply_overrides(
        load_config(),
        [*TINY, "prune.sparsity=0.5", "prune.epochs_per_round=0", "codec.file=model.jz"],
    )
    run_experiment(cfg, out, progress=False, report=False)
    names = (CONFIG_FILE, PARAMS_FILE, RESULTS_FILE, "model.jz")
    before = {n: (out / n).read_bytes() for n in names}
    bad = apply_overrides(cfg, ["prune.where=nomatch"])
    with pytest.raises(ValueError, match="nomatch"):
        run_experiment(bad, out, progress=False, report=False)
    assert {n: (out / n).read_bytes() for n in names} == before
    assert load_config(out / ".pending" / CONFIG_FILE) == bad  # the failed run is identifiable


def test_a_second_run_into_a_locked_directory_fails_at_once(tmp_path, capsys):
    cfg = apply_overrides(load_config(), TINY)
    with directory_lock(tmp_path, what="test"):
        with pytest.raises(jz.DirectoryLockedError, match=f"PID {os.getpid()}"):
            run_experiment(cfg, tmp_path, progress=False, report=False)
        assert cli(["run", "--out", str(tmp_path), "--no-progress", "--set", "train.epochs=1"]) == 2
        assert f"is in use by another jaxzip process (PID {os.getpid()}" in _one_error_line(capsys)
    assert not (tmp_path / RESULTS_FILE).exists()


def test_auto_takes_the_lock_too(tmp_path, capsys, write_config):
    config = write_config("""
        [model]
        name = "mlp"
        widths = [8]
        [train]
        epochs = 1
        """)
    with directory_lock(tmp_path / "auto", what="test"):
        rc = cli(
            [
                "auto",
                str(config),
                "--max-drop",
                "1",
                "--max-trials",
                "1",
                "--out",
                str(tmp_path / "auto"),
                "--no-progress",
            ]
        )
    assert rc == 2
    assert "jaxzip auto:" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ([], "NaN"),  # the default CNN: the loss turns NaN
        (["model.name=mlp", "model.widths=[8]"], "training diverged"),  # finite, 1e9, chance
    ],
)
def test_diverged_training_stops_the_run(model, says, tmp_path, capsys):
    args = [f"--set={o}" for o in [*model, "train.learning_rate=1e10", "train.epochs=2"]]
    assert cli(["run", *args, "--out", str(tmp_path), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert says in line and "lower train.learning_rate (now 1e+10)" in line
    assert not (tmp_path / RESULTS_FILE).exists()


def test_diverged_kmeans_fine_tune_stops_the_run(tmp_path, capsys):
    # the stages pass the guard (MAX_LOSS_GROWTH) to every loop: the k-means fine-tune too
    args = [
        f"--set={o}"
        for o in [
            *TINY,
            "kmeans.dense_bits=4",
            "kmeans.finetune_epochs=2",
            "kmeans.learning_rate=1e10",
        ]
    ]
    assert cli(["run", *args, "--out", str(tmp_path), "--no-progress"]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("jaxzip: error:")]
    assert len(errors) == 1  # one error line (the stage's info line before it aside), no trace
    assert "kmeans fine-tune: training diverged: epoch 1's mean loss" in errors[0]
    assert errors[0].endswith("; lower kmeans.learning_rate (now 1e+10)")  # its own setting
    assert not (tmp_path / RESULTS_FILE).exists()


def test_diverged_distillation_names_its_own_learning_rate(tmp_path, capsys):
    stages = '["data", "model", "train", "distill"]'
    args = [
        f"--set={o}"
        for o in [
            *TINY,
            "distill.widths=[8]",
            "distill.epochs=2",
            "distill.learning_rate=1e10",
            f"experiment.stages={stages}",
        ]
    ]
    assert cli(["run", *args, "--out", str(tmp_path), "--no-progress"]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("jaxzip: error:")]
    assert len(errors) == 1 and errors[0].startswith("jaxzip: error: distill: ")  # NaN or growth
    assert errors[0].endswith("; lower distill.learning_rate (now 1e+10) or set train.clip_norm")


def test_nonfinite_params_from_is_refused(tmp_path, capsys):
    cfg = apply_overrides(load_config(), TINY)
    run_experiment(cfg, tmp_path / "a", progress=False, report=False)
    params = dict(np.load(tmp_path / "a" / PARAMS_FILE))
    params[sorted(params)[0]] = np.full_like(params[sorted(params)[0]], np.nan)
    np.savez(tmp_path / "nan.npz", **params)
    args = [*(f"--set={o}" for o in TINY), f"--set=model.params_from={tmp_path / 'nan.npz'}"]
    assert cli(["run", *args, "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    line = _one_error_line(capsys)
    assert "model.params_from" in line and "NaN" in line


def test_toml_nested_too_deeply(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert cli(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "nested too deeply" in _one_error_line(capsys)
    assert cli(["run", "--set", "train.epochs=" + "[" * 100_000, "--out", str(tmp_path)]) == 2
    capsys.readouterr()


def test_config_must_be_a_small_regular_file(tmp_path, capsys):
    assert cli(["run", "/dev/zero", "--out", str(tmp_path / "o")]) == 2
    assert "expected a regular TOML config file" in _one_error_line(capsys)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    assert cli(["run", str(big), "--out", str(tmp_path / "o")]) == 2
    assert f"at most {MAX_CONFIG_BYTES:,} bytes" in _one_error_line(capsys)


def test_dev_zero_does_not_hang():
    # the read is bounded: refused at once rather than reading until memory runs out
    r = subprocess.run(
        [sys.executable, "-m", "jaxzip", "run", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "regular TOML config file" in r.stderr
