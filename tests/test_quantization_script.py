"""Runs experiments/quantization.py at tiny size (digits, a small MLP, 1 epoch) in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "quantization.py"
# tiny models: compilation dominates, so compile with less optimization
FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_XLA}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_all_parts_tiny_run(tmp_path):
    out = tmp_path / "q"
    args = ("--dataset", "digits", "--model", "mlp", "--train-epochs", "5", "--epochs", "1")
    args += ("--prune-rounds", "1", "--prune-epochs", "1", "--sparsity", "0.5", "--out", str(out))
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "quantization.json").read_text())
    rows = results["rows"]
    ptq = {(r["bits"], r["granularity"], r["calibration"]) for r in rows if r["part"] == "ptq"}
    assert ptq == {
        (b, g, c)
        for b in (8, 4, 2)
        for g in ("per-tensor", "per-channel", "per-group")
        for c in ("absmax", "percentile", "mse")
    }
    assert [r["bits"] for r in rows if r["part"] == "qat"] == [4, 2]
    assert [r["method"] for r in rows if r["part"] == "binary"] == [
        "binary PTQ",
        "binary + STE fine-tune",
        "ternary PTQ",
        "ternary + STE fine-tune",
    ]
    kmeans = [r for r in rows if r["part"] == "kmeans"]
    assert [r["method"] for r in kmeans] == [
        "pruned (float)",
        "pruned + k-means",
        "+ centroid fine-tune",
    ]
    float_error = results["float_test_error"]
    for r in rows:
        assert isinstance(r["test_error"], float) and 0.0 <= r["test_error"] <= 1.0, r
        assert math.isclose(r["drop_pp"], 100 * (r["test_error"] - float_error), abs_tol=1e-9)
    # 8-bit per-channel is near-lossless even on a tiny model
    assert abs(next(r for r in rows if r["part"] == "ptq" and r["bits"] == 8)["drop_pp"]) < 2
    # per-group sizes tile the input axis: Dense_0 (64 in) -> 32, Dense_1 (32 in) -> 32
    group_row = next(r for r in rows if r["granularity"] == "per-group")
    assert group_row["group_sizes"] == {"Dense_0/kernel": 32, "Dense_1/kernel": 32}
    # the trained QAT forward pass is the real quantized model
    assert all(r["fake_vs_real_max_abs"] < 1e-6 for r in rows if r["part"] == "qat")
    # binary kernels have 2 values per output channel, ternary at most 3
    levels = [r["max_levels_per_channel"] for r in rows if r["method"].endswith("STE fine-tune")]
    assert levels[0] <= 2 and levels[1] <= 3
    for r in kmeans[1:]:
        assert r["sparsity_exact"] and r["pruned_but_nonzero"] == 0
        for layer in r["layers"].values():
            assert layer["distinct_values"] <= 2**5
    assert abs(kmeans[0]["kernel_sparsity"] - 0.5) < 1e-3
    assert {t["target"] for t in results["targets"]} >= {
        "int8 per-channel absmax PTQ drop <= 0.1 pp",
        "k-means keeps the pruned sparsity exactly",
    }
    table = proc.stdout.splitlines()
    assert table[0].split()[:3] == ["part", "method", "bits"]
    assert len(
        [line for line in table if line.startswith(("ptq ", "qat ", "binary ", "kmeans "))]
    ) == len(rows)
    md = (out / "quantization.md").read_text()
    assert md.startswith("`python experiments/quantization.py --dataset digits")
    assert md.count("\n| ") == len(rows) + 2  # header, baseline and one line per row
    assert "part kmeans done" in proc.stderr


def _load_script(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # for the quantization/ helper package
    spec = importlib.util.spec_from_file_location("quantization_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dataset", "digits"], "--params"),  # neither --params nor --train-epochs
        (["--train-epochs", "1", "--parts", "ptq,nope"], "nope"),
        (["--train-epochs", "1", "--dense-bits", "9"], "--dense-bits"),
        (["--train-epochs", "1", "--sparsity", "1.0"], "--sparsity"),
        (["--train-epochs", "1", "--epochs", "0"], "--epochs"),
    ],
)
def test_bad_arguments(monkeypatch, capsys, argv, message):
    script = _load_script(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        script.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_defaults(monkeypatch):
    args = _load_script(monkeypatch).parse_args(["--params", "p.npz", "--model", "lenet5"])
    assert args.parts == ("ptq", "qat", "binary", "kmeans")
    assert args.out == Path("runs/quantization_lenet5")
    assert (args.dense_bits, args.conv_bits, args.sparsity) == (5, 8, 0.925)
