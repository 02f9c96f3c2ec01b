"""The same config and seed give a bit-identical model.jz and identical results.json metrics.

Two in-process runs of a tiny pipeline (digits, MLP with one 16-unit hidden layer,
1 epoch, 80% pruning and 3-bit k-means without retraining, codec) into two directories.
"""

from __future__ import annotations

import json

import numpy as np

from jaxzip.config import apply_overrides, load_config
from jaxzip.pipeline import run_experiment

TINY = [
    "model.name=mlp",
    "model.widths=[16]",
    "train.epochs=1",
    "train.learning_rate=0.01",
    "prune.sparsity=0.8",
    "kmeans.dense_bits=3",
    "kmeans.iters=3",
    "prune.epochs_per_round=0",
    "kmeans.finetune_epochs=0",
    "codec.file=model.jz",
]
# Keys of results.json that may differ between identical runs, and why:
#   wall_time_s: measured durations (per stage and in total);
#   cached: which stages were restored from an on-disk cache (a property of the directory);
#   seconds (at any depth): the measured duration of each training epoch / pruning round.
EXCLUDED_TOP = ("wall_time_s", "cached")
EXCLUDED_ANYWHERE = ("seconds",)


def _drop_times(x):
    if isinstance(x, dict):
        return {k: _drop_times(v) for k, v in x.items() if k not in EXCLUDED_ANYWHERE}
    if isinstance(x, list):
        return [_drop_times(v) for v in x]
    return x


def _strip(results: dict) -> dict:
    return _drop_times({k: v for k, v in results.items() if k not in EXCLUDED_TOP})


def test_two_runs_are_bit_identical(tmp_path):
    cfg = apply_overrides(load_config(), TINY)
    a = run_experiment(cfg, tmp_path / "a", progress=False, report=False)
    run_experiment(cfg, tmp_path / "b", progress=False, report=False)
    ja = (tmp_path / "a" / "model.jz").read_bytes()
    jb = (tmp_path / "b" / "model.jz").read_bytes()
    assert ja == jb and len(ja) > 100
    ra = json.loads((tmp_path / "a" / "results.json").read_text())
    rb = json.loads((tmp_path / "b" / "results.json").read_text())
    assert _strip(ra) == _strip(rb)
    assert _strip(a) == _strip(ra)  # what was returned is what was written
    assert ra["metrics"] and "test_accuracy" in json.dumps(ra["metrics"])
    assert any("seconds" in json.dumps(h) for h in ra["history"])  # the exclusion is needed
    with np.load(tmp_path / "a" / "params.npz") as pa, np.load(tmp_path / "b" / "params.npz") as pb:
        assert pa.files == pb.files
        for k in pa.files:
            assert pa[k].tobytes() == pb[k].tobytes(), k
