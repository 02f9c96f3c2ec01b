"""Tests for jaxzip/auto/_lm.py (search_lm), _lm_build.py, _lm_report.py and `jaxzip auto` on text.

A one-block transformer (d_model 16, context 16) trained 20 steps on a 12-symbol Markov
text; every search shares one journal, whose records (sensitivities, candidates,
confirmations) do not depend on the bound.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxzip as jz
from jaxzip.auto import Journal, LMSpace, search_lm, split_windows

SPACE = LMSpace(bits=(2, 4), tables=r".*embed.*", probe_windows=64)  # groups: whole axes
LOOSE, TIGHT = 0.03, 0.004
CONFIG = {"test": "lm"}


def _text(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(12, 0.3), size=12)
    s = [0]
    for _ in range(n):
        s.append(rng.choice(12, p=p[s[-1]]))
    return np.asarray(s, np.uint8) + 97


@pytest.fixture(scope="module")
def lm():
    text = _text(9000, seed=0)
    model = jz.models.Transformer(num_layers=1, d_model=16, num_heads=2, mlp_ratio=1, max_len=16)
    apply_fn = jz.models.linen_apply_fn(model)
    params = jz.models.init_params(model, jax.random.key(0), np.zeros((1, 16), np.int32))
    tx = optax.adam(1e-2)
    step, state = jz.train.make_train_step(apply_fn, tx), jz.train.init_state(params, tx)
    for i in range(12):
        w = jz.data.sample_windows(text[:6000], seq_len=16, num=32, key=jax.random.key(i))
        state, _ = step(state, {"x": w.x, "y": w.y}, jax.random.key(i))
    held = jz.data.eval_windows(text[6000:], seq_len=16, name="held")
    rank, conf = split_windows(held, 0.5, seed=0)
    calib = jz.data.sample_windows(text[:6000], seq_len=16, num=64, key=jax.random.key(99))
    return apply_fn, state.params, [jnp.asarray(calib.x)], rank, conf


def _search(lm, journal_path, bound=LOOSE, **kw):
    apply_fn, params, calib, rank, conf = lm
    journal = Journal.open(journal_path, config=CONFIG)
    return search_lm(
        apply_fn,
        params,
        calib,
        rank,
        conf,
        max_increase=bound,
        space=SPACE,
        journal=journal,
        max_trials=4,
        **kw,
    )


@pytest.fixture(scope="module")
def first(lm, tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "journal.jsonl"
    return path, _search(lm, path)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def _copy(path: Path, tmp_path: Path, records: list[dict]) -> Path:
    head = path.read_text().splitlines()[0]
    out = tmp_path / "journal.jsonl"
    out.write_text("\n".join([head] + [json.dumps(r) for r in records]) + "\n")
    return out


def test_the_chosen_file_meets_the_bound_and_is_what_was_scored(lm, first):
    apply_fn, _, _, rank, conf = lm
    _, r = first
    assert r.feasible and r.confirmed
    best = r.splits["rank"]["best"]
    assert best["relative"] <= LOOSE and r.confirmations[-1]["relative"] <= LOOSE
    assert r.bytes == len(jz.codec.encode(r.params)) == best["bytes"]
    deq = jz.quant.dequantize_params(r.params)
    for split, w in (("rank", rank), ("confirm", conf)):
        got = jz.train.evaluate(apply_fn, deq, w)["bits_per_token"]
        assert r.splits[split]["best"]["bpb"] == pytest.approx(got, rel=1e-5)
    for path, c in r.choices.items():  # every kernel at its chosen bits, tables int8
        leaf = functools.reduce(lambda t, k: t[k], path.split("/"), r.params)
        assert leaf.bits == c["bits"] and (c["bits"] in SPACE.bits or c.get("table"))
    assert {"embed/embedding", "pos_embed"} <= set(r.choices)
    assert len({c["bits"] for c in r.choices.values()}) > 1  # a mixed choice
    assert r.bytes < r.reference["bytes"]  # below uniform int4 at this bound


def test_a_tighter_bound_never_gives_a_smaller_file(lm, first, tmp_path):
    path, loose = first
    tight = _search(lm, _copy(path, tmp_path, _records(path)), bound=TIGHT)
    assert tight.bytes >= loose.bytes
    if tight.feasible:
        assert tight.splits["rank"]["best"]["relative"] <= TIGHT


def test_a_rerun_on_the_journal_repeats_no_trial_and_ends_the_same(lm, first, tmp_path):
    path, r = first
    recs = _records(path)
    again = _search(lm, _copy(path, tmp_path, recs))  # Journal.append refuses a repeated key
    assert len(_records(tmp_path / "journal.jsonl")) == len(recs)
    assert again.to_dict() == r.to_dict()
    # killed after the sensitivities and the first candidate: the rest is redone, once
    cut = next(i for i, x in enumerate(recs) if x["key"].startswith("cand/")) + 1
    resumed_path = _copy(path, tmp_path, recs[:cut])
    resumed = _search(lm, resumed_path)
    assert [x["key"] for x in _records(resumed_path)] == [x["key"] for x in recs]
    assert resumed.to_dict() == r.to_dict()


def test_a_rerun_of_a_search_the_time_budget_cut_ends_the_same(lm, first, tmp_path):
    path, _ = first
    for d in ("tight", "again"):
        (tmp_path / d).mkdir()
    recs = _records(path)
    sens = recs[: next(i for i, x in enumerate(recs) if x["key"].startswith("cand/"))]
    tight_path = _copy(path, tmp_path / "tight", sens)  # its sensitivities, no candidate
    tight = _search(lm, tight_path, bound=TIGHT)
    recs = _records(tight_path)
    cands = [i for i, x in enumerate(recs) if x["key"].startswith("cand/")]
    assert len(cands) >= 3 and len(tight.trials) == len(cands)
    # the same journal as if its records had been measured one second apart: with a budget
    # between the first and the second candidate's times, that search would have started
    # the second (at the first's time, within the budget) and no third
    timed = [{**x, "elapsed_s": float(i)} for i, x in enumerate(recs)]
    again_path = _copy(path, tmp_path / "again", timed)
    again = _search(lm, again_path, bound=TIGHT, time_budget_s=(cands[0] + cands[1]) / 2)
    assert again.stopped == "time_budget" and again.trials[:2] == tight.trials[:2]
    # past the budget only step 0, when nothing was confirmed (the file returned is measured)
    assert [t["step"] for t in again.trials[2:]] in ([], [0])
    # replayed on the journal's clock: no candidate was computed again (step 0 at most)
    new = [x for x in _records(again_path)[len(recs) :] if x["key"].startswith("cand/")]
    assert all(x["step"] == 0 for x in new)


def test_a_budget_spent_before_any_trial_still_returns_a_measured_confirmed_file(
    lm, first, tmp_path
):
    path, _ = first
    recs = _records(path)
    sens = recs[: next(i for i, x in enumerate(recs) if x["key"].startswith("cand/"))]
    timed = [{**x, "elapsed_s": 1.0} for x in sens]  # the sensitivities took the whole budget
    r = _search(lm, _copy(path, tmp_path, timed), time_budget_s=0.5)
    assert r.stopped == "time_budget"
    assert [t["step"] for t in r.trials] == [0] and len(r.confirmations) == 1  # step 0 only
    best = r.splits["rank"]["best"]
    assert best is not None and best["bytes"] == r.bytes == len(jz.codec.encode(r.params))
    assert r.feasible == r.confirmations[0]["passed"] == (best["relative"] <= LOOSE)
    assert r.feasible  # step 0 (the least increase) is within this loose bound


def test_a_failed_confirmation_backs_off_to_a_larger_file(lm, first, tmp_path):
    path, r = first
    recs = _records(path)
    i = next(i for i, x in enumerate(recs) if x["key"].startswith("confirm/"))
    failed = {**recs[i], "relative": 1.0}  # as if the confirmation split had disagreed
    backed = _search(lm, _copy(path, tmp_path, [*recs[:i], failed]))
    first_conf, last = backed.confirmations[0], backed.confirmations[-1]
    assert not first_conf["passed"] and first_conf["step"] == r.confirmations[-1]["step"]
    if backed.feasible:
        assert last["passed"] and last["step"] != first_conf["step"]
        assert backed.bytes >= r.bytes and backed.splits["rank"]["best"]["relative"] <= LOOSE


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: LMSpace(bits=(1, 4)), ValueError, "bits: expected ints in 2..8"),
        (lambda: LMSpace(bits=()), ValueError, "bits: expected a non-empty"),
        (lambda: LMSpace(bits=(4, 9)), ValueError, "bits: expected ints in 2..8"),
        (lambda: LMSpace(sparsities=(1.0,)), ValueError, "sparsities"),
        (lambda: LMSpace(group_size=0), ValueError, "group_size"),
    ],
)
def test_bad_spaces_name_the_setting(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"max_increase": 0.0}, ValueError, "max_increase: expected a relative increase > 0"),
        ({"max_increase": -0.02}, ValueError, "max_increase"),
        ({"max_increase": True}, ValueError, "max_increase"),
        ({"max_trials": 0}, ValueError, "max_trials: expected an int >= 1"),
        ({"rank": np.zeros((4, 16), np.int32)}, TypeError, "rank: expected jaxzip.data"),
        ({"confirm": "one"}, ValueError, "confirm: expected at least 2 windows"),
        ({"space": LMSpace(tables="nothing")}, ValueError, "tables: 'nothing' selects no"),
        ({"calib": []}, ValueError, "calib_batches: expected at least one batch"),
    ],
)
def test_bad_inputs_name_the_argument(lm, change, error, match):
    apply_fn, params, calib, rank, conf = lm
    if change.get("confirm") == "one":
        change["confirm"] = jz.data.TokenWindows(
            x=conf.x[:1], y=conf.y[:1], vocab_size=256, name="one"
        )
    kw = {
        "max_increase": 0.02,
        "space": SPACE,
        "rank": rank,
        "confirm": conf,
        "calib": calib,
        **change,
    }
    with pytest.raises(error, match=match):
        search_lm(apply_fn, params, kw.pop("calib"), kw.pop("rank"), kw.pop("confirm"), **kw)


def test_split_windows_is_seeded_and_checks_its_fraction(lm):
    _, _, _, rank, _ = lm
    a, b = split_windows(rank, 0.25, seed=3)
    _, b2 = split_windows(rank, 0.25, seed=3)
    assert np.array_equal(b.x, b2.x) and len(a) + len(b) == len(rank)
    assert not np.array_equal(split_windows(rank, 0.25, seed=4)[1].x, b.x)
    with pytest.raises(ValueError, match="confirm_fraction: expected a number in"):
        split_windows(rank, 1.0, seed=0)


TINY_TOML = """\
[experiment]
name = "kjv_auto_tiny"
[data]
name = "kjv"
seq_len = 16
train_windows = 64
held_out_windows = 24
[model]
name = "transformer"
num_layers = 1
d_model = 16
num_heads = 2
mlp_ratio = 1
[train]
epochs = 1
batch_size = 16
learning_rate = 0.02
"""


def test_cli_auto_on_a_text_config(tmp_path, capsys, one_error_line, kjv_dir):
    from jaxzip.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "out"
    argv = [
        "auto",
        str(cfg),
        "--max-drop",
        "5",
        "--max-trials",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "auto.json").read_text())
    res = summary["result"]
    assert summary["kind"] == "lm" and f"best: {res['bytes']} bytes" in printed
    assert len((out / "best.jz").read_bytes()) == res["bytes"]
    assert summary["comparison"]["reference_bytes"] == res["reference"]["bytes"]
    assert (summary["splits"]["rank"], summary["splits"]["confirm"]) == (12, 12)
    assert "| block_0/mlp_out/kernel |" in (out / "report.md").read_text()
    shutil.rmtree(out)
    assert main(["auto", str(cfg), "--max-drop", "0", "--out", str(out)]) == 2
    assert "max_drop: for a language model" in one_error_line(capsys)
