"""Calibration, GPTQ and SparseGPT over ``jax.distributed``: 2 CPU processes, each its own rows.

Each worker (``mp_oneshot_worker.py``, run by subprocess) joins a 2-process run on
127.0.0.1 with gloo CPU collectives and 2 CPU devices, so the ``("data", "model")``
mesh spans 4 devices on 2 processes; the params are sharded over both axes and each
process feeds only its own block of every calibration batch. Both must end with the
same statistics, GPTQ codes and SparseGPT masks and weights as one process fed the
whole batches (the tolerance of ``test_oneshot_shard.py``: integers identical, each
float array within 1e-5 of its largest magnitude). A host array of this process's rows
is refused (it would be summed per process). Skipped, with the workers' output, only when
``jax.distributed.initialize`` itself fails on this machine.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

_HERE = Path(__file__).parent
_WORKER = _HERE / "mp_oneshot_worker.py"
_PROCESSES = 2
_DEVICES_PER_PROCESS = 2
_TIMEOUT_S = 120.0
_PORT_TAKEN = ("address already in use", "failed to add port", "no address added")


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    """The test's environment for CPU workers, without a forced host device count (each
    worker sets its own with ``jax_num_cpu_devices``); other XLA flags are kept, so the
    workers compile like this process's reference run."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]  # fmt: skip
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _run_workers(
    tmp_path: Path, attempt: int, method: str, meanwhile: Callable[[], None]
) -> tuple[list[int | None], list[str], list[Path]]:
    """Starts the workers, runs ``meanwhile()`` here while they work, then waits for all
    (killing every one on a failure, an error of ``meanwhile`` or the deadline)."""
    port = _free_port()
    outs = [tmp_path / f"result{attempt}_{i}.npz" for i in range(_PROCESSES)]
    logs = [tmp_path / f"worker{attempt}_{i}.log" for i in range(_PROCESSES)]
    procs = []
    try:
        for i in range(_PROCESSES):
            args = [port, i, _PROCESSES, _DEVICES_PER_PROCESS, outs[i], method]
            with open(logs[i], "wb") as log:
                procs.append(subprocess.Popen([sys.executable, str(_WORKER), *map(str, args)],
                                              env=_env(), stdout=log, stderr=subprocess.STDOUT))  # fmt: skip
        deadline = time.monotonic() + _TIMEOUT_S
        meanwhile()
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


@pytest.mark.parametrize("method", ["gptq", "sparsegpt"])
def test_two_processes_each_feeding_its_rows_match_one_process(tmp_path, method):
    worker = _load(_WORKER, "jaxzip_tests_calib_mp_oneshot_worker")
    single = {}

    def reference() -> None:  # one process, the whole batches: run while the workers start
        if not single:
            single.update(worker.compress(worker.init(), worker.global_batches(), (method,)))

    for attempt in range(2):  # a new port once, should another program take the free one
        codes, logs, outs = _run_workers(tmp_path, attempt, method, reference)
        taken = any(s in log.lower() for log in logs for s in _PORT_TAKEN)
        if codes == [0] * _PROCESSES or not taken:
            break
    report = "\n".join(
        f"--- worker {i}: exit {'killed (timeout or a failed peer)' if c is None else c}\n"
        f"{log[-3000:]}"
        for i, (c, log) in enumerate(zip(codes, logs, strict=True))
    )
    started = all("DISTRIBUTED_STARTED" in log for log in logs)
    importing = all("INITIALIZING" in log for log in logs)  # imports fine, initialize() called
    if codes != [0] * _PROCESSES and importing and not started:
        pytest.skip(f"jax.distributed cannot start 2 CPU processes here:\n{report}")
    assert codes == [0] * _PROCESSES, report
    runs = [dict(np.load(out)) for out in outs]
    facts = ("in_order", "refused", "process_count", "param_devices", "local_rows")
    for run in runs:
        assert bool(run.pop("in_order")), "a global batch is not assembled from the blocks in order"
        refused = str(run.pop("refused"))
        assert refused.startswith("batches[0]: in this 2-process run"), refused
        assert "got an array of type ndarray and shape (4, 4, 8) on this process only" in refused, (
            refused
        )
        assert int(run.pop("process_count")) == _PROCESSES
        assert int(run.pop("param_devices")) == _PROCESSES * _DEVICES_PER_PROCESS
        assert int(run.pop("local_rows")) == 4  # a device holds its process's 4 of the 8 sequences
    assert not any(f in run for f in facts for run in runs)
    for name in runs[0]:  # both processes hold the same (gathered) results
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)
    shard = _load(_HERE / "test_oneshot_shard.py", "jaxzip_tests_calib_test_oneshot_shard")
    assert set(single) == set(runs[0])
    shard.check_results(single)
    shard.compare(single, runs[0])
