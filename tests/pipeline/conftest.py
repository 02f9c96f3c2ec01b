"""Fixtures for the pipeline tests: config files written by the test itself."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Writes dedented TOML text to a fresh file under tmp_path and returns its path."""
    count = iter(range(1_000_000))

    def write(text: str) -> Path:
        path = tmp_path / f"cfg{next(count)}.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


FULL_STAGES = ["data", "model", "train", "distill", "prune", "evaluate", "export", "report"]
FULL_OVERRIDES = [
    "model.name=mlp", "model.widths=[32]", "train.epochs=1", "train.learning_rate=0.01",
    "distill.widths=[8]", "distill.epochs=1", "distill.learning_rate=0.03",
    "distill.temperature=2.0", "prune.sparsity=0.5", "prune.epochs_per_round=0",
    "export.file=m.jzx", f"experiment.stages={FULL_STAGES}".replace("'", '"'),
]  # fmt: skip


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """One real run of every kind of stage on a tiny MLP (digits, 1 epoch each): (out, cfg, results).

    Tests that rerun it copy ``out`` first, so it stays as the first run left it.
    """
    from jaxzip.pipeline import apply_overrides, load_config, run_experiment

    cfg = apply_overrides(load_config(), FULL_OVERRIDES)
    out = tmp_path_factory.mktemp("full") / "run"
    results = run_experiment(cfg, out, progress=False, report=False)
    return out, cfg, results
