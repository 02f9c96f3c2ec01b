"""Tests of jaxzip/auto/_search.py (and the trial runner in _trials.py)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jaxzip import codec, quant
from jaxzip._errors import ConfigError
from jaxzip.auto import Greedy, Journal, Optuna, SearchSpace, search

SPACE = SearchSpace(sparsities=(0.0, 0.5, 0.8, 0.9), bits=(4, 2), kmeans_iters=5)
KERNELS = r".*/kernel"


def _same(a, b):
    """Trial records equal but for their wall time."""

    def strip(ts):
        return [{k: v for k, v in t.items() if k not in ("seconds", "elapsed_s")} for t in ts]

    return strip(a) == strip(b)


def _run(mlp, ev, tmp_path, **kw):
    kw = {"max_drop": 0.1, "where": KERNELS, "key": jax.random.key(0), "space": SPACE, **kw}
    return search(mlp, eval_fn=ev, out_dir=tmp_path, **kw)


def test_greedy_finds_small_feasible_candidate(mlp, make_eval, finetune, tmp_path):
    ev = make_eval()
    r = _run(mlp, ev, tmp_path, finetune_fn=finetune, strategy=Greedy())
    assert r.feasible and r.stopped == "done" and r.strategy == "greedy"
    assert r.baseline == 1.0 and r.best["accuracy"] >= 0.9
    feasible = [t for t in r.trials if t["feasible"]]
    assert r.best["bytes"] == min(t["bytes"] for t in feasible)
    assert r.best["ratio"] == pytest.approx(r.best["dense_bytes"] / r.best["bytes"])
    assert r.best["dense_bytes"] == 4 * (32 * 24 + 24 + 24 * 6 + 6)
    # the measured bytes are the codec file's, and the decoded params give the accuracy
    assert len(codec.encode(r.books)) == r.best["bytes"]
    assert ev(r.params) == r.best["accuracy"]
    assert r.sensitivity is not None and r.sensitivity.layers == r.layers
    # best.jz / best.json hold the best candidate
    saved = json.loads((tmp_path / "best.json").read_text())
    assert saved["key"] == r.best["key"]
    back = quant.dequantize_params(codec.load(tmp_path / "best.jz"))
    jax.tree.map(np.testing.assert_array_equal, back, r.params)
    # pruned weights stay zero, at the chosen sparsity
    for path in r.layers:
        layer, leaf = path.split("/")
        k = np.asarray(r.params[layer][leaf])
        assert np.mean(k == 0) >= r.best["sparsity"][path] - 1e-6
    # pareto front: sorted by bytes, accuracy strictly increasing
    accs = [t["accuracy"] for t in r.pareto]
    assert accs == sorted(accs) and len(set(accs)) == len(accs)


def test_rerun_replays_from_journal_without_eval_calls(mlp, make_eval, tmp_path):
    first = _run(mlp, make_eval(), tmp_path)
    ev = make_eval()
    again = _run(mlp, ev, tmp_path)
    assert ev.calls == 0 and again.computed == 0
    assert again.best == first.best and again.trials == first.trials


def test_resume_after_trial_budget_and_after_kill(mlp, make_eval, tmp_path):
    full_ev = make_eval()
    full = _run(mlp, full_ev, tmp_path / "full")
    assert len(full.trials) > 3
    # 1) a trial budget stops early; rerunning without it finishes without recomputing
    ev3 = make_eval()
    part = _run(mlp, ev3, tmp_path / "a", max_trials=3)
    assert part.stopped == "max_trials" and len(part.trials) == 3
    ev_rest = make_eval()
    rest = _run(mlp, ev_rest, tmp_path / "a")
    assert ev3.calls + ev_rest.calls == full_ev.calls  # nothing evaluated twice
    assert rest.computed == len(full.trials) - 3
    assert _same([rest.best, *rest.trials], [full.best, *full.trials])
    # 2) a kill in the middle of a trial (its eval never returns): the rerun matches too
    killer = make_eval(fail_at=full_ev.calls - 2)
    with pytest.raises(KeyboardInterrupt):
        _run(mlp, killer, tmp_path / "b")
    resumed = _run(mlp, make_eval(), tmp_path / "b")
    assert _same([resumed.best, *resumed.trials], [full.best, *full.trials])


def test_infeasible_reports_most_accurate(mlp, make_eval, tmp_path):
    ev = make_eval()
    penalized = lambda p: ev(p) - 0.5  # noqa: E731 - never within max_drop... of itself?
    base = {"calls": 0}

    def eval_fn(p):
        base["calls"] += 1
        return 1.0 if base["calls"] == 1 else penalized(p)  # only the baseline scores 1.0

    r = search(
        mlp, eval_fn=eval_fn, max_drop=0.0, where=KERNELS, key=jax.random.key(0), space=SPACE
    )
    assert not r.feasible and r.best["feasible"] is False
    assert r.best["accuracy"] == max(t["accuracy"] for t in r.trials)
    assert all(not t["feasible"] for t in r.trials)


def test_time_budget_stops(mlp, make_eval, tmp_path):
    r = _run(mlp, make_eval(), tmp_path, time_budget_s=1e-6)
    assert r.stopped == "time_budget"
    assert len(r.trials) == 1  # the mildest candidate, so that a result exists


def test_a_resumed_search_keeps_the_time_budget_of_the_run_it_continues(
    mlp, make_eval, finetune, tmp_path, monkeypatch
):
    # a fake clock: every evaluation takes one second, nothing else takes any time
    clock = {"t": 0.0}
    fake = type("FakeTime", (), {})()
    fake.monotonic = fake.perf_counter = lambda: clock["t"]
    monkeypatch.setattr("jaxzip.auto._trials.time", fake)  # a candidate's seconds
    monkeypatch.setattr("jaxzip.auto._journal.time", fake)  # the search clock

    def ticking(**kw):
        ev = make_eval(**kw)

        def tick(params):
            clock["t"] += 1.0
            return ev(params)

        return tick

    kw = {"finetune_fn": finetune, "time_budget_s": 24.0}
    full = _run(mlp, ticking(), tmp_path / "full", **kw)
    assert full.stopped == "time_budget" and len(full.trials) > 5
    clock["t"] = 0.0
    with pytest.raises(KeyboardInterrupt):  # killed at the 18th evaluation
        _run(mlp, ticking(fail_at=18), tmp_path / "b", **kw)
    clock["t"] = 0.0  # a new process: its own clock starts again
    resumed = _run(mlp, ticking(), tmp_path / "b", **kw)
    # the replayed trials run on the journal's clock: the resumed run has only the 7 s or
    # so that the killed one left, and ends where the uninterrupted one did
    assert resumed.stopped == "time_budget" and _same(resumed.trials, full.trials)
    assert resumed.best["key"] == full.best["key"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_drop": -0.01}, "max_drop"),
        ({"max_drop": float("nan")}, "max_drop"),
        ({"time_budget_s": 0}, "time_budget_s"),
        ({"time_budget_s": -5.0}, "time_budget_s"),
        ({"max_trials": 0}, "max_trials"),
        ({"max_trials": 2.5}, "max_trials"),
        ({"where": "nothing"}, "where"),
    ],
)
def test_bad_input(mlp, make_eval, kw, match):
    args = {"max_drop": 0.1, "where": KERNELS, "key": jax.random.key(0), "space": SPACE, **kw}
    with pytest.raises(ValueError, match=match):
        search(mlp, eval_fn=make_eval(), **args)


def _with_strategy(mlp, make_eval, strategy):
    return search(
        mlp,
        eval_fn=make_eval(),
        max_drop=0.1,
        where=KERNELS,
        key=jax.random.key(0),
        strategy=strategy,
    )


@pytest.mark.parametrize("strategy", ["greedy", None, Optuna])
def test_strategy_must_be_an_object(mlp, make_eval, strategy):
    with pytest.raises(TypeError, match=r"strategy: expected jaxzip.auto.Greedy\(\) or"):
        _with_strategy(mlp, make_eval, strategy)


def test_eval_nan_named(mlp):
    with pytest.raises(ValueError, match=r"eval_fn.*nan"):
        search(
            mlp, eval_fn=lambda p: float("nan"), max_drop=0.1, where=KERNELS, key=jax.random.key(0)
        )


def test_journal_of_another_search_rejected(mlp, make_eval, tmp_path):
    _run(mlp, make_eval(), tmp_path, max_trials=1)
    with pytest.raises(ConfigError, match="another config"):
        _run(mlp, make_eval(), tmp_path, key=jax.random.key(1))
    j = Journal.open(tmp_path / "mine.jsonl", config={"mine": 1})
    r = _run(mlp, make_eval(), tmp_path / "other", journal=j, max_trials=1)
    assert len(j) >= 2 and r.best["key"] in j  # baseline, probes and the candidate


def test_optuna_missing_is_a_clear_import_error(mlp, make_eval, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install optuna"):
        _with_strategy(mlp, make_eval, Optuna())


def test_optuna_strategy_pareto_and_replay(mlp, make_eval, tmp_path):
    pytest.importorskip("optuna")  # the optional dependency (installed in the dev venv)
    ev = make_eval()
    r = _run(mlp, ev, tmp_path, strategy=Optuna(), max_trials=4)
    assert r.strategy == "optuna" and len(r.trials) == 4 and r.stopped == "done"
    assert r.pareto and all(t in r.trials for t in r.pareto)
    ev2 = make_eval()
    again = _run(mlp, ev2, tmp_path, strategy=Optuna(), max_trials=4)
    assert ev2.calls == 0 and _same([again.best, *again.trials], [r.best, *r.trials])


def test_ladder_prunes_big_layers_first_and_shrinks_monotonically():
    from jaxzip.auto import Sensitivity
    from jaxzip.auto._common import est_bytes as _est_bytes
    from jaxzip.auto._greedy import _ladder

    assert _est_bytes(800, 0.0, 4) == (800 * 4 + 32 * 16) / 8
    assert _est_bytes(800, 0.5, 4) == pytest.approx((800 + 400 * 4 + 32 * 16) / 8)
    space = SearchSpace(sparsities=(0.0, 0.5, 0.9), bits=(8, 4))
    # both layers lose the same accuracy when pruned alone; "big" has 100x the weights
    sens = Sensitivity(
        layers=("big", "small"),
        sparsities=(0.5, 0.9),
        bits=(8, 4),
        baseline=1.0,
        sparsity_accuracy=[[0.99, 0.9], [0.99, 0.9]],
        bits_accuracy=[[1.0, 0.995], [1.0, 0.995]],
    )
    ladder = _ladder(sens, space, {"big": 100_000, "small": 1_000})
    assert ladder[0] == ({"big": 0.0, "small": 0.0}, {"big": 8, "small": 8})
    assert ladder[-1] == ({"big": 0.9, "small": 0.9}, {"big": 4, "small": 4})
    # the big layer is always at least as aggressive as the small one
    assert all(sp["big"] >= sp["small"] for sp, _ in ladder)
    est = [
        sum(_est_bytes(n, sp[k], bt[k]) for k, n in (("big", 100_000), ("small", 1_000)))
        for sp, bt in ladder
    ]
    assert est == sorted(est, reverse=True) and len(set(map(str, ladder))) == len(ladder)
