"""jaxzip run's train stage, killed mid-training and rerun: it resumes where it stood."""

from __future__ import annotations

import json

import numpy as np
import pytest

import jaxzip.train._fit as fit_module
from jaxzip.config import apply_overrides, load_config
from jaxzip.pipeline import PARAMS_FILE, run_experiment
from jaxzip.pipeline import _core_stages as core_stages

SETS = ["model.name=mlp", "model.widths=[16]", "train.epochs=2", "train.batch_size=64"]


class Killed(Exception):
    """Stands for the process dying."""


def _params(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _history(results):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in results["history"]]


@pytest.mark.parametrize(
    ("extra", "stage"),
    [([], "train"), (["distill.epochs=2", "distill.widths=[8]"], "distill")],
)
def test_a_training_killed_mid_run_resumes_and_ends_as_if_never_stopped(
    tmp_path, monkeypatch, extra, stage
):
    cfg = apply_overrides(load_config(), [*SETS, *extra])
    whole = run_experiment(cfg, tmp_path / "whole", progress=False, report=False)
    monkeypatch.setattr(core_stages, "CHECKPOINT_EVERY_S", 0.0)  # save after every step
    real = fit_module.epoch_batches
    calls = []

    def dies_mid_epoch(*args, **kwargs):  # train's epochs are calls 1, 2; distill's 3, 4
        calls.append(1)
        for i, batch in enumerate(real(*args, **kwargs)):
            if len(calls) == (2 if stage == "train" else 3) and i == 1:
                raise Killed  # the second epoch of train, the first of distill, one step in
            yield batch

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(fit_module, "epoch_batches", dies_mid_epoch)
        with pytest.raises(Killed):
            run_experiment(cfg, out, progress=False, report=False)
    saved = list((out / "stages").glob(f"*-{stage}-*/partial/{stage}/loop.json"))
    assert len(saved) == 1  # the training's progress, in the stage's cache entry
    point = json.loads(saved[0].read_text())
    assert (point["epoch"], point["batch"]) == ((1, 1) if stage == "train" else (0, 1))
    again = run_experiment(cfg, out, progress=False, report=False)
    assert stage not in again["cached"]  # it ran, from the checkpoint
    assert _history(again) == _history(whole)
    if stage == "distill":
        assert "train" in again["cached"]
        assert _history(again["distill"]) == _history(whole["distill"])
    a, b = _params(out / PARAMS_FILE), _params(tmp_path / "whole" / PARAMS_FILE)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not list((out / "stages").glob("*/partial"))  # stored: the checkpoint is gone


@pytest.mark.parametrize("planted", ["file", "link"])
def test_a_planted_file_or_link_at_the_stage_entry_is_replaced_not_followed(
    tmp_path, monkeypatch, planted
):
    cfg = apply_overrides(load_config(), SETS)
    out = tmp_path / "run"
    first = run_experiment(cfg, out, progress=False, report=False)
    (entry,) = (out / "stages").glob("*-train-*")
    for f in sorted(entry.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    entry.rmdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    if planted == "file":
        entry.write_text("not a directory")
    else:
        entry.symlink_to(outside, target_is_directory=True)
    monkeypatch.setattr(core_stages, "CHECKPOINT_EVERY_S", 0.0)  # write through it at once
    again = run_experiment(cfg, out, progress=False, report=False)
    assert "train" not in again["cached"] and _history(again) == _history(first)
    assert entry.is_dir() and not entry.is_symlink() and not list(outside.iterdir())
