"""Runs experiments/hinton_distill.py at tiny size (digits, 1 epoch, small widths) in-process."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "hinton_distill.py"
TINY = (
    "--dataset",
    "digits",
    "--epochs-teacher",
    "1",
    "--epochs-student",
    "1",
    "--teacher-widths",
    "24",
    "24",
    "--student-widths",
    "12",
    "--shift",
    "1",
    "--batch-size",
    "32",
)


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("hinton_distill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_json_teacher_and_table(script, tmp_path, capsys):
    out = tmp_path / "hd"
    returned = script.main([*TINY, "--alpha", "0.95", "--temperature", "5", "--out", str(out)])
    results = json.loads((out / "hinton_distill.json").read_text())
    assert results["test_errors"] == returned["test_errors"]
    assert results["dataset"] == "digits" and results["experiment"] == "hinton_distill"
    n_test = results["test_size"]
    assert n_test == 359  # digits: the fixed 20% test partition of 1797 images
    for name in ("teacher", "student_alone", "student_distilled"):
        model = results["models"][name]
        assert 0 <= model["test_errors"] <= n_test
        assert model["test_errors"] == round((1 - model["test_accuracy"]) * n_test)
        assert results["test_errors"][name] == model["test_errors"]
        assert len(model["val_accuracy"]) == 1 and 0.0 <= model["val_accuracy"][0] <= 1.0
        assert model["seconds"] > 0
    errors = results["test_errors"]
    gap = errors["student_alone"] - errors["teacher"]
    if gap > 0:
        expected = (errors["student_alone"] - errors["student_distilled"]) / gap
        assert results["gap_closure"] == pytest.approx(expected)
        assert results["target_met"] == (expected >= 0.8)
    else:
        assert results["gap_closure"] is None and results["target_met"] is False
    settings = results["settings"]
    assert settings["alpha"] == 0.95 and settings["temperature"] == 5.0
    assert settings["teacher_widths"] == [24, 24] and settings["student_widths"] == [12]
    assert results["paper_test_errors"] == {
        "teacher": 67,
        "student_alone": 146,
        "student_distilled": 74,
    }
    saved = np.load(out / "teacher_params.npz")
    assert saved["Dense_0/kernel"].shape == (64, 24) and saved["Dense_2/kernel"].shape == (24, 10)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "test_errors", "paper", "val_acc", "seconds"]
    rows = [line.split() for line in table[2:5]]
    assert [r[0] for r in rows] == ["teacher", "student_alone", "student_distilled"]
    assert [int(r[1]) for r in rows] == [errors[r[0]] for r in rows]
    assert table[-1].startswith("gap closure")

    # a rerun reuses the saved teacher: same test errors, no new teacher file
    out2 = tmp_path / "hd2"
    again = script.main(
        [*TINY, "--teacher-params", str(out / "teacher_params.npz"), "--out", str(out2)]
    )
    assert again["models"]["teacher"]["test_errors"] == errors["teacher"]
    assert again["models"]["teacher"]["reused_from"] == str(out / "teacher_params.npz")
    assert not (out2 / "teacher_params.npz").exists()
    # same seed, same student init and batches: the student alone is reproduced
    assert again["test_errors"]["student_alone"] == errors["student_alone"]


@pytest.mark.parametrize(
    "bad, flag",
    [
        (("--epochs-teacher", "0"), "--epochs-teacher"),
        (("--alpha", "1.5"), "--alpha"),
        (("--teacher-dropout", "1.0"), "--teacher-dropout"),
        (("--dataset", "cifar"), "--dataset"),
        (("--shift", "-1"), "--shift"),
        (("--clip-norm", "-1"), "--clip-norm"),
    ],
)
def test_bad_arguments_exit_with_usage_error(script, bad, flag, capsys):
    with pytest.raises(SystemExit) as info:
        script.parse_args(list(bad))
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
