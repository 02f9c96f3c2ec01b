"""Multi-process distillation over ``jax.distributed``: 2 CPU processes train in lockstep.

Each worker (``mp_worker.py``, run by subprocess) joins a 2-process run on
127.0.0.1 with gloo CPU collectives and 2 CPU devices, so the mesh spans 4
devices on 2 processes; each feeds its half of every global batch through
``shard_batch(..., local=True)``. Both must end with identical params, equal to a
single-process run on the same global batches.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_WORKER = Path(__file__).with_name("mp_worker.py")
_PROCESSES = 2  # the defaults of mp_workers
_DEVICES_PER_PROCESS = 2


def _load_worker():
    spec = importlib.util.spec_from_file_location("jaxzip_tests_distill_mp_worker", _WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_processes_train_in_lockstep_like_one(tmp_path, mp_workers, child_env):
    workers = mp_workers(_WORKER, tmp_path, env=child_env())
    codes, _, outs = workers
    report = workers.report
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
        np.testing.assert_allclose(
            runs[0][name], np.asarray(state.params[name]), rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert float(runs[0]["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-5)
    initial = worker.init(0)
    assert not np.allclose(runs[0]["w1"], initial["w1"], atol=1e-3)  # it did train
