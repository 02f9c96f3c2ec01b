"""Runs the distillation benchmarks and experiments at tiny size, in-process.

experiments/benchmarks/kd_step.py, experiments/benchmarks/vmap_students.py,
experiments/temperature_sweep.py and experiments/compression_recovery.py, on
random data or scikit-learn's digits with a few steps and small widths.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def scripts(load_script):
    names = (
        "benchmarks/kd_step",
        "benchmarks/vmap_students",
        "temperature_sweep",
        "compression_recovery",
    )
    return {name.split("/")[-1]: load_script(name) for name in names}


def test_kd_step_counts_flops_and_reports(scripts):
    kd = scripts["kd_step"]
    # hand count: teacher 784-16-10 forward, student 784-8-10 forward + backward (3x), batch 4
    assert kd.forward_flops([16], 4) == 2 * 4 * (784 * 16 + 16 * 10) == 101_632
    assert kd.step_flops([16], [8], 4) == 101_632 + 3 * 2 * 4 * (784 * 8 + 8 * 10)
    assert kd.forward_flops([1200, 1200], 128) == 2 * 128 * 2_392_800  # Hinton's teacher

    args = kd.parse_args(
        [
            "--batch-size",
            "4",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--matmul-size",
            "32",
            "--teacher-widths",
            "16",
            "--student-widths",
            "8",
        ]
    )
    r = kd.measure(args)
    assert r["flops"] == kd.step_flops([16], [8], 4)
    if r["xla_flops"] is not None:  # XLA skips the first layer's input gradient: a bit fewer
        assert 0.5 * r["flops"] < r["xla_flops"] < 1.1 * r["flops"]
    assert r["step_seconds"] > 0 and r["peak"] > 0
    assert r["achieved"] == pytest.approx(r["flops"] / r["step_seconds"])
    assert r["fraction"] == pytest.approx(r["achieved"] / r["peak"])
    assert min(r["lower_seconds"], r["compile_seconds"], r["first_call_seconds"]) > 0
    assert math.isfinite(r["final_loss"])
    lines = kd.report(args, r).splitlines()
    assert lines[1].startswith("FLOPs per step: analytic 0.0003 GFLOP")
    assert any(line.startswith("fraction of peak:") and "target >= 70%" in line for line in lines)
    assert lines[-1].startswith("compile: lower")


def test_vmap_students_reports_both_throughputs(scripts):
    vs = scripts["vmap_students"]
    tiny = ["--students", "2", "--batch-size", "4", "--steps", "1", "--repeats", "1"]
    args = vs.parse_args([*tiny, "--student-widths", "8"])
    # by default: Hinton's teacher and one of the students' own size, in that order
    assert vs.teachers(args) == [[1200, 1200], [8]]
    assert vs.teachers(vs.parse_args([*tiny, "--teacher-widths", "16", "4"])) == [[16, 4]]
    r = vs.measure(args, [8])
    assert r["teacher_widths"] == [8]
    assert r["vmapped_examples_per_s"] > 0 and r["sequential_examples_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["vmapped_examples_per_s"] / r["sequential_examples_per_s"])
    assert r["vmapped_compile_seconds"] > 0 and r["sequential_compile_seconds"] > 0
    # 784-8-10: forward 6,352 MACs; the student's step skips the first input gradient
    t, s = 6352, 3 * 6352 - 784 * 8
    assert r["ratio_bound"] == pytest.approx(2 * (t + s) / (t + 2 * s))  # 1.20x
    lines = vs.report(args, r).splitlines()
    assert lines[0].startswith("2 students MLP(8,) distilled from MLP(8,)") and "random" in lines[0]
    assert lines[3].startswith("ratio:") and lines[3].endswith("estimate 1.20x)")


def test_vmap_students_bound_counts_flops_by_hand(scripts):
    vs = scripts["vmap_students"]
    x = np.zeros((1, 28, 28, 1), np.float32)

    def params(*widths):
        return vs.common.random_params(vs.jz.models.MLP(widths, num_classes=10), x, seed=0)

    lenet, hinton = params(300, 100), params(1200, 1200)
    # LeNet-300-100 forward: 784*300 + 300*100 + 100*10 = 266,200 multiply-adds
    assert vs.mlp_flops(lenet)["dense"] == 2 * 266_200
    t, s = 2 * 266_200, 2 * (3 * 266_200 - 784 * 300)  # no input gradient for layer 0
    assert vs.ratio_bound(lenet, lenet, 8) == pytest.approx(8 * (t + s) / (t + 8 * s))
    assert 1.38 < vs.ratio_bound(lenet, lenet, 8) < 1.40
    t = 2 * (784 * 1200 + 1200 * 1200 + 1200 * 10)  # Hinton's teacher
    assert vs.ratio_bound(hinton, lenet, 8) == pytest.approx(8 * (t + s) / (t + 8 * s))
    assert 3.42 < vs.ratio_bound(hinton, lenet, 8) < 3.44


RECOVERY = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--dense-epochs",
    "1",
    "--widths",
    "16",
    "--sparsity",
    "0.75",
    "--bits",
    "3",
    "--batch-size",
    "64",
]


@pytest.fixture(scope="module")
def recovery(scripts, tmp_path_factory):
    """One tiny compression_recovery run: (returned results, stdout, output directory)."""
    out = tmp_path_factory.mktemp("cr")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        returned = scripts["compression_recovery"].main([*RECOVERY, "--out", str(out)])
    return returned, buf.getvalue(), out


def test_compression_recovery_tiny_run(recovery):
    returned, stdout, out = recovery
    results = json.loads((out / "compression_recovery.json").read_text())
    models = results["models"]
    assert models == returned["models"]
    names = ["dense", "damaged", "labels_only", "distilled"]
    assert sorted(models) == sorted(names)
    for r in models.values():
        assert 0.0 <= r["val_error"] <= 1.0 and 0.0 <= r["test_error"] <= 1.0
        assert r["test_errors"] == round(r["test_error"] * results["test_size"])
    kernels = 64 * 16 + 16 * 10
    for name in ("damaged", "labels_only", "distilled"):
        # exactly round(0.75 * kernels) pruned by the mask; quantization may zero a few more
        assert models[name]["kernel_sparsity"] * kernels >= round(0.75 * kernels) - 1e-6
    for name in ("labels_only", "distilled"):
        assert len(models[name]["val_error_history"]) == 1
        assert models[name]["val_error_history"][0] == pytest.approx(models[name]["val_error"])
    assert models["dense"]["source"] == "trained here for 1 epochs"
    saved = np.load(out / "dense_params.npz")
    assert saved["Dense_0/kernel"].shape == (64, 16) and saved["Dense_1/kernel"].shape == (16, 10)
    table = stdout.splitlines()
    assert "75% of kernel weights pruned (global), 3-bit" in table[0]
    assert table[1].split() == ["model", "val_err%", "test_err%", "test_errors"]
    assert [line.split()[0] for line in table[3:]] == names


def test_temperature_sweep_tiny_run(scripts, recovery, tmp_path, capsys):
    ts = scripts["temperature_sweep"]
    teacher = recovery[2] / "dense_params.npz"  # an MLP((16,)) trained on digits
    out = tmp_path / "ts"
    argv = [
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--teacher-params",
        str(teacher),
        "--teacher-widths",
        "16",
        "--student-widths",
        "16",
        "--temperatures",
        "1",
        "4",
        "--batch-size",
        "64",
        "--learning-rate",
        "0.01",
        "--out",
        str(out),
    ]
    returned = ts.main(argv)
    results = json.loads((out / "temperature_sweep.json").read_text())
    assert results["best_temperature_by_val"] == returned["best_temperature_by_val"]
    assert (out / "temperature_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "teacher_params.npz").exists()  # loaded, not trained
    assert results["teacher"]["source"] == str(teacher)
    # the loaded teacher is the dense model of the recovery run: same test errors
    assert results["teacher"]["test"]["errors"] == recovery[0]["models"]["dense"]["test_errors"]
    assert [r["temperature"] for r in results["sweep"]] == [1.0, 4.0]
    assert [r["alpha"] for r in results["sweep"]] == pytest.approx([0.9, 0.9])
    baseline = results["labels_only"]
    assert baseline["alpha"] == 0.0 and baseline["temperature"] is None
    n_val, n_test = results["val_size"], results["test_size"]
    assert n_test == 359
    for r in [*results["sweep"], baseline]:
        assert len(r["val_error_history"]) == 1
        assert r["val_error_history"][-1] == pytest.approx(r["val"]["error"])
        assert r["test"]["errors"] == round(r["test"]["error"] * n_test)
        assert 0 <= r["val"]["errors"] <= n_val
    best = min(results["sweep"], key=lambda r: r["val"]["error"])
    assert results["best_temperature_by_val"] == best["temperature"]
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["student", "val_err%", "test_err%", "test_errors"]
    assert [line.split()[0] for line in table[2:4]] == ["T=1", "T=4"]
    assert table[4].startswith("labels only") and table[5].startswith("teacher")


def test_compress_keeps_pruned_zero_and_quantizes(scripts):
    cr = scripts["compression_recovery"]
    kernel = np.array([[0.05, -1.0, 0.4], [0.7, -0.2, 0.0]], np.float32)
    params = {"Dense_0": {"kernel": kernel, "bias": np.array([0.3, 0.1, -0.2], np.float32)}}
    mask = {"Dense_0": {"kernel": np.abs(kernel) >= 0.3, "bias": np.ones(3, bool)}}
    out = cr.make_compress(mask, bits=2)(params)
    # 2-bit symmetric grid {-1, 0, 1} * max|column|: columns' maxima 0.7, 1.0, 0.4
    np.testing.assert_allclose(out["Dense_0"]["kernel"], [[0.0, -1.0, 0.4], [0.7, 0.0, 0.0]])
    np.testing.assert_array_equal(out["Dense_0"]["bias"], params["Dense_0"]["bias"])
    assert cr.kernel_sparsity(out) == pytest.approx(3 / 6)


@pytest.mark.parametrize(
    "name, bad, flag",
    [
        ("kd_step", ("--steps", "0"), "--steps"),
        ("kd_step", ("--student-widths", "0"), "--student-widths"),
        ("vmap_students", ("--students", "0"), "--students"),
        ("temperature_sweep", ("--temperatures", "1", "-2"), "--temperatures"),
        ("temperature_sweep", ("--teacher-params", "/nonexistent/t.npz"), "--teacher-params"),
        ("temperature_sweep", ("--optimizer", "rmsprop"), "--optimizer"),
        ("compression_recovery", ("--sparsity", "1.0"), "--sparsity"),
        ("compression_recovery", ("--bits", "1"), "--bits"),
        ("compression_recovery", ("--allocation", "erk"), "--allocation"),
    ],
)
def test_bad_arguments_exit_with_usage_error(scripts, name, bad, flag, capsys):
    with pytest.raises(SystemExit) as info:
        scripts[name].main(list(bad))
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
