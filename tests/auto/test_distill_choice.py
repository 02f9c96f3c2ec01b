"""The search's choice between distilling and training on the labels (issue 18, item 2)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxzip.auto import SearchSpace, search, write_report
from jaxzip.auto._build import Build, takes_distill

SPACE = SearchSpace(
    sparsities=(0.0, 0.5, 0.8, 0.9), bits=(4,), kmeans_iters=5, finetune_rounds=(1, 2)
)


def _marked(params) -> bool:
    """Whether training on the labels left its marker (+1 on every output bias)."""
    return float(np.mean(np.asarray(params["Dense_1"]["bias"]))) >= 0.5


def _finetune(params, mask, *, key, distill=True):
    """Keeps the mask; on the labels (distill=False) it adds the marker (argmax unchanged)."""
    out = jax.tree.map(lambda p, m: np.where(m, p, 0.0), params, mask)
    if not distill:
        out["Dense_1"]["bias"] = np.asarray(out["Dense_1"]["bias"]) + 1.0
    return out


def _eval(make_eval, *, labels_help: bool, fail_at: int | None = None):
    """Accuracy, less 0.5 for kernels pruned past half unless the better way trained them."""
    real = make_eval(fail_at=fail_at)

    def ev(params):
        aggressive = np.mean(np.asarray(params["Dense_0"]["kernel"]) == 0) > 0.6
        good = _marked(params) if labels_help else not _marked(params)
        return real(params) - (0.5 if aggressive and not good else 0.0)

    ev.real = real
    return ev


def _run(mlp, ev, out, finetune_fn=_finetune, **kw):
    kw = {"max_drop": 0.45, "where": r".*/kernel", "key": jax.random.key(0), "space": SPACE, **kw}
    return search(mlp, eval_fn=ev, out_dir=out, finetune_fn=finetune_fn, **kw)


def test_the_search_goes_on_without_distillation_when_the_labels_do_better(
    mlp, make_eval, tmp_path
):
    def plain_ft(params, mask, *, key):  # no distill keyword: the search has no choice
        return _finetune(params, mask, key=key)

    plain = _run(
        mlp, _eval(make_eval, labels_help=True), tmp_path / "plain", plain_ft, max_trials=200
    )
    assert not takes_distill(Build(finetune_fn=plain_ft))
    assert all("distill" not in t for t in plain.trials)
    assert plain.best["sparsity"]["Dense_0/kernel"] <= 0.5

    r = _run(mlp, _eval(make_eval, labels_help=True), tmp_path / "choice", max_trials=200)
    assert takes_distill(Build(finetune_fn=_finetune))
    flags = [t.get("distill", True) for t in r.trials]
    first = flags.index(False)  # the duel: the same rung both ways, one after the other
    duel = r.trials[first - 1 : first + 1]
    assert duel[0]["sparsity"] == duel[1]["sparsity"] and duel[0]["bits"] == duel[1]["bits"]
    assert duel[1]["accuracy"] > duel[0]["accuracy"]
    assert all(f is False for f in flags[first:])  # from then on: on the labels
    assert r.feasible and r.best["distill"] is False
    assert r.best["bytes"] < plain.best["bytes"]
    report = write_report(r, tmp_path / "report").read_text()
    assert "| fine-tuning (chosen by the search) | on the labels |" in report
    assert "chosen by the search" not in write_report(plain, tmp_path / "plain_report").read_text()


def test_the_search_keeps_distilling_when_the_labels_do_no_better(mlp, make_eval, tmp_path):
    r = _run(mlp, _eval(make_eval, labels_help=False), tmp_path / "r", max_trials=200)
    flags = [t.get("distill", True) for t in r.trials]
    assert flags.count(False) == 1  # the duel's one trial, lost
    assert r.trials[flags.index(False)]["accuracy"] < r.trials[flags.index(False) - 1]["accuracy"]
    assert r.feasible and "distill" not in r.best


def test_no_choice_without_a_budget(mlp, make_eval, tmp_path):
    r = _run(mlp, _eval(make_eval, labels_help=True), tmp_path / "r")
    assert all("distill" not in t for t in r.trials)


def test_resume_after_a_kill_replays_the_choice(mlp, make_eval, tmp_path):
    full_ev = _eval(make_eval, labels_help=True)
    full = _run(mlp, full_ev, tmp_path / "full", max_trials=200)
    killer = _eval(make_eval, labels_help=True, fail_at=full_ev.real.calls - 3)
    with pytest.raises(KeyboardInterrupt):
        _run(mlp, killer, tmp_path / "b", max_trials=200)
    ev = _eval(make_eval, labels_help=True)
    resumed = _run(mlp, ev, tmp_path / "b", max_trials=200)
    assert killer.real.calls - 1 + ev.real.calls == full_ev.real.calls  # nothing twice

    def strip(ts):
        return [{k: v for k, v in t.items() if k not in ("seconds", "elapsed_s")} for t in ts]

    assert strip([resumed.best, *resumed.trials]) == strip([full.best, *full.trials])
    assert resumed.best["distill"] is False
