"""Fixtures for the pipeline tests: one real run of every kind of stage."""

from __future__ import annotations

import pytest

FULL_STAGES = ["data", "model", "train", "distill", "prune", "evaluate", "export", "report"]
FULL_OVERRIDES = [
    "model.name=mlp",
    "model.widths=[32]",
    "train.epochs=1",
    "train.learning_rate=0.01",
    "distill.widths=[8]",
    "distill.epochs=1",
    "distill.learning_rate=0.03",
    "distill.temperature=2.0",
    "prune.sparsity=0.5",
    "prune.epochs_per_round=0",
    "export.file=m.jzx",
    f"experiment.stages={FULL_STAGES}".replace("'", '"'),
]


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """One real run of every kind of stage on a tiny MLP (digits, 1 epoch each): (out, cfg, results).

    Tests that rerun it copy ``out`` first, so it stays as the first run left it.
    """
    from jaxzip.config import apply_overrides, load_config
    from jaxzip.pipeline import run_experiment

    cfg = apply_overrides(load_config(), FULL_OVERRIDES)
    out = tmp_path_factory.mktemp("full") / "run"
    results = run_experiment(cfg, out, progress=False, report=False)
    return out, cfg, results
