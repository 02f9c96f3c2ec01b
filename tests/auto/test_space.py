"""Tests of jaxzip/auto/_space.py."""

from __future__ import annotations

import pytest

from jaxzip.auto import SearchSpace, pareto_front


def test_space_sorted_and_validated():
    s = SearchSpace(sparsities=(0.9, 0.0, 0.5), bits=(2, 8, 4))
    assert s.sparsities == (0.0, 0.5, 0.9) and s.bits == (8, 4, 2)
    assert s.probes == (0.5, 0.9)
    assert SearchSpace(probe_sparsities=(0.3,)).probes == (0.3,)
    assert hash(s) == hash(SearchSpace(sparsities=(0.0, 0.5, 0.9), bits=(8, 4, 2)))
    for bad in (
        {"sparsities": (1.0,)},
        {"sparsities": ()},
        {"sparsities": (0.5, 0.5)},
        {"bits": (0,)},
        {"bits": (4.0,)},
        {"kmeans_iters": -1},
        {"refine": 1},
    ):
        with pytest.raises(ValueError, match="SearchSpace"):
            SearchSpace(**bad)


def test_pareto_front_hand_worked():
    ts = [
        {"bytes": 10, "accuracy": 0.5},
        {"bytes": 12, "accuracy": 0.4},
        {"bytes": 15, "accuracy": 0.9},
        {"bytes": 15, "accuracy": 0.8},
        {"bytes": 20, "accuracy": 0.9},
    ]
    assert [(t["bytes"], t["accuracy"]) for t in pareto_front(ts)] == [(10, 0.5), (15, 0.9)]
    assert pareto_front([]) == ()


@pytest.mark.parametrize("bad", [(), (2, 4), (1, 1), (1, 0), (4, 1), "1", (1, 2.0), (True,)])
def test_finetune_rounds_checked(bad):
    with pytest.raises(ValueError, match=r"SearchSpace\.finetune_rounds"):
        SearchSpace(finetune_rounds=bad)


def test_wider_default_space():
    s = SearchSpace()
    assert s.sparsities[-2:] == (0.99, 0.995) and s.bits[-2:] == (2, 1)  # 1 bit: ternary
    assert s.finetune_rounds == (1, 2, 4, 8) and s.to_dict()["finetune_rounds"] == [1, 2, 4, 8]
