"""Runs experiments/hinton_distill.py at tiny size (digits, 1 epoch, small widths) in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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
def script(load_script):
    return load_script("hinton_distill")


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
    for name in ("student_alone", "student_distilled"):
        with np.load(out / f"{name}_params.npz") as f:
            assert f["Dense_0/kernel"].shape == (64, 12) and f["Dense_1/kernel"].shape == (12, 10)
        agree = results["models"][name]["teacher_agreement"]
        assert set(agree) == {"train", "test"} and all(0.0 <= a <= 1.0 for a in agree.values())
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["model", "test_errors", "paper", "val_acc", "seconds"]
    rows = [line.split() for line in table[2:5]]
    assert [r[0] for r in rows] == ["teacher", "student_alone", "student_distilled"]
    assert [int(r[1]) for r in rows] == [errors[r[0]] for r in rows]
    assert table[5].startswith("student_alone agrees with the teacher on ")
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
        (("--teacher-input-dropout", "-0.1"), "--teacher-input-dropout"),
        (("--dataset", "cifar"), "--dataset"),
        (("--shift", "-1"), "--shift"),
        (("--clip-norm", "-1"), "--clip-norm"),
        (("--max-norm", "-1"), "--max-norm"),
        (("--student-optimizer", "rmsprop"), "--student-optimizer"),
        (("--student-shift", "-2"), "--student-shift"),
    ],
)
def test_bad_arguments_exit_with_usage_error(script, bad, flag, capsys):
    with pytest.raises(SystemExit) as info:
        script.parse_args(list(bad))
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


@pytest.fixture(scope="module")
def seeds(load_script):
    return load_script("hinton_seeds")


def _run_json(path: Path, seed: int, teacher: int, alone: int, distilled: int, **settings) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"seed": seed, "out": str(path.parent), "epochs_teacher": 75, "temperature": 20.0}
    path.write_text(
        json.dumps(
            {
                "test_errors": {
                    "teacher": teacher,
                    "student_alone": alone,
                    "student_distilled": distilled,
                },
                "settings": {**base, **settings},
            }
        )
    )
    return path


def test_seeds_pools_error_counts_not_closures(seeds, tmp_path, capsys):
    a = _run_json(tmp_path / "s2" / "hinton_distill.json", 2, 70, 170, 90)  # closes 0.80
    b = _run_json(tmp_path / "s3" / "hinton_distill.json", 3, 75, 125, 85)  # closes 0.80
    c = _run_json(tmp_path / "s4" / "hinton_distill.json", 4, 60, 160, 95)  # closes 0.65
    assert seeds.main([str(a), str(b), str(c)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["2", "70", "170", "90", "0.800"]
    assert lines[5].split() == ["sum", "205", "455", "270"]
    # mean of 0.8, 0.8, 0.65 is 0.75; pooled (455 - 270) / (455 - 205) = 0.74
    assert lines[6].endswith("0.750")
    assert lines[7] == "pooled closure: 0.740 (target >= 0.80: not met)"

    assert seeds.main(["--json", str(a), str(b)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pooled_closure"] == pytest.approx((295 - 175) / (295 - 145))
    assert summary["target_met"] is True and [r["seed"] for r in summary["runs"]] == [2, 3]


def test_seeds_refuses_mixed_settings_and_bad_files(seeds, tmp_path, capsys):
    a = _run_json(tmp_path / "s2" / "hinton_distill.json", 2, 70, 170, 90)
    b = _run_json(tmp_path / "s3" / "hinton_distill.json", 3, 70, 170, 90, temperature=4.0)
    assert seeds.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert str(b) in err and "different temperature" in err and "Traceback" not in err

    bad = tmp_path / "bad.json"
    bad.write_text('{"test_errors": {"teacher": 1}}')
    assert seeds.main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "student_alone" in err
    bad.write_text("not json")
    assert seeds.main([str(bad)]) == 2
    assert "could not read it" in capsys.readouterr().err
    assert seeds.main([str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_gap_closure_by_hand(script):
    # the paper: (146 - 74) / (146 - 67) = 72 / 79
    paper = {"teacher": 67, "student_alone": 146, "student_distilled": 74}
    assert script.gap_closure(paper) == pytest.approx(72 / 79)
    assert script.gap_closure({**paper, "student_distilled": 160}) == pytest.approx(-14 / 79)
    assert script.gap_closure({**paper, "teacher": 146}) is None  # no gap to close


def test_seeds_counts_an_unrecorded_setting_as_the_scripts_default(seeds, tmp_path, capsys):
    defaults = seeds.script_defaults()
    assert defaults["teacher_input_dropout"] == 0.0 and defaults["max_norm"] == 0.0
    old = _run_json(tmp_path / "s2" / "hinton_distill.json", 2, 70, 170, 90)  # no max_norm key
    same = _run_json(tmp_path / "s3" / "hinton_distill.json", 3, 70, 170, 90, max_norm=0.0)
    other = _run_json(tmp_path / "s4" / "hinton_distill.json", 4, 70, 170, 90, max_norm=2.0)
    assert seeds.main([str(old), str(same)]) == 0
    capsys.readouterr()
    assert seeds.main([str(old), str(other)]) == 2
    assert "different max_norm" in capsys.readouterr().err


def test_validation_only_never_scores_the_test_set(script, tmp_path, capsys, spy):
    import jaxzip as jz

    evaluated = spy(jz.train, "evaluate")
    labelled_calls = spy(script, "teacher_labelled")
    out = tmp_path / "val"
    results = script.main([*TINY, "--validation-only", "--out", str(out)])
    n_val = results["val_size"]
    n_train = 1797 - 359 - n_val
    assert results["evaluated_on"] == "val" and "test_errors" not in results
    # the target is about test errors: a validation run does not claim it either way
    assert results["target_met"] is None
    # digits: 359 test images, never scored nor labelled by the teacher; the
    # training images are scored only for the students' agreement with the teacher
    seen = [len(args[2]) for args, _ in evaluated]  # evaluate(apply_fn, params, ds)
    labelled = [len(args[2]) for args, _ in labelled_calls]
    assert set(seen) == {n_val, n_train} and seen.count(n_train) == 2
    assert sorted(labelled) == sorted([n_train, n_val])
    for name in ("student_alone", "student_distilled"):
        assert set(results["models"][name]["teacher_agreement"]) == {"train", "val"}
    for name in ("teacher", "student_alone", "student_distilled"):
        model = results["models"][name]
        assert "test_errors" not in model
        assert model["val_errors"] == round((1 - model["val_accuracy"][-1]) * n_val)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["model", "val_errors"]


def test_student_shift_trains_both_students_on_shifted_images(script, tmp_path, spy):
    import jaxzip as jz

    assert script.shifts(0) is None  # --student-shift's default: the paper's protocol
    assert script.shifts(2) == jz.train.RandomShift(pixels=2)
    calls = spy(jz.distill, "make_train_step")
    runs = {}
    for shift in ("0", "1"):
        out = tmp_path / f"shift{shift}"
        runs[shift] = script.main([*TINY, "--student-shift", shift, "--out", str(out)])
        runs[shift]["out"] = out
    seen = [kwargs.get("augment") for _, kwargs in calls]  # the distilled student's steps
    assert seen == [None, jz.train.RandomShift(pixels=1)]
    assert runs["1"]["settings"]["student_shift"] == 1
    # the same seeds, inits and batches: the shifts alone change the students
    for name in ("student_alone", "student_distilled"):
        files = [runs[s]["out"] / f"{name}_params.npz" for s in ("0", "1")]
        with np.load(files[0]) as a, np.load(files[1]) as b:
            assert not np.allclose(a["Dense_0/kernel"], b["Dense_0/kernel"]), name


def test_teacher_labelled_makes_accuracy_the_agreement_with_the_teacher(script):
    import jaxzip as jz

    x = np.eye(4, dtype=np.float32).reshape(4, 1, 1, 4)
    ds = jz.data.Dataset(x=x, y=np.zeros(4, np.int32), num_classes=4, name="toy")
    # the "teacher" answers 3 - i for the one-hot image i; a student answering i agrees on none
    teacher = lambda params, x, *, train, key: x.reshape(len(x), -1)[:, ::-1]  # noqa: E731
    student = lambda params, x, *, train, key: x.reshape(len(x), -1) + params  # noqa: E731
    relabelled = script.teacher_labelled(teacher, None, ds, batch_size=3)  # a ragged last batch
    assert relabelled.y.tolist() == [3, 2, 1, 0] and relabelled.name == "toy@teacher"
    np.testing.assert_array_equal(relabelled.x, ds.x)
    assert jz.train.evaluate(student, 0.0, relabelled)["accuracy"] == 0.0
    # a constant bias towards class 1 makes the student answer 1 everywhere: agrees once
    bias = np.array([0.0, 5.0, 0.0, 0.0], np.float32)
    assert jz.train.evaluate(student, bias, relabelled)["accuracy"] == 0.25


def test_student_optimizer_adam_takes_sign_sized_first_steps(script):
    import jax.numpy as jnp

    args = script.parse_args(["--batch-size", "10"])
    assert args.student_optimizer == "sgd"  # the default: the protocols' runs
    params = {"kernel": jnp.zeros((1, 2))}
    grads = {"kernel": jnp.array([[2.0, -0.5]])}
    updates = {}
    for name in ("adam", "sgd"):
        tx = script.optimizer(args, 0.1, epochs=1, n_train=100, clip_norm=0.0, name=name)
        updates[name], _ = tx.update(grads, tx.init(params), params)
    # Adam's first step is lr * g / |g| (bias-corrected moments, eps aside), whatever |g|
    np.testing.assert_allclose(updates["adam"]["kernel"], [[-0.1, 0.1]], rtol=1e-5)
    # SGD with Nesterov momentum 0.9: lr * (1 + 0.9) * g
    np.testing.assert_allclose(updates["sgd"]["kernel"], [[-0.38, 0.095]], rtol=1e-5)


def test_max_norm_projects_each_units_incoming_weights(script):
    import jax.numpy as jnp
    import optax

    params = {"kernel": jnp.array([[3.0, 0.1], [4.0, 0.2]]), "bias": jnp.array([9.0, 9.0])}
    tx = optax.chain(optax.sgd(1.0), script.max_norm(2.0))
    grads = {"kernel": jnp.zeros((2, 2)), "bias": jnp.array([-1.0, 0.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    # column 0 has norm 5 -> scaled to 2 (3, 4) * 0.4; column 1 (norm 0.22) is untouched
    np.testing.assert_allclose(new["kernel"], [[1.2, 0.1], [1.6, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(new["bias"], [10.0, 9.0])  # biases: the plain SGD step
    with pytest.raises(ValueError, match="expected params"):
        script.max_norm(1.0).update(grads, optax.EmptyState())


def test_max_norm_teacher_run_keeps_every_column_within_the_limit(script, tmp_path):
    out = tmp_path / "mn"
    script.main([*TINY, "--max-norm", "0.5", "--out", str(out)])
    saved = np.load(out / "teacher_params.npz")
    for name in ("Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"):
        assert np.linalg.norm(saved[name], axis=0).max() <= 0.5 + 1e-5, name
