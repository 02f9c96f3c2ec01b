"""Fault campaign for ``jaxzip run`` and ``jaxzip auto``, driven through the CLI as a user would.

Four checks, each printed as a figure and written to ``OUT/fault_campaign.json``
(issue 19's fault targets):

* **kill/resume (run)**: ``jaxzip run`` is SIGKILLed at a random moment, then the
  same command is run again; its outputs (``model.jz``, ``model.jzx``,
  ``params.npz``, ``config.toml``, ``results.json``) must equal an uninterrupted
  run's byte for byte, except that ``results.json`` is compared without
  ``wall_time_s`` (stage timings) and ``cached`` (the stages the resumed run
  restored): both describe how the run went, not what it computed.
* **kill/resume (auto)**: the same for ``jaxzip auto`` with ``--max-trials``:
  ``best.jz`` and ``config.toml`` byte for byte; ``best.json`` and ``auto.json``
  without ``seconds`` (each trial's wall time), ``wall_time_s`` (the search's),
  ``elapsed_s`` (search time when the best improved) and ``computed`` (how many
  trials the last invocation computed rather than read from the journal); ``report.md`` with its "(N computed in the last run)"
  note removed and the search times of its "best ratio against time" table
  blanked, for the same reasons. Everything else (every trial's accuracy,
  bytes, key, settings; the Pareto front; the sensitivity table) must match.
  The plots (``*.png``) are drawn from those same figures and are not compared.
* **concurrent runs**: a second ``jaxzip run`` into a directory another one is
  writing must be refused at once (exit 2, one line naming the holder's PID),
  and the first run's outputs must equal the reference run's.
* **failed rerun**: after a complete run, a rerun that fails (a config error,
  ``prune.where`` matching nothing; a runtime error, training diverging, SGD at
  ``train.learning_rate=1e10``; a rerun with a changed config SIGKILLed midway)
  must leave the previous run's outputs byte-identical.

The kill moments are drawn from ``--seed``, uniform over 5%..100% of the
reference run's duration (process start included); each kill records how far
the run had got (stages stored in ``stages/``, lines in auto's journal), so the
spread over the run is visible in the JSON. A run that finished before its kill
moment is not a kill: it is counted apart (``finished_before_kill``) and replaced
by a fresh run killed at a new moment, drawn from an earlier range each time
(up to 100%, 75%, 50%, 25% of the reference duration: four tries), since a run
that outpaced its reference once may do so again.

Usage::

    python experiments/fault_campaign.py --kills 20 --auto-kills 20 --out runs/fault_campaign
    python experiments/fault_campaign.py --kills 2 --auto-kills 2 --out /tmp/fc   # a quick look
    python experiments/fault_campaign.py --auto-kills 20 --parts auto --out /tmp/fca  # auto only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from jaxzip.io import atomic_write_json

RUN_CONFIG = """
[experiment]
name = "fault"
seed = 0

[data]
name = "digits"
val_fraction = 0.1

[model]
name = "mlp"
widths = [32]

[train]
epochs = 3
batch_size = 64
optimizer = "adam"
learning_rate = 3e-3

[prune]
sparsity = 0.7
epochs_per_round = 1

[kmeans]
dense_bits = 4
finetune_epochs = 1

[codec]
file = "model.jz"

[export]
file = "model.jzx"
"""

AUTO_CONFIG = """
[experiment]
name = "fault_auto"
seed = 0

[data]
name = "digits"
val_fraction = 0.2

[model]
name = "mlp"
widths = [32]

[train]
epochs = 3
optimizer = "adam"
learning_rate = 3e-3

[prune]
epochs_per_round = 1
"""

_ATTEMPTS = 4
# What describes a run rather than its result: left out of the byte comparison.
_VOLATILE = {"wall_time_s", "cached", "seconds", "computed", "elapsed_s"}
_REPORT_NOTE = re.compile(r" \(\d+ computed in the last run\)")
# report.md's "best ratio against time" rows: the search time (first cell) is a timing.
_TIMELINE_ROW = re.compile(r"^\| [\d.]* \| ([\d.]+x \| \d+ \| `[^`]*` \|)$", re.MULTILINE)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxzip", *args]


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def snapshot(out: Path, files: tuple[str, ...]) -> dict[str, object]:
    """The comparable content of a run's outputs: bytes, or JSON without timings."""
    snap: dict[str, object] = {}
    for name in files:
        p = out / name
        if not p.is_file():
            snap[name] = None
        elif name.endswith(".json"):
            snap[name] = _strip(json.loads(p.read_text(encoding="utf-8")))
        elif name.endswith(".md"):
            text = _REPORT_NOTE.sub("", p.read_text(encoding="utf-8"))
            snap[name] = _TIMELINE_ROW.sub(r"| - | \1", text)
        else:
            snap[name] = p.read_bytes()
    return snap


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def progress(out: Path) -> int:
    """How far a run into ``out`` got: stages stored complete, or lines in auto's journal."""
    journal = out / "journal.jsonl"
    if journal.is_file():
        return sum(1 for line in journal.read_bytes().splitlines() if line.strip())
    return len(list(out.glob("stages/*/done.json")))


def run_killed(cmd: list[str], env: dict[str, str], at: float) -> bool:
    """Starts ``cmd`` and SIGKILLs it after ``at`` seconds; False if it finished first."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=at)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def kill_and_resume(cmd_for, files, *, kills, rng, env, workdir: Path, label: str) -> dict:
    """Reference run, then ``kills`` runs killed at random moments and resumed; compares.

    Args:
      cmd_for: the command line for an output directory.
      files: the output files compared (see :func:`snapshot`).
      kills: how many killed runs.
      rng: draws the kill moments.
      env: the subprocesses' environment.
      workdir: where the runs' directories go.
      label: names the runs' directories and the printed lines.

    Returns:
      The figures: ``kills``, ``killed`` (those actually killed), ``killed_identical``,
      ``identical``, ``different``, ``resume_failed``, ``finished_before_kill`` (runs
      that finished before their moment; each is replaced by a fresh run killed at a
      new moment, earlier each time, up to four tries) and a record per kill.
    """
    ref_dir = workdir / f"{label}_ref"
    t0 = time.perf_counter()
    ref = _run(cmd_for(ref_dir), env, timeout=1800)
    duration = time.perf_counter() - t0
    if ref.returncode != 0:
        raise SystemExit(f"{label}: the reference run failed:\n{ref.stderr[-2000:]}")
    want = snapshot(ref_dir, files)
    total = progress(ref_dir)
    outcomes = {"identical": 0, "different": 0, "resume_failed": 0}
    killed_count = finished_first = 0
    details = []
    for i in range(kills):
        for attempt in range(_ATTEMPTS):  # a run that finished before its moment: another one
            out = workdir / f"{label}_{i:02d}_{attempt}"
            at = rng.uniform(0.05, 1.0 - 0.25 * attempt) * duration  # retries: earlier
            killed = run_killed(cmd_for(out), env, at)
            if killed:
                break
        finished_first += attempt + (not killed)
        killed_count += killed
        done_at_kill = progress(out)
        resumed = _run(cmd_for(out), env, timeout=1800)
        got = snapshot(out, files) if resumed.returncode == 0 else {}
        differ = sorted(f for f in files if got and got[f] != want[f])
        outcome = (
            "resume_failed" if resumed.returncode != 0 else "different" if differ else "identical"
        )
        outcomes[outcome] += 1
        details.append(
            {
                "kill_at_s": round(at, 3),
                "killed": killed,
                "outcome": outcome,
                "finished_before": attempt + (not killed),
                "progress_at_kill": f"{done_at_kill}/{total}",
                "differ": differ,
                "stderr_tail": "" if outcome == "identical" else resumed.stderr[-300:],
            }
        )
        state = f"killed at {at:5.1f}s ({done_at_kill}/{total} done)" if killed else "finished"
        print(f"{label} {i + 1}/{kills} {state}: {outcome} {' '.join(differ)}", flush=True)
    return {
        "reference_s": round(duration, 2),
        "kills": kills,
        "killed": killed_count,
        "killed_identical": sum(d["killed"] and d["outcome"] == "identical" for d in details),
        "finished_before_kill": finished_first,
        **outcomes,
        "details": details,
    }


def concurrent_runs(config: Path, want: dict, files, *, env, workdir: Path) -> dict:
    """Starts a run, then a second one into the same directory while the first holds it.

    ``want`` is the reference run's :func:`snapshot`: the first run's outputs must equal it.
    """
    out = workdir / "concurrent"
    first = subprocess.Popen(
        _cli("run", str(config), "--out", str(out), "--no-progress"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = first.stderr.readline()  # the first stage's log line: it is running
        second = _run(_cli("run", str(config), "--out", str(out), "--no-progress"), env, 1800)
        first.stderr.read()
        first_rc = first.wait(timeout=1800)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    lines = [s for s in second.stderr.splitlines() if s.strip()]
    refused = (
        second.returncode == 2
        and len(lines) == 1
        and f"PID {first.pid}" in lines[0]
        and "Traceback" not in second.stderr
    )
    first_intact = first_rc == 0 and snapshot(out, files) == want
    return {
        "refused": refused,
        "first_exit": first_rc,
        "first_outputs_as_reference": first_intact,
        "second_exit": second.returncode,
        "second_stderr": second.stderr[-500:],
        "first_log": line.strip(),
    }


def failed_rerun(config: Path, files, *, env, workdir: Path, duration: float) -> dict:
    """A complete run, then reruns that fail: the previous outputs must survive byte for byte.

    The reruns: a config error (``prune.where`` matches nothing), a runtime error
    (training diverges), and a rerun with a changed config killed at half of
    ``duration`` (the reference run's).
    """
    out = workdir / "failed_rerun"
    cmd = _cli("run", str(config), "--out", str(out), "--no-progress")
    ok = _run(cmd, env, 1800)
    before = snapshot(out, files)
    cases = {}
    diverge = ["--set", "train.optimizer=sgd", "--set", "train.learning_rate=1e10"]
    for name, extra in (("config_error", ["--set", "prune.where=nomatch"]), ("diverged", diverge)):
        bad = _run([*cmd, *extra], env, 1800)
        lost = sorted(f for f in files if snapshot(out, files)[f] != before[f])
        last = ([s for s in bad.stderr.splitlines() if s.strip()] or [""])[-1]
        clear = last.startswith("jaxzip: error: ") and "Traceback" not in bad.stderr
        cases[name] = {
            "exit": bad.returncode,
            "lost": lost,
            "stderr_tail": bad.stderr[-300:],
            "intact": not lost and bad.returncode == 2 and clear,
        }
    killed = run_killed([*cmd, "--set", "train.epochs=5"], env, 0.5 * duration)
    lost = sorted(f for f in files if snapshot(out, files)[f] != before[f])
    cases["killed"] = {"killed": killed, "lost": lost, "intact": killed and not lost}
    intact = ok.returncode == 0 and all(c["intact"] for c in cases.values())
    return {"first_exit": ok.returncode, "intact": intact, **cases}


def main(argv: list[str] | None = None) -> dict:
    """Runs the campaign (see the module docstring); prints and returns its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="random kills of jaxzip run")
    parser.add_argument(
        "--auto-kills",
        type=int,
        default=None,
        help="random kills of jaxzip auto (default: --kills)",
    )
    parser.add_argument("--max-trials", type=int, default=6, help="jaxzip auto --max-trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument(
        "--parts",
        default="run,auto,checks",
        help="comma-separated: run (kills), auto (kills), checks (concurrent "
        "runs, failed reruns); default all",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/fault_campaign"))
    parser.add_argument("--keep", action="store_true", help="keep the runs under OUT/work")
    args = parser.parse_args(argv)
    auto_kills = args.kills if args.auto_kills is None else args.auto_kills
    if args.kills < 0 or auto_kills < 0:
        parser.error("--kills and --auto-kills must be >= 0")
    if args.max_trials < 1:
        parser.error(f"--max-trials must be >= 1, got {args.max_trials}")
    parts = set(args.parts.split(","))
    if not parts or not parts <= {"run", "auto", "checks"}:
        parser.error(f"--parts: expected names among run, auto, checks, got {args.parts!r}")
    rng = random.Random(args.seed)
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: dict = {}
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        work = Path(tmp) if not args.keep else args.out / "work"
        work.mkdir(parents=True, exist_ok=True)
        run_cfg, auto_cfg = work / "run.toml", work / "auto.toml"
        run_cfg.write_text(textwrap.dedent(RUN_CONFIG), encoding="utf-8")
        auto_cfg.write_text(textwrap.dedent(AUTO_CONFIG), encoding="utf-8")
        run_files = ("model.jz", "model.jzx", "params.npz", "results.json", "config.toml")
        auto_files = ("best.jz", "best.json", "auto.json", "report.md", "config.toml")
        if parts & {"run", "checks"}:  # the checks compare with the run's reference
            results["run"] = kill_and_resume(
                lambda out: _cli("run", str(run_cfg), "--out", str(out), "--no-progress"),
                run_files,
                kills=args.kills if "run" in parts else 0,
                rng=rng,
                env=env,
                workdir=work,
                label="run",
            )
        if "auto" in parts:
            results["auto"] = kill_and_resume(
                lambda out: _cli(
                    "auto",
                    str(auto_cfg),
                    "--out",
                    str(out),
                    "--no-progress",
                    "--max-drop",
                    "5",
                    "--max-trials",
                    str(args.max_trials),
                ),
                auto_files,
                kills=auto_kills,
                rng=rng,
                env=env,
                workdir=work,
                label="auto",
            )
        if "checks" in parts:
            want = snapshot(work / "run_ref", run_files)
            results["concurrent"] = concurrent_runs(run_cfg, want, run_files, env=env, workdir=work)
            results["failed_rerun"] = failed_rerun(
                run_cfg, run_files, env=env, workdir=work, duration=results["run"]["reference_s"]
            )
    summary: dict = {}
    for name in ("run", "auto"):
        if name in parts:
            x = results[name]
            summary[f"{name}_killed_resumed_identical"] = f"{x['killed_identical']}/{x['killed']}"
            print(
                f"jaxzip {name}: {x['killed_identical']}/{x['killed']} killed runs resumed "
                f"byte-identical ({x['different']} different, {x['resume_failed']} resume "
                f"failed; {x['finished_before_kill']} runs finished before their kill moment "
                "and were replaced)"
            )
    if "checks" in parts:
        c, f = results["concurrent"], results["failed_rerun"]
        summary["concurrent_second_refused"] = c["refused"]
        summary["concurrent_first_outputs_as_reference"] = c["first_outputs_as_reference"]
        summary["failed_rerun_outputs_intact"] = f["intact"]
        same = "as the reference" if c["first_outputs_as_reference"] else "DIFFERENT"
        print(
            f"concurrent runs into one --out: second "
            f"{'refused' if c['refused'] else 'NOT refused'} (exit {c['second_exit']}), "
            f"first run's outputs {same}"
        )
        lost = {k: v["lost"] for k, v in f.items() if isinstance(v, dict) and not v["intact"]}
        print(
            f"failed reruns (config error, diverged training, killed): previous outputs "
            f"{'intact' if f['intact'] else 'NOT intact: ' + str(lost)}"
        )
    summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    summary["argv"] = sys.argv[1:] if argv is None else list(argv)
    results["summary"] = summary
    atomic_write_json(args.out / "fault_campaign.json", results)
    return results


if __name__ == "__main__":
    main()
