"""Tests of jaxzip/auto/_polish.py: spending a budget (issue 18, item 1)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxzip.auto import SearchSpace, search
from jaxzip.auto._build import Build, build_candidate
from jaxzip.auto._common import est_bytes
from jaxzip.auto._polish import neighbours

SPACE = SearchSpace(
    sparsities=(0.0, 0.5, 0.8, 0.9), bits=(4, 2), kmeans_iters=5, finetune_rounds=(1, 2)
)
KERNELS = r".*/kernel"


def _strip(ts):
    return [{k: v for k, v in t.items() if k not in ("seconds", "elapsed_s")} for t in ts]


def _run(mlp, ev, out, finetune, **kw):
    kw = {"max_drop": 0.1, "where": KERNELS, "key": jax.random.key(0), "space": SPACE, **kw}
    return search(mlp, eval_fn=ev, out_dir=out, finetune_fn=finetune, **kw)


def test_neighbours_singles_then_trades_all_smaller():
    space = SearchSpace(sparsities=(0.0, 0.5, 0.9), bits=(8, 4))
    sizes = {"a": 10_000, "b": 100}
    sp, bt = {"a": 0.5, "b": 0.5}, {"a": 8, "b": 4}
    moves = neighbours(sp, bt, space, sizes)
    est = lambda m: sum(est_bytes(sizes[p], m[0][p], m[1][p]) for p in sizes)  # noqa: E731
    assert all(est(m) < est((sp, bt)) for m in moves) and len(moves) == len(set(map(str, moves)))
    singles = [({"a": 0.9, "b": 0.5}, bt), (sp, {"a": 4, "b": 4}), ({"a": 0.5, "b": 0.9}, bt)]
    assert sorted(map(str, moves[:3])) == sorted(map(str, singles))  # b's bits are at the floor
    # a trade: the big layer further, the small one milder
    assert ({"a": 0.9, "b": 0.0}, bt) in moves[3:] and (sp, {"a": 4, "b": 4}) not in moves[3:]


def _half_pruned_int4(mlp, finetune_fn, key, *, rounds):
    """``Dense_0`` at 50% sparsity and 4 bits, fine-tuned by ``finetune_fn``."""
    return build_candidate(
        mlp,
        {"Dense_0/kernel": 0.5},
        {"Dense_0/kernel": 4},
        build=Build(finetune_fn=finetune_fn, iters=2),
        key=key,
        rounds=rounds,
    )


def test_rounds_apply_finetune_in_sequence_with_their_own_keys(mlp):
    seen = []

    def ft(params, mask, *, key):
        seen.append(np.asarray(jax.random.key_data(key)).tolist())
        return params

    key = jax.random.key(3)
    _half_pruned_int4(mlp, ft, key, rounds=3)
    assert len(seen) == 3 and seen[0] == np.asarray(jax.random.key_data(key)).tolist()
    assert len({str(s) for s in seen}) == 3


def test_a_finetune_taking_rounds_is_called_once_with_them(mlp):
    seen = []

    def ft(params, mask, *, key, rounds=1):
        seen.append(rounds)
        return params

    for rounds in (1, 4):
        _half_pruned_int4(mlp, ft, jax.random.key(3), rounds=rounds)
    assert seen == [1, 4]


def test_budget_is_spent_until_no_neighbour_helps(mlp, make_eval, finetune, tmp_path):
    plain = _run(mlp, make_eval(), tmp_path / "plain", finetune)
    assert plain.stopped == "done"
    r = _run(mlp, make_eval(), tmp_path / "budget", finetune, time_budget_s=600)
    assert r.stopped == "exhausted" and r.feasible
    assert r.best["bytes"] <= plain.best["bytes"] and len(r.trials) > len(plain.trials)
    # the evidence: every neighbour of the best, at every length from its own up, was tried
    by_settings = {(str(t["sparsity"]), str(t["bits"]), t.get("rounds", 1)): t for t in r.trials}
    sizes = {"Dense_0/kernel": 32 * 24, "Dense_1/kernel": 24 * 6}
    moves = neighbours(r.best["sparsity"], r.best["bits"], SPACE, sizes)
    assert moves
    for rounds in (x for x in SPACE.finetune_rounds if x >= r.best.get("rounds", 1)):
        for sp, bt in moves:
            t = by_settings[(str(sp), str(bt), rounds)]
            assert not (t["feasible"] and t["bytes"] < r.best["bytes"])
    # best ratio against time: improving, in time order, ending at the best
    tl = r.timeline
    assert [t["ratio"] for t in tl] == sorted(t["ratio"] for t in tl)
    assert [t["elapsed_s"] for t in tl] == sorted(t["elapsed_s"] for t in tl)
    assert tl[-1]["key"] == r.best["key"]


def test_longer_finetuning_when_nothing_is_feasible(mlp, make_eval, tmp_path):
    """Candidates pass only after two rounds of fine-tuning: the budget finds them."""
    real = make_eval()
    calls = {"n": 0}

    def ev(params):  # the baseline (call 1) scores as it is; others need two rounds' marker
        calls["n"] += 1
        marked = float(np.mean(np.asarray(params["Dense_1"]["bias"]))) >= 1.5
        return real(params) - (0.0 if calls["n"] == 1 or marked else 0.5)

    def ft(params, mask, *, key):  # one round: +1 on every output bias (argmax unchanged)
        out = jax.tree.map(lambda p, m: np.where(m, p, 0.0), params, mask)
        out["Dense_1"]["bias"] = np.asarray(out["Dense_1"]["bias"]) + 1.0
        return out

    space = SearchSpace(
        sparsities=(0.0, 0.5, 0.8, 0.9), bits=(4,), kmeans_iters=5, finetune_rounds=(1, 2)
    )
    plain = _run(mlp, ev, tmp_path / "plain", ft, space=space, max_drop=0.3)
    assert not plain.feasible and all(t.get("rounds", 1) == 1 for t in plain.trials)
    calls["n"] = 0
    r = _run(mlp, ev, tmp_path / "budget", ft, space=space, max_drop=0.3, max_trials=200)
    assert r.feasible and r.best["rounds"] == 2 and r.stopped == "exhausted"
    assert r.best["bytes"] < max(t["bytes"] for t in r.trials if t.get("rounds") == 2)


def test_resume_mid_polish_repeats_nothing(mlp, make_eval, finetune, tmp_path):
    full_ev = make_eval()
    full = _run(mlp, full_ev, tmp_path / "full", finetune, max_trials=500)
    assert full.stopped == "exhausted"
    killer = make_eval(fail_at=full_ev.calls - 3)  # inside the refinement
    with pytest.raises(KeyboardInterrupt):
        _run(mlp, killer, tmp_path / "b", finetune, max_trials=500)
    ev = make_eval()
    resumed = _run(mlp, ev, tmp_path / "b", finetune, max_trials=500)
    assert killer.calls - 1 + ev.calls == full_ev.calls  # nothing evaluated twice
    assert _strip([resumed.best, *resumed.trials]) == _strip([full.best, *full.trials])


def test_with_a_budget_the_ladder_is_bisected_again_at_the_longest_finetuning(
    mlp, make_eval, tmp_path
):
    """Aggressive rungs pass only after four rounds: the second bisection finds them first."""
    real = make_eval()

    def ev(params):  # kernels pruned past half lose 0.5 unless four rounds left their marker
        marked = float(np.mean(np.asarray(params["Dense_1"]["bias"]))) >= 3.5
        aggressive = np.mean(np.asarray(params["Dense_0"]["kernel"]) == 0) > 0.6
        return real(params) - (0.5 if aggressive and not marked else 0.0)

    def ft(params, mask, *, key):  # one round: +1 on every output bias (argmax unchanged)
        out = jax.tree.map(lambda p, m: np.where(m, p, 0.0), params, mask)
        out["Dense_1"]["bias"] = np.asarray(out["Dense_1"]["bias"]) + 1.0
        return out

    space = SearchSpace(
        sparsities=(0.0, 0.5, 0.8, 0.9), bits=(4,), kmeans_iters=5, finetune_rounds=(1, 2, 4)
    )
    plain = _run(mlp, ev, tmp_path / "plain", ft, space=space, max_drop=0.45)
    assert plain.feasible and plain.best["sparsity"]["Dense_0/kernel"] <= 0.5
    r = _run(mlp, ev, tmp_path / "budget", ft, space=space, max_drop=0.45, max_trials=200)
    rounds = [t.get("rounds", 1) for t in r.trials]
    first = rounds.index(4)
    assert 2 not in rounds[:first]  # straight to the longest length, not one notch at a time
    assert r.trials[first]["sparsity"]["Dense_0/kernel"] > 0.5  # a rung past the one-round one
    assert r.feasible and r.best["rounds"] == 4 and r.best["bytes"] < plain.best["bytes"]


def test_lengths_that_would_not_end_in_time_are_left_out(
    mlp, make_eval, finetune, tmp_path, monkeypatch
):
    from jaxzip.auto._trials import Trials

    monkeypatch.setattr(Trials, "fits", lambda self, rounds, count=1: rounds == 1)
    r = _run(mlp, make_eval(), tmp_path, finetune, max_trials=500)
    assert all(t.get("rounds", 1) == 1 for t in r.trials)  # no longer trial was started
    assert r.stopped == "time_budget"  # not "exhausted": the longer lengths were never tried
