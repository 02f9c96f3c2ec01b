"""RoundSaver: a stage's finished rounds, saved and restored; damaged files are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxzip._errors import CheckpointError
from jaxzip.pipeline._rounds import ROUNDS_FILE, Rounds, RoundSaver

LIKE = {"params": {"w": np.zeros((2, 3), np.float32)}, "mask": {"w": np.ones((2, 3), bool)}}


def _rounds(done=2):
    trees = {
        "params": {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3)},
        "mask": {"w": np.eye(2, 3, dtype=bool)},
    }
    return Rounds(done, trees, [{"round": r + 1} for r in range(done)], {"rounds": 3})


def test_round_trip_keeps_one_trees_file(tmp_path):
    saver = RoundSaver(tmp_path, total=3)
    assert saver.restore(LIKE) is None
    saver.save(_rounds(1))
    saver.save(_rounds(2))
    got = saver.restore(LIKE)
    assert got.done == 2 and got.records == [{"round": 1}, {"round": 2}]
    assert got.metrics == {"rounds": 3}
    np.testing.assert_array_equal(got.trees["params"]["w"], _rounds().trees["params"]["w"])
    assert got.trees["mask"]["w"].dtype == bool
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-2.npz", ROUNDS_FILE]
    assert RoundSaver(None, total=3).restore(LIKE) is None  # no scratch: nothing kept
    RoundSaver(None, total=3).save(_rounds(1))


@pytest.mark.parametrize(
    "damage",
    [
        lambda m: {**m, "total": 4},  # another stage's rounds
        lambda m: {**m, "done": 0},
        lambda m: {**m, "records": m["records"][:1]},
        lambda m: {**m, "trees": "../outside.npz"},  # a name that leaves the directory
        lambda m: {**m, "trees": "missing.npz"},
        lambda m: [m],
    ],
)
def test_damaged_or_foreign_files_are_a_checkpoint_error(tmp_path, damage):
    saver = RoundSaver(tmp_path, total=3)
    saver.save(_rounds(2))
    meta = json.loads((tmp_path / ROUNDS_FILE).read_text())
    (tmp_path / ROUNDS_FILE).write_text(json.dumps(damage(meta)))
    with pytest.raises(CheckpointError, match=r"round checkpoint .*rounds\.json.*delete it"):
        saver.restore(LIKE)


def test_trees_of_other_shapes_are_refused(tmp_path):
    saver = RoundSaver(tmp_path, total=3)
    saver.save(_rounds(2))
    other = {**LIKE, "params": {"w": np.zeros((3, 3), np.float32)}}
    with pytest.raises(CheckpointError, match="round checkpoint"):
        saver.restore(other)
