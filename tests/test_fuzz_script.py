"""Runs experiments/fuzz_codec.py at 200 cases in-process: only the loaders' own errors, no hangs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "fuzz_codec.py"


def _load():
    spec = importlib.util.spec_from_file_location("fuzz_codec_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_200_mutated_files_raise_only_format_errors(tmp_path):
    fz = _load()
    summary = fz.run_campaign(cases=200, seed=11, workers=0, timeout=5.0)
    assert summary["cases"] == 200
    assert summary["unexpected_total"] == 0, fz.format_summary(summary)
    assert summary["hangs"] == 0
    counts = summary["targets"]["codec"]["counts"]
    # the campaign reaches past the checksums: some files decode, most are refused
    assert counts["expected_error"] > 100 and counts.get("ok_different", 0) > 0
    assert all(t["checksum_escapes"] == 0 for t in summary["targets"].values())
    assert set(summary["targets"]) == {"codec", "deploy", "npz"}


def test_cases_are_deterministic_and_mutate():
    fz = _load()
    corpus = {"codec": [bytes(range(64)) * 4], "deploy": [b"x" * 50], "npz": [b"y" * 50]}
    a = [fz.make_case(3, i, corpus) for i in range(20)]
    assert a == [fz.make_case(3, i, corpus) for i in range(20)]
    assert len({data for _, _, data, _ in a}) > 15
