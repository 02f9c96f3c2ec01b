"""Fault campaign for ``jaxzip run`` and ``jaxzip auto``, driven through the CLI as a user would.

Four checks, each printed as a figure (issue 19's fault targets):

* **kill/resume (run)**: ``jaxzip run`` is SIGKILLed at a random moment, then the
  same command is run again; its outputs must equal an uninterrupted run's byte
  for byte (``results.json`` compared without its wall times and list of cached
  stages, which describe the run rather than its result).
* **kill/resume (auto)**: the same for ``jaxzip auto`` with ``--max-trials``
  (``best.jz`` byte for byte, ``best.json`` without timings).
* **concurrent runs**: a second ``jaxzip run`` into a directory another one is
  writing must be refused at once (exit 2, one line naming the holder's PID).
* **failed rerun**: a rerun that fails with a config error must leave the
  previous run's outputs intact.

The kill moments are drawn from ``--seed`` over the reference run's duration.

Usage::

    python experiments/fault_campaign.py --kills 20 --out runs/fault_campaign
    python experiments/fault_campaign.py --kills 2 --auto-kills 2 --out /tmp/fc   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

# What describes a run rather than its result: left out of the byte comparison.
_VOLATILE = {"wall_time_s", "cached", "seconds", "elapsed_s", "time_s", "timeline", "wall_s"}


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
        else:
            snap[name] = p.read_bytes()
    return snap


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def kill_and_resume(cmd_for, files, *, kills, rng, env, workdir: Path, label: str) -> dict:
    """Reference run, then ``kills`` runs killed at random moments and resumed; compares."""
    ref_dir = workdir / f"{label}_ref"
    t0 = time.perf_counter()
    ref = _run(cmd_for(ref_dir), env, timeout=1800)
    duration = time.perf_counter() - t0
    if ref.returncode != 0:
        raise SystemExit(f"{label}: the reference run failed:\n{ref.stderr[-2000:]}")
    want = snapshot(ref_dir, files)
    outcomes = {"identical": 0, "different": 0, "resume_failed": 0, "finished_before_kill": 0}
    details = []
    for i in range(kills):
        out = workdir / f"{label}_{i:02d}"
        at = rng.uniform(0.05, 1.0) * duration
        proc = subprocess.Popen(cmd_for(out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            proc.wait(timeout=at)
            finished = True
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            finished = False
        resumed = _run(cmd_for(out), env, timeout=1800)
        if finished:
            outcomes["finished_before_kill"] += 1
        got = snapshot(out, files) if resumed.returncode == 0 else {}
        differ = sorted(f for f in files if got and got[f] != want[f])
        outcome = (
            "resume_failed" if resumed.returncode != 0 else "different" if differ else "identical"
        )
        outcomes[outcome] += 1
        details.append({"kill_at_s": round(at, 3), "killed": not finished, "outcome": outcome,
                        "differ": differ,
                        "stderr_tail": resumed.stderr[-300:] if outcome != "identical" else ""})  # fmt: skip
        print(
            f"{label} kill {i + 1}/{kills} at {at:5.1f}s: {outcome} {' '.join(differ)}", flush=True
        )
    return {"reference_s": round(duration, 2), "kills": kills, **outcomes, "details": details}


def concurrent_runs(config: Path, *, env, workdir: Path) -> dict:
    """Starts a run, then a second one into the same directory while the first holds it."""
    out = workdir / "concurrent"
    first = subprocess.Popen(_cli("run", str(config), "--out", str(out), "--no-progress"),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        line = first.stderr.readline()  # the first stage's log line: it is running
        second = _run(_cli("run", str(config), "--out", str(out), "--no-progress"), env, 1800)
        first_rc = first.wait(timeout=1800)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    lines = [s for s in second.stderr.splitlines() if s.strip()]
    refused = (second.returncode == 2 and len(lines) == 1 and f"PID {first.pid}" in lines[0]
               and first_rc == 0)  # fmt: skip
    return {"refused": refused, "first_exit": first_rc, "second_exit": second.returncode,
            "second_stderr": second.stderr[-500:], "first_log": line.strip()}  # fmt: skip


def failed_rerun(config: Path, files, *, env, workdir: Path) -> dict:
    """A complete run, then a rerun that fails on a config error: the outputs must survive."""
    out = workdir / "failed_rerun"
    ok = _run(_cli("run", str(config), "--out", str(out), "--no-progress"), env, 1800)
    before = snapshot(out, files)
    bad = _run(_cli("run", str(config), "--out", str(out), "--no-progress",
                    "--set", "prune.where=nomatch"), env, 1800)  # fmt: skip
    after = snapshot(out, files)
    lost = sorted(f for f in files if before[f] is not None and after[f] != before[f])
    return {"first_exit": ok.returncode, "rerun_exit": bad.returncode, "intact": not lost
            and ok.returncode == 0 and bad.returncode == 2, "lost": lost,
            "rerun_stderr": bad.stderr[-300:]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="random kills of jaxzip run")
    parser.add_argument("--auto-kills", type=int, default=None,
                        help="random kills of jaxzip auto (default: --kills)")  # fmt: skip
    parser.add_argument("--max-trials", type=int, default=6, help="jaxzip auto --max-trials")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", type=Path, default=Path("runs/fault_campaign"))
    parser.add_argument("--keep", action="store_true", help="keep the runs under OUT/work")
    args = parser.parse_args(argv)
    if args.kills < 0 or (args.auto_kills is not None and args.auto_kills < 0):
        parser.error("--kills and --auto-kills must be >= 0")
    rng = random.Random(args.seed)
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        work = Path(tmp) if not args.keep else args.out / "work"
        work.mkdir(parents=True, exist_ok=True)
        run_cfg, auto_cfg = work / "run.toml", work / "auto.toml"
        run_cfg.write_text(textwrap.dedent(RUN_CONFIG), encoding="utf-8")
        auto_cfg.write_text(textwrap.dedent(AUTO_CONFIG), encoding="utf-8")
        run_files = ("model.jz", "model.jzx", "params.npz", "results.json", "config.toml")
        auto_files = ("best.jz", "best.json")
        results = {
            "run": kill_and_resume(
                lambda out: _cli("run", str(run_cfg), "--out", str(out), "--no-progress"),
                run_files, kills=args.kills, rng=rng, env=env, workdir=work, label="run"),
            "auto": kill_and_resume(
                lambda out: _cli("auto", str(auto_cfg), "--out", str(out), "--no-progress",
                                 "--max-drop", "5", "--max-trials", str(args.max_trials)),
                auto_files, kills=args.kills if args.auto_kills is None else args.auto_kills,
                rng=rng, env=env, workdir=work, label="auto"),
            "concurrent": concurrent_runs(run_cfg, env=env, workdir=work),
            "failed_rerun": failed_rerun(run_cfg, run_files, env=env, workdir=work),
        }  # fmt: skip
    atomic_write_json(args.out / "fault_campaign.json", results)
    r, a = results["run"], results["auto"]
    print(f"jaxzip run:  {r['kills']} kills, {r['identical']} resumed byte-identical, "
          f"{r['different']} different, {r['resume_failed']} resume failed "
          f"({r['finished_before_kill']} finished before their kill)")  # fmt: skip
    print(f"jaxzip auto: {a['kills']} kills, {a['identical']} resumed byte-identical, "
          f"{a['different']} different, {a['resume_failed']} resume failed "
          f"({a['finished_before_kill']} finished before their kill)")  # fmt: skip
    c, f = results["concurrent"], results["failed_rerun"]
    print(f"concurrent runs into one --out: second {'refused' if c['refused'] else 'NOT refused'}"
          f" (exit {c['second_exit']})")  # fmt: skip
    print(
        f"failed rerun: previous outputs {'intact' if f['intact'] else 'LOST: ' + str(f['lost'])}"
    )
    return results


if __name__ == "__main__":
    main()
