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


def _killed_at(cfg, out, monkeypatch, call: int) -> None:
    """Runs ``cfg`` into ``out`` and dies one step into the ``call``-th epoch of any training
    (each epoch of each loop draws its batches once), checkpoints saved after every step."""
    monkeypatch.setattr(core_stages, "CHECKPOINT_EVERY_S", 0.0)
    real, calls = fit_module.epoch_batches, []

    def dies(*args, **kwargs):
        calls.append(1)
        for i, batch in enumerate(real(*args, **kwargs)):
            if len(calls) == call and i == 1:
                raise Killed
            yield batch

    with monkeypatch.context() as m:
        m.setattr(fit_module, "epoch_batches", dies)
        with pytest.raises(Killed):
            run_experiment(cfg, out, progress=False, report=False)


@pytest.mark.parametrize(
    ("extra", "stage"),
    [([], "train"), (["distill.epochs=2", "distill.widths=[8]"], "distill")],
)
def test_a_training_killed_mid_run_resumes_and_ends_as_if_never_stopped(
    tmp_path, monkeypatch, extra, stage
):
    cfg = apply_overrides(load_config(), [*SETS, *extra])
    whole = run_experiment(cfg, tmp_path / "whole", progress=False, report=False)
    out = tmp_path / "run"
    # train's epochs are calls 1, 2; distill's 3, 4: the second of train, the first of distill
    _killed_at(cfg, out, monkeypatch, 2 if stage == "train" else 3)
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


def test_a_prune_stage_killed_in_its_third_round_resumes_after_the_second(tmp_path, monkeypatch):
    """Rounds 1 and 2 are kept whole (params, mask, records); round 3's retraining resumes from
    its checkpoint; the rerun ends with the params and round records of a run never stopped."""
    sets = [*SETS, "prune.rounds=3", "prune.sparsity=0.6", "prune.epochs_per_round=2"]
    cfg = apply_overrides(load_config(), sets)
    whole = run_experiment(cfg, tmp_path / "whole", progress=False, report=False)
    out = tmp_path / "run"
    _killed_at(cfg, out, monkeypatch, 8)  # train: calls 1-2; rounds: 3-4, 5-6, 7-8 (its 2nd)
    (partial,) = (out / "stages").glob("*-prune-*/partial")
    assert json.loads((partial / "rounds" / "rounds.json").read_text())["done"] == 2
    assert json.loads((partial / "round3" / "loop.json").read_text())["epoch"] == 1
    again = run_experiment(cfg, out, progress=False, report=False)
    assert "train" in again["cached"] and "prune" not in again["cached"]
    a, b = _params(out / PARAMS_FILE), _params(tmp_path / "whole" / PARAMS_FILE)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for key in ("round1_sparsity", "round2_sparsity", "round3_sparsity", "round3_val_accuracy"):
        assert again["metrics"][key] == whole["metrics"][key], key
    assert not list((out / "stages").glob("*/partial"))


def test_a_kmeans_fine_tuning_killed_mid_run_resumes(tmp_path, monkeypatch):
    cfg = apply_overrides(load_config(), [*SETS, "kmeans.finetune_epochs=2", "kmeans.dense_bits=3"])
    whole = run_experiment(cfg, tmp_path / "whole", progress=False, report=False)
    out = tmp_path / "run"
    _killed_at(cfg, out, monkeypatch, 4)  # train: calls 1-2; the fine-tuning: 3-4 (its 2nd)
    (saved,) = (out / "stages").glob("*-kmeans-*/partial/kmeans/loop.json")
    assert (json.loads(saved.read_text())["epoch"], json.loads(saved.read_text())["batch"]) == (
        1,
        1,
    )
    again = run_experiment(cfg, out, progress=False, report=False)
    assert "train" in again["cached"] and "kmeans" not in again["cached"]
    a, b = _params(out / PARAMS_FILE), _params(tmp_path / "whole" / PARAMS_FILE)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (out / "model.jz").read_bytes() == (tmp_path / "whole" / "model.jz").read_bytes()
    assert whole["metrics"]["test_accuracy"] == again["metrics"]["test_accuracy"]
