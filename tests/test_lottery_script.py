"""Runs experiments/lottery_ticket.py at tiny size (digits, 2 rounds, 1 epoch) in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "lottery_ticket.py"


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_tiny_run_writes_json_png_and_table(tmp_path):
    out = tmp_path / "lt"
    args = ("--dataset", "digits", "--rounds", "2", "--epochs", "1", "--out", str(out))
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "lottery_ticket.json").read_text())
    assert (out / "lottery_ticket.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = results["rounds"]
    assert [r["round"] for r in rows] == [0, 1, 2]
    kept = [r["remaining"]["kernels"] for r in rows]
    # round r keeps 80% of each hidden layer's weights and 90% of the output layer's, cumulatively
    hidden, output = 64 * 300 + 300 * 100, 100 * 10
    for r, k in enumerate(kept):
        expected = round(0.8**r * 64 * 300) + round(0.8**r * 300 * 100) + round(0.9**r * output)
        assert abs(k * (hidden + output) - expected) <= 1, (r, k)
    for r in rows:
        for arm in ("ticket", "random"):
            assert 0.0 <= r[arm]["test_accuracy"] <= 1.0 and len(r[arm]["val_accuracy"]) == 1
    assert rows[0]["ticket"] == rows[0]["random"]  # round 0 is the shared dense run
    assert results["settings"]["rounds"] == 2 and results["dataset"] == "digits"
    table = proc.stdout.splitlines()
    assert table[0].split() == ["round", "remaining", "ticket_test_acc", "random_test_acc"]
    assert len([line for line in table if line.strip()[:1].isdigit()]) == 3
    assert "round 2:" in proc.stderr


def test_help_and_bad_arguments(tmp_path):
    proc = _run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for flag in ("--rounds", "--epochs", "--seed", "--out", "--dataset"):
        assert flag in proc.stdout
    proc = _run("--rounds", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--rounds" in proc.stderr
