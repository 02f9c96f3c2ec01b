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
from pathlib import Path

import numpy as np
import pytest

_HERE = Path(__file__).parent
_WORKER = _HERE / "mp_oneshot_worker.py"
_PROCESSES = 2  # the defaults of mp_workers
_DEVICES_PER_PROCESS = 2


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["gptq", "sparsegpt", "stack"])
def test_two_processes_each_feeding_its_rows_match_one_process(
    tmp_path, method, mp_workers, child_env
):
    worker = _load(_WORKER, "jaxzip_tests_calib_mp_oneshot_worker")
    single = {}

    def reference() -> None:  # one process, the whole batches: run while the workers start
        if not single:
            single.update(worker.compress(worker.init(), worker.global_batches(), (method,)))

    workers = mp_workers(_WORKER, tmp_path, [method], env=child_env(), meanwhile=reference)
    codes, logs, outs = workers
    report = workers.report
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
    if method == "stack":  # a layer stack sharded over both processes, calibrated per layer
        assert "stack['ws'].values" in single
    shard = _load(_HERE / "test_oneshot_shard.py", "jaxzip_tests_calib_test_oneshot_shard")
    assert set(single) == set(runs[0])
    shard.check_results(single)
    shard.compare(single, runs[0])
