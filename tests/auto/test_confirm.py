"""Tests of jaxzip/auto/_confirm.py: the confirmation split (issue 18, the honest bound)."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

from jaxzip.auto import BudgetTooSmall, SearchSpace, drop_se, min_confirm_size, search
from jaxzip.auto._confirm import check_confirm_size

SPACE = SearchSpace(sparsities=(0.0, 0.5, 0.8, 0.9), bits=(4, 2), kmeans_iters=5)
# (at max_drop 0.3 the greedy search on the conftest MLP measures 10 candidates, 6 feasible)
KERNELS = r".*/kernel"


class ScriptedConfirm:
    """A confirm_fn: 1.0 for the baseline (call 1), then the scripted scores in turn."""

    def __init__(self, scores=(), *, default=1.0, kill_at=None):
        self.scores, self.default, self.kill_at, self.calls = list(scores), default, kill_at, 0

    def __call__(self, params):
        self.calls += 1
        if self.kill_at is not None and self.calls == self.kill_at:
            raise KeyboardInterrupt("simulated kill")
        if self.calls == 1:
            return 1.0
        i = self.calls - 2
        return self.scores[i] if i < len(self.scores) else self.default


def _second(trials, first, shortfall):
    """The attempt after ``first`` failed by ``shortfall``: by bytes, the first candidate more
    accurate on validation by at least ``shortfall``, else the first more accurate at all."""
    ranked = sorted(
        (t for t in trials if t["feasible"]), key=lambda t: (t["bytes"], -t["accuracy"], t["index"])
    )
    i = [t["key"] for t in ranked].index(first)
    safer = [t for t in ranked[i + 1 :] if t["accuracy"] > ranked[i]["accuracy"]]
    clear = [t for t in safer if t["accuracy"] >= ranked[i]["accuracy"] + shortfall - 1e-12]
    return (clear or safer)[0]["key"]


def _run(mlp, ev, out, confirm_fn, **kw):
    kw = {
        "max_drop": 0.3,
        "where": KERNELS,
        "key": jax.random.key(0),
        "space": SPACE,
        "confirm_n": 100,
        "val_n": 256,
        **kw,
    }
    return search(mlp, eval_fn=ev, out_dir=out, confirm_fn=confirm_fn, **kw)


def test_drop_se_hand_worked():
    # sqrt(.99 * .01 / 1e4 + .98 * .02 / 1e4) = sqrt(2.95e-6)
    assert drop_se(0.99, 0.98, 10_000) == pytest.approx(np.sqrt(2.95e-6), rel=1e-12)
    assert drop_se(1.0, 1.0, 10) == 0.0
    with pytest.raises(ValueError, match="n must be >= 1"):
        drop_se(0.5, 0.5, 0)


def test_min_confirm_size_is_one_error_within_the_bound():
    assert [min_confirm_size(d) for d in (0.001, 0.006, 0.05, 0.5, 0.0)] == [1000, 167, 20, 2, 1]
    for d in (0.001, 0.006, 0.0123):
        n = min_confirm_size(d)
        assert n * d >= 1 - 1e-12 and (n - 1) * d < 1  # the fewest that resolve the bound
    assert check_confirm_size(1000, 0.001) == 1000
    with pytest.raises(
        ValueError,
        match=r"confirm_n: a confirmation split of 999 examples cannot "
        r"resolve max_drop 0\.001.*at least 1000",
    ):
        check_confirm_size(999, 0.001)


def test_first_ranked_fails_confirmation_next_is_confirmed(mlp, make_eval, tmp_path):
    plain = search(
        mlp, eval_fn=make_eval(), max_drop=0.3, where=KERNELS, key=jax.random.key(0), space=SPACE
    )
    conf = ScriptedConfirm([0.5])  # the first candidate confirmed loses 0.5 > max_drop
    r = _run(mlp, make_eval(), tmp_path, conf)
    c = r.confirmation
    assert [a["passed"] for a in c["attempts"]] == [False, True] and conf.calls == 3
    first, second = c["attempts"]
    assert first["key"] == plain.best["key"]  # the validation ranking's winner was tried first
    assert r.best["key"] == second["key"] == c["confirmed"] and r.best["confirmed"] is True
    assert r.feasible and second["bytes"] >= first["bytes"]
    # the next by the ranking more accurate on validation than the failed one by the 0.2 it
    # missed the bound by (0.5 lost, bound 0.3), or else by any amount
    assert second["key"] == _second(r.trials, first["key"], 0.2)
    assert second["val_accuracy"] > first["val_accuracy"]
    skipped = [
        t
        for t in r.trials
        if t["feasible"]
        and first["bytes"] <= t["bytes"]
        and t["key"] not in (first["key"], second["key"])
        and (t["bytes"], -t["accuracy"]) < (second["bytes"], -second["accuracy"])
    ]
    assert c["skipped"] == len(skipped) and all(  # none had the margin
        t["accuracy"] < first["val_accuracy"] + 0.2 for t in skipped
    )
    assert first["drop"] == pytest.approx(0.5) and first["drop_se"] == pytest.approx(
        drop_se(1.0, 0.5, 100)
    )
    # the confirmation split only confirmed: the ranking (trials) is the run without it
    assert [t["key"] for t in r.trials] == [t["key"] for t in plain.trials]


def test_confirmations_are_journaled_and_survive_a_kill(mlp, make_eval, tmp_path):
    full = _run(mlp, make_eval(), tmp_path / "full", ScriptedConfirm([0.5]))
    assert len(full.confirmation["attempts"]) == 2
    # killed while confirming the second candidate: the rerun repeats no finished confirmation
    killer = ScriptedConfirm([0.5], kill_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(mlp, make_eval(), tmp_path / "b", killer)
    ev, again = make_eval(), ScriptedConfirm(default=1.0)
    resumed = _run(mlp, ev, tmp_path / "b", again)
    assert ev.calls == 0  # no trial repeated
    assert again.calls == 1  # only the unfinished confirmation (scored by this callable: 1.0)
    assert resumed.confirmation["attempts"] == full.confirmation["attempts"]
    assert resumed.best["key"] == full.best["key"]
    # a plain rerun replays everything
    never = ScriptedConfirm(kill_at=1)
    assert _run(mlp, make_eval(), tmp_path / "b", never).best == resumed.best


def test_nothing_confirmed_is_infeasible(mlp, make_eval, tmp_path):
    r = _run(mlp, make_eval(), tmp_path, ScriptedConfirm(default=0.0), max_confirmations=2)
    assert not r.feasible and r.best["confirmed"] is False and r.confirmation["confirmed"] is None
    assert len(r.confirmation["attempts"]) == 2
    assert all(not a["passed"] for a in r.confirmation["attempts"])


def test_bad_confirmation_input(mlp, make_eval):
    kw = {"max_drop": 0.1, "where": KERNELS, "key": jax.random.key(0), "space": SPACE}
    with pytest.raises(
        ValueError, match=r"confirm_n: a confirmation split of 9 examples.*at least 10"
    ):
        search(mlp, eval_fn=make_eval(), confirm_fn=ScriptedConfirm(), confirm_n=9, **kw)
    with pytest.raises(ValueError, match="confirm_n: expected the confirmation split's size"):
        search(mlp, eval_fn=make_eval(), confirm_fn=ScriptedConfirm(), **kw)
    with pytest.raises(ValueError, match="without a confirm_fn"):
        search(mlp, eval_fn=make_eval(), confirm_n=100, **kw)
    with pytest.raises(ValueError, match="max_confirmations"):
        search(
            mlp,
            eval_fn=make_eval(),
            confirm_fn=ScriptedConfirm(),
            confirm_n=100,
            max_confirmations=0,
            **kw,
        )


def test_budget_too_small_for_the_baseline_confirmation(mlp, make_eval, tmp_path):
    conf = ScriptedConfirm()
    with pytest.raises(
        BudgetTooSmall,
        match=r"time_budget_s: 1e-06 s was spent before the "
        r"baseline.*validation accuracy 1\.0000, no candidate",
    ):
        _run(mlp, make_eval(), tmp_path, conf, time_budget_s=1e-6)
    assert conf.calls == 0
    ev = make_eval()
    r = _run(mlp, ev, tmp_path, ScriptedConfirm())  # the rerun resumes: the baseline is journaled
    assert (
        r.feasible and ev.calls == len(r.trials) + 2 * 3 + 2 * 2
    )  # candidates, probes: no baseline


class _FakeTrials:
    """What confirm() reads of a Trials: the bound, the baselines and one confirmation per key."""

    max_drop, baseline = 0.02, 0.96

    def __init__(self, scores):
        self.scores, self.asked = scores, []

    def confirm_baseline(self):
        return 0.96

    def confirm(self, rec):
        self.asked.append(rec["key"])
        score = self.scores[rec["key"]]
        return score if isinstance(score, dict) else {"accuracy": score}


def test_after_a_failure_no_less_safe_candidate_is_confirmed():
    from jaxzip.auto._confirm import confirm

    ranked = [
        {"key": k, "bytes": b, "ratio": 100 / b, "accuracy": a}
        for k, b, a in (("A", 10, 0.95), ("B", 11, 0.94), ("C", 12, 0.95), ("D", 13, 0.97))
    ]
    fake = _FakeTrials({"A": 0.90, "B": 0.96, "C": 0.96, "D": 0.95})
    chosen, c = confirm(fake, ranked, max_confirmations=3, confirm_n=None, val_n=None)
    # A fails (0.90 < 0.96 - 0.02); B and C are no more accurate on validation than A: skipped
    assert fake.asked == ["A", "D"] and chosen["key"] == "D" and c["skipped"] == 2
    assert [a["passed"] for a in c["attempts"]] == [False, True] and c["confirmed"] == "D"
    fake = _FakeTrials({"A": 0.90, "B": 0.96, "C": 0.96, "D": 0.90})
    chosen, c = confirm(fake, ranked, max_confirmations=1, confirm_n=None, val_n=None)
    assert chosen is None and fake.asked == ["A"] and c["confirmed"] is None


def _ranked(*rows):
    return [{"key": k, "bytes": b, "ratio": 100 / b, "accuracy": a} for k, b, a in rows]


def test_after_a_failure_the_next_attempt_needs_the_margin_the_failed_one_missed_by():
    from jaxzip.auto._confirm import confirm

    rows = (("A", 1, 0.95), ("B", 2, 0.96), ("C", 3, 0.97), ("D", 4, 0.99), ("E", 5, 0.995))
    # bound 0.02 under the confirmation baseline 0.96: a pass needs >= 0.94.
    # A (0.90) misses by 0.04: the next needs validation >= 0.95 + 0.04 = 0.99, so B and C
    # are passed over for D. D (0.93) misses by 0.01: the next needs >= 1.0, which none has;
    # of those more accurate than D, the first, E, is confirmed.
    fake = _FakeTrials({"A": 0.90, "D": 0.93, "E": 0.95})
    chosen, c = confirm(fake, _ranked(*rows), max_confirmations=3, confirm_n=None, val_n=None)
    assert fake.asked == ["A", "D", "E"] and chosen["key"] == "E" and c["skipped"] == 2
    assert [a["passed"] for a in c["attempts"]] == [False, False, True]
    # with no candidate clearing the margin, the next more accurate one is confirmed
    fake = _FakeTrials({"A": 0.90, "B": 0.95})
    chosen, c = confirm(fake, _ranked(*rows[:3]), max_confirmations=3, confirm_n=None, val_n=None)
    assert fake.asked == ["A", "B"] and chosen["key"] == "B" and c["skipped"] == 0
    # a narrow miss asks little margin: A misses by 0.005, so B (0.01 more accurate) is next
    fake = _FakeTrials({"A": 0.935, "B": 0.95})
    chosen, c = confirm(fake, _ranked(*rows), max_confirmations=3, confirm_n=None, val_n=None)
    assert fake.asked == ["A", "B"] and chosen["key"] == "B"
    # every candidate fails or is no safer: all but the attempted are skipped
    fake = _FakeTrials({"A": 0.90, "D": 0.80, "E": 0.80})
    chosen, c = confirm(fake, _ranked(*rows), max_confirmations=5, confirm_n=None, val_n=None)
    assert chosen is None and fake.asked == ["A", "D", "E"] and c["skipped"] == 2


def test_a_bound_under_one_standard_error_of_the_ranking_split_is_warned(mlp, make_eval):
    from jaxzip.auto import NoisyBoundWarning

    kw = {"where": KERNELS, "key": jax.random.key(0), "space": SPACE, "max_trials": 1}
    # baseline 1.0 on 256 examples: at a bound of 0.002 a drop's SE is
    # sqrt(.998 * .002 / 256) = 0.0028
    with pytest.warns(
        NoisyBoundWarning,
        match=r"max_drop 0.002 \(0.2 points\) is under one standard error \(0.0028, 0.28 points\)",
    ):
        search(mlp, eval_fn=make_eval(), max_drop=0.002, val_n=256, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoisyBoundWarning)
        search(mlp, eval_fn=make_eval(), max_drop=0.01, val_n=256, **kw)  # SE 0.0062
        search(mlp, eval_fn=make_eval(), max_drop=0.002, **kw)  # no val_n: nothing to judge


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((float("nan"), 0.01, 100), r"check_resolution: baseline: expected a finite scalar"),
        ((0.9, -0.01, 100), r"check_resolution: max_drop: expected a finite number >= 0"),
        ((0.9, 0.01, 0), r"check_resolution: n: expected an int >= 1, got 0"),
        ((0.9, 0.01, 2.5), r"check_resolution: n: expected an int >= 1, got 2.5"),
    ],
)
def test_check_resolution_names_the_bad_argument(args, match):
    from jaxzip.auto import check_resolution

    with pytest.raises(ValueError, match=match):
        check_resolution(*args)
