"""Runs experiments/lottery_ticket.py at tiny size (digits, 2 rounds, 1 epoch) in-process."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("lottery_ticket")


def test_tiny_run_writes_json_png_and_table(script, tmp_path, capsys):
    out = tmp_path / "lt"
    assert (
        script.main(["--dataset", "digits", "--rounds", "2", "--epochs", "1", "--out", str(out)])
        == 0
    )
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
    printed = capsys.readouterr()
    table = printed.out.splitlines()
    assert table[0].split() == ["round", "remaining", "ticket_test_acc", "random_test_acc"]
    assert len([line for line in table if line.strip()[:1].isdigit()]) == 3
    assert "round 2:" in printed.err


def test_help_lists_the_options(script, capsys):
    with pytest.raises(SystemExit) as info:
        script.parse_args(["--help"])
    assert info.value.code == 0
    shown = capsys.readouterr().out
    for flag in ("--rounds", "--epochs", "--seed", "--out", "--dataset"):
        assert flag in shown


@pytest.mark.parametrize(
    "bad, flag",
    [(["--rounds", "0"], "--rounds"), (["--rate", "1"], "--rate"), (["--seed", "-1"], "--seed")],
)
def test_bad_arguments_exit_with_usage_error(script, bad, flag, capsys):
    with pytest.raises(SystemExit) as info:
        script.parse_args(bad)
    assert info.value.code == 2 and flag in capsys.readouterr().err
