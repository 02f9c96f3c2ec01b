"""Tests of jaxzip/auto/_drops.py and the confirmation's ``confidence`` (issue 18: the
honest bound, with the paired standard error of a drop on the same examples)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxzip.auto import discordant, drop_se, paired_drop_se, search
from jaxzip.auto._confirm import confirm
from tests.auto.test_confirm import KERNELS, SPACE, _FakeTrials, _ranked


def test_paired_se_is_the_standard_error_of_the_per_example_differences():
    rng = np.random.default_rng(0)
    for n, flip in ((50, 0.3), (1000, 0.02), (6000, 0.005)):
        base = rng.random(n) < 0.9
        cand = np.where(rng.random(n) < flip, ~base, base)
        b, c = discordant(base, cand)
        assert (b, c) == (int(np.sum(base & ~cand)), int(np.sum(~base & cand)))
        d = base.astype(float) - cand.astype(float)
        assert d.mean() == pytest.approx((b - c) / n)
        want = np.std(d, ddof=1) / np.sqrt(n)
        assert paired_drop_se(b, c, n) == pytest.approx(want, rel=1e-12)
        # far below the unpaired estimate when the two models mostly agree
        assert paired_drop_se(b, c, n) < drop_se(base.mean(), cand.mean(), n)
    assert paired_drop_se(0, 0, 10) == 0.0  # identical predictions: no uncertainty
    with pytest.raises(ValueError, match="paired_drop_se: expected 0 <= b"):
        paired_drop_se(6, 5, 10)
    with pytest.raises(ValueError, match="discordant: expected two per-example"):
        discordant([True, False], [True])


def test_confidence_zero_is_the_plain_rule_and_z_adds_standard_errors():
    # confirmation baseline 0.96, bound 0.02: the plain rule needs >= 0.94
    pair = {"accuracy": 0.945, "discordant": [20, 5]}  # drop 0.015 on 1,000 examples
    se = paired_drop_se(20, 5, 1000)  # 0.00498
    for z, passed in ((0.0, True), (1.0, True), (1.645, False)):
        fake = _FakeTrials({"A": pair, "B": 0.96})
        rows = (("A", 1, 0.95), ("B", 2, 0.99))
        chosen, c = confirm(
            fake, _ranked(*rows), max_confirmations=1, confirm_n=1000, val_n=None, confidence=z
        )
        a = c["attempts"][0]
        assert a["passed"] is passed and (0.015 + z * se <= 0.02) is passed
        assert a["paired_se"] == pytest.approx(se) and a["discordant"] == [20, 5]
        assert a["drop_se"] == pytest.approx(drop_se(0.96, 0.945, 1000))  # still reported
        assert c["confidence"] == z and (chosen is not None) is passed
    # without the per-example correctness, the unpaired standard error (0.0095) is used
    fake = _FakeTrials({"A": 0.945, "B": 0.96})
    _, c = confirm(
        fake,
        _ranked(("A", 1, 0.95), ("B", 2, 0.99)),
        max_confirmations=2,
        confirm_n=1000,
        val_n=None,
        confidence=1.0,
    )
    assert [a["passed"] for a in c["attempts"]] == [False, True] and fake.asked == ["A", "B"]
    assert "paired_se" not in c["attempts"][0]


class VectorConfirm:
    """A confirm_fn giving each of 200 examples' correctness: the baseline (the search's own
    params object) gets 190 right; each candidate, in turn, the scripted number of those
    wrong and of the baseline's misses right."""

    def __init__(self, base, script=(), *, default=(0, 0)):
        self.base, self.script, self.default, self.calls = base, list(script), default, 0

    def __call__(self, params):
        self.calls += 1
        hits = np.arange(200) < 190
        if params is self.base:
            return hits
        lost, won = self.script.pop(0) if self.script else self.default
        hits = hits.copy()
        hits[:lost] = False
        hits[190 : 190 + won] = True
        return hits


def _run(mlp, ev, out, confirm_fn, **kw):
    kw = {"max_drop": 0.3, "where": KERNELS, "key": jax.random.key(0), "space": SPACE, **kw}
    return search(mlp, eval_fn=ev, out_dir=out, confirm_fn=confirm_fn, confirm_n=200, **kw)


def test_search_with_per_example_confirmation(mlp, make_eval, tmp_path):
    # max_drop 0.3 (30 points): the first candidate loses 50 examples and wins 0 (drop 0.25,
    # paired se 0.0307): within the bound, but not with 2 standard errors (0.311)
    r = _run(mlp, make_eval(), tmp_path / "a", VectorConfirm(mlp, [(50, 0)]), confidence=2.0)
    first, second = r.confirmation["attempts"]
    assert first["discordant"] == [50, 0] and first["drop"] == pytest.approx(0.25)
    assert first["paired_se"] == pytest.approx(paired_drop_se(50, 0, 200))
    assert not first["passed"] and second["passed"] and r.best["key"] == second["key"]
    assert r.confirmation["confidence"] == 2.0
    # the same trials with confidence 0: the first passes; nothing is measured again but the
    # baseline's per-example correctness (a journal keeps its accuracy only), then no more
    again = VectorConfirm(mlp)
    r0 = _run(mlp, make_eval(), tmp_path / "a", again)
    assert r0.best["key"] == first["key"] and r0.confirmation["attempts"][0]["passed"]
    assert again.calls == 0  # the first candidate's confirmation was journaled
    # resumed after a kill before the second confirmation: the baseline is measured again
    # (its correctness is not journaled), then only the unfinished confirmation
    full = _run(mlp, make_eval(), tmp_path / "b", VectorConfirm(mlp, [(50, 0)]), confidence=2.0)
    killer = VectorConfirm(mlp, [(50, 0)])
    real = killer.__call__

    def kill_on_second_candidate(params):
        if killer.calls == 2 and params is not mlp:
            raise KeyboardInterrupt("simulated kill")
        return real(params)

    with pytest.raises(KeyboardInterrupt):
        _run(mlp, make_eval(), tmp_path / "c", kill_on_second_candidate, confidence=2.0)
    resumed_fn = VectorConfirm(mlp)
    resumed = _run(mlp, make_eval(), tmp_path / "c", resumed_fn, confidence=2.0)
    assert resumed.confirmation["attempts"] == full.confirmation["attempts"]
    assert resumed_fn.calls == 2  # the second candidate, and the baseline for its pairs


def test_bad_confidence_and_per_example_input(mlp, make_eval, tmp_path):
    kw = {"max_drop": 0.3, "where": KERNELS, "key": jax.random.key(0), "space": SPACE}
    for bad in (-1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="confidence: expected"):
            search(mlp, eval_fn=make_eval(), confidence=bad, **kw)
    wrong_length = VectorConfirm(mlp)
    with pytest.raises(ValueError, match=r"confirm_fn \(on the input params\): expected an acc"):
        search(mlp, eval_fn=make_eval(), confirm_fn=wrong_length, confirm_n=150, **kw)

    def ints(params):
        return np.ones(200, np.int32)

    with pytest.raises(ValueError, match=r"1-D bool array of each of the 200 examples"):
        search(mlp, eval_fn=make_eval(), confirm_fn=ints, confirm_n=200, **kw)
    with pytest.raises(ValueError, match="gave each example's correctness, but an accuracy"):
        mixed = VectorConfirm(mlp)
        _run(mlp, make_eval(), tmp_path, lambda p: 0.95 if p is mlp else mixed(p))


class PerExampleEval:
    """The conftest's eval on 256 fixed inputs, as each example's correctness (the labels are
    the dense model's argmax with 20 flipped, so the baseline gets 236 right)."""

    def __init__(self, base):
        self.inner = base
        self.labels = base.labels.copy()
        self.labels[:20] = (self.labels[:20] + 1) % 6
        self.calls = 0

    def __call__(self, params):
        from tests.auto.conftest import _forward

        self.calls += 1
        return _forward(params, self.inner.x).argmax(-1) == self.labels


def test_ranking_with_per_example_results_and_a_confidence(mlp, make_eval, tmp_path):
    kw = {"max_drop": 0.1, "where": KERNELS, "key": jax.random.key(0), "space": SPACE}
    plain = search(mlp, eval_fn=PerExampleEval(make_eval()), out_dir=tmp_path / "a", **kw)
    base = PerExampleEval(make_eval())(mlp)
    assert plain.baseline == pytest.approx(base.mean()) and base.sum() == 236
    for t in plain.trials:  # every candidate keeps its discordant pairs against the baseline
        b, c = t["discordant"]
        assert t["eval_n"] == 256 and t["accuracy"] == pytest.approx(plain.baseline - (b - c) / 256)
        assert t["feasible"] == (t["accuracy"] >= plain.baseline - 0.1)
    # confidence 2: feasible only with two paired standard errors within the bound
    ev = PerExampleEval(make_eval())
    z = search(mlp, eval_fn=ev, out_dir=tmp_path / "b", confidence=2.0, **kw)
    for t in z.trials:
        se = paired_drop_se(*t["discordant"], 256)
        assert t["feasible"] == (t["accuracy"] >= z.baseline - 0.1 + 2.0 * se)
    near = [t for t in plain.trials if t["feasible"]]
    margin = [
        t
        for t in near
        if t["accuracy"] < plain.baseline - 0.1 + 2 * paired_drop_se(*t["discordant"], 256)
    ]
    assert margin, "the test needs a candidate feasible without the margin and not with it"
    assert z.best["bytes"] >= plain.best["bytes"]  # no smaller file under a stricter rule
    # a rerun replays every trial: not even the baseline's per-example results are needed
    again = PerExampleEval(make_eval())
    r = search(mlp, eval_fn=again, out_dir=tmp_path / "b", confidence=2.0, **kw)
    assert again.calls == 0 and r.best == z.best
    # a rerun into the journal with another confidence re-decides from the journaled pairs
    r0 = search(mlp, eval_fn=PerExampleEval(make_eval()), out_dir=tmp_path / "b", **kw)
    for t in r0.trials:
        assert t["feasible"] == (t["accuracy"] >= r0.baseline - 0.1)


def test_per_example_eval_input_is_checked(mlp, make_eval):
    kw = {"max_drop": 0.1, "where": KERNELS, "key": jax.random.key(0), "space": SPACE}
    ev = PerExampleEval(make_eval())
    with pytest.raises(
        ValueError,
        match=r"eval_fn \(on the input params\): expected an accuracy or a 1-D bool array of each of the 100",
    ):
        search(mlp, eval_fn=ev, val_n=100, **kw)
    with pytest.raises(
        ValueError,
        match=r"eval_fn \(on candidate .*\): gave each example's correctness, but an accuracy",
    ):
        search(mlp, eval_fn=lambda p: 0.9 if p is mlp else ev(p), **kw)
