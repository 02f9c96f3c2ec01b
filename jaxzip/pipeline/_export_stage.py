"""The ``export`` stage: the final model as one :mod:`jaxzip.deploy` file in the output directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxzip import deploy as jz_deploy
from jaxzip.config import ExperimentConfig
from jaxzip.pipeline._state import RunState

__all__ = ["export_files", "export_stage"]

_CHECK_EXAMPLES = 8


def export_files(cfg: ExperimentConfig) -> tuple[str, ...]:
    """The files the export stage writes to the output directory (none without ``[export]``)."""
    return () if cfg.export is None else (cfg.export.file,)


def export_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: writes ``out_dir/<export.file>`` with :func:`jaxzip.deploy.export` and checks it.

    The weights are ``books`` (from ``[kmeans]``) if the run state has them, else
    ``params``; the input is one training example with a batch dimension (any
    batch size with ``export.polymorphic_batch``). The file is loaded back with
    :func:`jaxzip.deploy.load_exported` and run on a few validation examples;
    its largest absolute difference from the model's logits is reported.

    Raises:
      ValueError: the config has no ``[export]`` section.
    """
    e, splits = cfg.export, state.splits
    if e is None:
        raise ValueError("export_stage: the config has no [export] section")
    path = Path(state.out_dir) / e.file
    apply_fn, params = state.apply_fn, state.params
    info = jz_deploy.export(
        apply_fn,
        params if state.books is None else state.books,
        splits.train.x[:1],
        path,
        polymorphic_batch=e.polymorphic_batch,
    )
    x = splits.val.x[: _CHECK_EXAMPLES if e.polymorphic_batch else 1]
    got = np.asarray(jz_deploy.load_exported(path)(x))
    want = np.asarray(apply_fn(params, x, train=False, key=None))
    diff = float(np.max(np.abs(got - want)))
    metrics = {"export_bytes": path.stat().st_size, "export_max_abs_diff": diff}
    report = {
        "file": e.file,
        "input_shape": list(info.input_shape),
        "output_shape": list(info.output_shape),
        **metrics,
    }
    return {"reports": {"export": report}}, metrics
