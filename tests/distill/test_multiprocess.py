"""Multi-process distillation over ``jax.distributed``: 2 CPU processes train in lockstep.

Each worker (``mp_worker.py``, run by subprocess) joins a 2-process run on
127.0.0.1 with gloo CPU collectives and 2 CPU devices, so the mesh spans 4
devices on 2 processes; each feeds its half of every global batch through
``shard_batch(..., local=True)``. Both must end with identical params, equal to a
single-process run on the same global batches.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

_WORKER = Path(__file__).with_name("mp_worker.py")
_PROCESSES = 2
_DEVICES_PER_PROCESS = 2
_TIMEOUT_S = 120.0
_PORT_TAKEN = ("address already in use", "failed to add port", "no address added")


def _load_worker():
    spec = importlib.util.spec_from_file_location("jaxzip_tests_distill_mp_worker", _WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(tmp_path: Path, attempt: int) -> tuple[list[int | None], list[str], list[Path]]:
    """Starts the workers, waits for all (killing every one on a failure or the deadline)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    port = _free_port()
    outs = [tmp_path / f"params{attempt}_{i}.npz" for i in range(_PROCESSES)]
    logs = [tmp_path / f"worker{attempt}_{i}.log" for i in range(_PROCESSES)]
    procs = []
    try:
        for i in range(_PROCESSES):
            args = [port, i, _PROCESSES, _DEVICES_PER_PROCESS, outs[i]]
            with open(logs[i], "wb") as log:
                procs.append(subprocess.Popen([sys.executable, str(_WORKER), *map(str, args)],
                                              env=env, stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if None not in codes or any(c not in (None, 0) for c in codes):
                break  # all done, or one failed: the others would wait for it until they time out
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    codes = [None if p.returncode is not None and p.returncode < 0 else p.returncode
             for p in procs]  # fmt: skip
    texts = [log.read_text(errors="replace") for log in logs]
    return codes, texts, outs


def test_two_processes_train_in_lockstep_like_one(tmp_path):
    for attempt in range(2):  # a new port once, should another program take the free one
        codes, logs, outs = _run_workers(tmp_path, attempt)
        taken = any(s in log.lower() for log in logs for s in _PORT_TAKEN)
        if codes == [0] * _PROCESSES or not taken:
            break
    report = "\n".join(
        f"--- worker {i}: exit {'killed (timeout or a failed peer)' if c is None else c}\n"
        f"{log[-3000:]}"
        for i, (c, log) in enumerate(zip(codes, logs, strict=True))
    )
    assert codes == [0] * _PROCESSES, report
    runs = [dict(np.load(out)) for out in outs]
    for run in runs:
        assert int(run["process_count"]) == _PROCESSES
        assert int(run["param_devices"]) == _PROCESSES * _DEVICES_PER_PROCESS
        assert bool(run["in_order"]), "the assembled global batch is not the global batch"
        assert int(run["step"]) == 5 and int(run["compiles"]) == 0, report
        assert "multiple of the 2 slice(s)" in str(run["indivisible"])
        assert "must include devices of this process" in str(run["foreign"])
    worker = _load_worker()
    names = ("w1", "b1", "w2", "loss")
    for name in names:  # lockstep: bit-identical on both processes
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)
    state, metrics, compiles = worker.train(worker.global_batches(), worker.init(1))
    assert compiles == 0
    for name in names[:3]:
        np.testing.assert_allclose(runs[0][name], np.asarray(state.params[name]), rtol=1e-5,
                                   atol=1e-6, err_msg=name)  # fmt: skip
    assert float(runs[0]["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-5)
    initial = worker.init(0)
    assert not np.allclose(runs[0]["w1"], initial["w1"], atol=1e-3)  # it did train
