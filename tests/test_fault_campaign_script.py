"""experiments/fault_campaign.py's harness, on a stand-in command instead of ``jaxzip``.

The campaign itself (dozens of ``jaxzip run``/``auto`` processes) takes many
minutes and is run by hand (see its docstring); these tests check, in a few
seconds, that its kill/resume loop tells an identical resume from a different
one and from a failed one, and what its comparison leaves out.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

# A stand-in for a resumable run: marks that it started, works 0.4 s, writes its outputs.
# mode "good" resumes to the same outputs; "drift" writes other bytes when it finds its own
# earlier start (a resume that does not reproduce the result); "fail" exits 1 when resumed;
# "quick" takes 1 s for the reference run and no time otherwise (finishes before any kill).
PROGRAM = """
import json, os, random, sys, time
out, mode = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
resumed = os.path.exists(os.path.join(out, "started"))
open(os.path.join(out, "started"), "w").close()
if resumed and mode == "fail":
    sys.exit(1)
time.sleep(1.0 if mode == "quick" and out.endswith("_ref") else 0.0 if mode == "quick" else 0.4)
data = b"drifted" if resumed and mode == "drift" else b"result"
open(os.path.join(out, "model.bin"), "wb").write(data)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"value": 1, "wall_time_s": random.random(), "cached": [resumed]}, f)
"""


class _At:
    """An rng stub: every kill moment at ``fraction`` of the top of the range drawn from
    (the whole reference run on a first try, less on the retries)."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        assert a <= self.fraction * b <= b
        return self.fraction * b


@pytest.mark.parametrize(
    ("mode", "outcome"), [("good", "identical"), ("drift", "different"), ("fail", "resume_failed")]
)
def test_kill_and_resume_classifies_the_resumed_run(mode, outcome, tmp_path, load_script):
    fc = load_script("fault_campaign")
    result = fc.kill_and_resume(
        lambda out: [sys.executable, "-c", PROGRAM, str(out), mode],
        ("model.bin", "results.json"),
        kills=1,
        rng=_At(0.6),
        env=dict(os.environ),
        workdir=tmp_path,
        label="t",
    )
    assert result["kills"] == 1
    (detail,) = result["details"]
    assert detail["killed"], "killed at 60% of a 0.4 s run: it must not have finished"
    assert result["killed"] == 1 and result["finished_before_kill"] == 0
    assert detail["outcome"] == outcome and result[outcome] == 1
    assert result["killed_identical"] == (outcome == "identical")
    assert detail["differ"] == (["model.bin"] if mode == "drift" else [])


def test_snapshot_leaves_out_only_what_describes_the_run(tmp_path, load_script):
    fc = load_script("fault_campaign")
    best = {"accuracy": 0.75, "bytes": 2229, "seconds": 0.8, "sparsity": {"k": 0.9}}
    (tmp_path / "best.json").write_text(json.dumps(best))
    (tmp_path / "report.md").write_text("6 candidate trials (6 computed in the last run), ok\n")
    (tmp_path / "best.jz").write_bytes(b"\x00\x01")
    snap = fc.snapshot(tmp_path, ("best.json", "report.md", "best.jz", "absent.jz"))
    assert snap["best.json"] == {"accuracy": 0.75, "bytes": 2229, "sparsity": {"k": 0.9}}
    assert snap["report.md"] == "6 candidate trials, ok\n"
    assert snap["best.jz"] == b"\x00\x01" and snap["absent.jz"] is None
    # a result field differing is a difference: only timings and cache notes are dropped
    (tmp_path / "best.json").write_text(json.dumps({**best, "bytes": 2230, "seconds": 9.0}))
    assert fc.snapshot(tmp_path, ("best.json",))["best.json"] != snap["best.json"]


def test_progress_counts_stored_stages_or_journal_lines(tmp_path, load_script):
    fc = load_script("fault_campaign")
    for name in ("02-model-x", "03-train-y"):
        (tmp_path / "run" / "stages" / name).mkdir(parents=True)
    (tmp_path / "run" / "stages" / "02-model-x" / "done.json").write_text("{}")
    assert fc.progress(tmp_path / "run") == 1
    (tmp_path / "auto").mkdir()
    (tmp_path / "auto" / "journal.jsonl").write_text('{"a": 1}\n{"b": 2}\n\n')
    assert fc.progress(tmp_path / "auto") == 2


def test_negative_kills_are_refused(tmp_path, load_script):
    fc = load_script("fault_campaign")
    with pytest.raises(SystemExit) as info:
        fc.main(["--kills", "-1", "--out", str(tmp_path)])
    assert info.value.code == 2


def test_a_run_that_finishes_before_its_moment_is_replaced_not_counted(tmp_path, load_script):
    fc = load_script("fault_campaign")
    result = fc.kill_and_resume(
        lambda out: [sys.executable, "-c", PROGRAM, str(out), "quick"],
        ("model.bin",),
        kills=1,
        rng=_At(1.0),
        env=dict(os.environ),
        workdir=tmp_path,
        label="t",
    )
    (detail,) = result["details"]
    assert not detail["killed"] and detail["finished_before"] == 4  # four tries, none killed
    assert result["killed"] == 0 and result["finished_before_kill"] == 4
    assert result["killed_identical"] == 0  # an unkilled run is no evidence of a resume


def test_search_times_are_left_out_of_the_report_comparison(tmp_path, load_script):
    fc = load_script("fault_campaign")
    table = "| search time (s) | ratio | bytes | candidate |\n|---|---|---|---|\n"
    pareto = "| 27563 | 38.69x | 0.9875 | yes |\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "report.md").write_text(table + "| 12.3 | 38.30x | 27000 | `k1` |\n" + pareto)
    (tmp_path / "b" / "report.md").write_text(table + "| 40.0 | 38.30x | 27000 | `k1` |\n" + pareto)
    a, b = (fc.snapshot(tmp_path / d, ("report.md",)) for d in "ab")
    assert a == b and "| 27563 | 38.69x |" in a["report.md"]  # the Pareto rows untouched
    (tmp_path / "b" / "report.md").write_text(table + "| 40.0 | 38.31x | 27000 | `k1` |\n" + pareto)
    assert fc.snapshot(tmp_path / "b", ("report.md",)) != a  # a different ratio still differs
