"""SIGKILL a process while it rewrites files through jaxzip's writers: never a torn file.

A child process rewrites five files in a loop, alternating two known contents, through
``atomic_write_bytes``, ``atomic_write_json``, ``train.save_params``, ``codec.save`` and
``atomic_write_text``. The test kills it at seeded random moments; after each kill every
file is absent (before its first write) or exactly one of its two complete versions,
and any leftover is a hidden ``.<name>.*.tmp`` file that no loader would mistake for it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import sys, numpy as np
from pathlib import Path
from jaxzip import codec, train
from jaxzip._io import atomic_write_bytes, atomic_write_json, atomic_write_text
d = Path(sys.argv[1])
trees = [{"w": np.full((64, 64), v, np.float32), "b": np.arange(8) * v} for v in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    v = i % 2
    atomic_write_bytes(d / "blob.bin", bytes([v + 1]) * 200_000)
    atomic_write_json(d / "results.json", {"v": v, "pad": "x" * 50_000})
    train.save_params(d / "params.npz", trees[v])
    codec.save(d / "model.jz", trees[v])
    atomic_write_text(d / "journal.txt", str(v) * 100_000)
    i += 1
"""


def _versions() -> dict[str, list[bytes]]:
    """The two complete versions of each file, written here by the same writers."""
    import tempfile

    from jaxzip import codec, train
    from jaxzip._io import atomic_write_json

    trees = [{"w": np.full((64, 64), v, np.float32), "b": np.arange(8) * v} for v in (1, 2)]
    out: dict[str, list[bytes]] = {}
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        for v in (0, 1):
            atomic_write_json(d / "r.json", {"v": v, "pad": "x" * 50_000})
            train.save_params(d / "p.npz", trees[v])
            out.setdefault("blob.bin", []).append(bytes([v + 1]) * 200_000)
            out.setdefault("results.json", []).append((d / "r.json").read_bytes())
            out.setdefault("params.npz", []).append((d / "p.npz").read_bytes())
            out.setdefault("model.jz", []).append(codec.encode(trees[v]))
            out.setdefault("journal.txt", []).append((str(v) * 100_000).encode())
    return out


def test_sigkill_never_leaves_a_torn_file(tmp_path):
    # SIGSTOP freezes the writer at a random instant: the files are then exactly what a
    # SIGKILL at that instant would leave (the kernel does no more writes for it), so one
    # child gives 15 "kills" without paying 15 interpreter starts; a real SIGKILL ends it.
    versions = _versions()
    rng = random.Random(1234)
    # the child leaves the suite's shared XLA cache alone: a kill could tear an entry there
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, env=env
    )
    seen: set[bytes] = set()
    try:
        assert proc.stdout.readline().strip() == b"ready"
        for _ in range(15):
            time.sleep(rng.uniform(0.0, 0.1))
            os.kill(proc.pid, signal.SIGSTOP)
            seen |= _check(tmp_path, versions)
            os.kill(proc.pid, signal.SIGCONT)
        time.sleep(rng.uniform(0.0, 0.1))
        proc.kill()
        proc.wait(timeout=30)
        seen |= _check(tmp_path, versions)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert len(seen) >= 2  # the checks saw files the writer had completed


def _check(d: Path, versions: dict[str, list[bytes]]) -> set[bytes]:
    seen = set()
    for p in d.iterdir():
        if p.name in versions:
            data = p.read_bytes()
            assert data in versions[p.name], f"{p.name} is torn ({len(data)} bytes)"
            seen.add(p.name.encode() + bytes([versions[p.name].index(data)]))
        else:  # only atomic_open's hidden temporaries, ".<name>.<random>.tmp", may be left
            assert any(p.name.startswith(f".{n}.") for n in versions), p.name
            assert p.name.endswith(".tmp"), p.name
    return seen
