"""Tests of jaxzip/pipeline/_auto.py's confirmation split and drops (issue 18, the honest bound)."""

from __future__ import annotations

import json

import pytest

from jaxzip import auto as jz_auto
from jaxzip._errors import ConfigError
from jaxzip.config import load_config
from jaxzip.pipeline import run_auto

SPACE = jz_auto.SearchSpace(sparsities=(0.0, 0.5), bits=(4,), kmeans_iters=5)


@pytest.fixture
def cfg(tmp_path, digits_auto_toml):
    path = tmp_path / "digits_auto.toml"
    path.write_text(digits_auto_toml, encoding="utf-8")
    return load_config(path)


def test_drops_on_three_splits_with_standard_errors(cfg, tmp_path):
    out = tmp_path / "out"
    s = run_auto(cfg, out, max_drop_pp=5.0, max_trials=3, space=SPACE, progress=False)
    sp, d = s["splits"], s["drops"]
    whole = run_auto(
        cfg,
        tmp_path / "whole",
        max_drop_pp=5.0,
        max_trials=1,
        space=SPACE,
        progress=False,
        confirm_fraction=None,
    )
    assert whole["splits"]["confirmation"] == 0 and whole["drops"]["confirmation"] is None
    n_val = whole["splits"]["validation"]
    assert sp["validation"] + sp["confirmation"] == n_val  # both halves of the validation split
    assert sp["confirmation"] == round(n_val * 0.5)
    res = s["result"]
    assert (
        res["confirmation"]["n"] == sp["confirmation"]
        and res["confirmation"]["val_n"] == sp["validation"]
    )
    assert d["bound_pp"] == 5.0 and "binomial" in d["se_method"]
    for split, n in (
        ("validation", sp["validation"]),
        ("confirmation", sp["confirmation"]),
        ("test", sp["test"]),
    ):
        x = d[split]
        assert x["n"] == n and x["se_pp"] > 0
        assert x["drop_pp"] == pytest.approx(100 * (x["baseline_accuracy"] - x["accuracy"]))
        assert x["se_pp"] == pytest.approx(
            100 * jz_auto.drop_se(x["baseline_accuracy"], x["accuracy"], n)
        )
    for split, n in (
        ("validation", sp["validation"]),
        ("confirmation", sp["confirmation"]),
        ("test", sp["test"]),
    ):
        x = d[split]  # each example's result is known: the paired standard error too
        b, c = x["discordant"]
        assert x["drop_pp"] == pytest.approx(100 * (b - c) / n)
        assert x["paired_se_pp"] == pytest.approx(100 * jz_auto.paired_drop_se(b, c, n))
    assert s["confidence"] == 0.0
    assert d["validation"]["accuracy"] == res["best"]["accuracy"]
    assert res["best"]["confirmed"] is True and res["feasible"]
    assert d["confirmation"]["drop_pp"] <= 5.0 + 1e-9  # it passed its confirmation
    assert d["test"]["accuracy"] == s["test"]["best_test_accuracy"]
    # confirmations are in the journal; the report shows all three drops
    kinds = [
        json.loads(x).get("kind") for x in (out / "journal.jsonl").read_text().splitlines()[1:]
    ]
    assert kinds.count("confirm_baseline") == 1 and kinds.count("confirm") >= 1
    text = (out / "report.md").read_text()
    assert "| confirmation | " in text and "| test | " in text and "± paired SE" in text
    assert (out / "time.png").exists()
    # rerun with a confidence: the same journal (no trial repeated), a stricter confirmation
    lines = (out / "journal.jsonl").read_text().splitlines()
    z = run_auto(
        cfg, out, max_drop_pp=5.0, max_trials=3, space=SPACE, progress=False, confidence=3.0
    )
    assert z["confidence"] == 3.0 and z["result"]["confirmation"]["confidence"] == 3.0
    new = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()[len(lines) :]]
    assert all(r["kind"] == "confirm" for r in new)  # at most more confirmations
    for a in z["result"]["confirmation"]["attempts"]:
        assert a["passed"] == (a["drop"] + 3.0 * a["paired_se"] <= 0.05)


def test_confirmation_split_too_small_names_the_sizes(cfg, tmp_path):
    # digits: 0.2 of the training part is validation; half of it cannot resolve 0.1 points
    with pytest.raises(
        ConfigError,
        match=r"data\.val_fraction: the confirmation split \((\d+) of "
        r"the (\d+) validation examples, confirm_fraction 0\.5\) cannot resolve "
        r"--max-drop 0\.1 points.*at least 1000 examples",
    ):
        run_auto(cfg, tmp_path / "o", max_drop_pp=0.1, space=SPACE, progress=False)
    journal = tmp_path / "o" / "journal.jsonl"
    assert not journal.exists() or '"kind"' not in journal.read_text()  # nothing measured
    with pytest.raises(ValueError, match="confirm_fraction"):
        run_auto(cfg, tmp_path / "p", max_drop_pp=5.0, confirm_fraction=1.0, progress=False)


def test_budget_too_small_for_the_baseline_confirmation(cfg, tmp_path):
    with pytest.raises(
        jz_auto.BudgetTooSmall,
        match=r"spent before the baseline was measured on "
        r"the confirmation split; found so far: the baseline's validation accuracy",
    ):
        run_auto(
            cfg, tmp_path / "o", max_drop_pp=5.0, time_budget_s=1e-9, space=SPACE, progress=False
        )


def test_a_diverged_candidate_stops_the_search_naming_its_learning_rate(cfg, tmp_path):
    from dataclasses import replace

    from jaxzip._errors import DivergedError

    bad = replace(cfg, prune=replace(cfg.prune, learning_rate=1e12))
    with pytest.raises(DivergedError, match=r"lower prune\.learning_rate \(now 1e\+12\)"):
        run_auto(bad, tmp_path / "out", max_drop_pp=5.0, max_trials=2, space=SPACE, progress=False)


def _two_trials(cfg, out):
    """``run_auto`` of two trials of :data:`SPACE` at a 5-point bound, no confirmation split."""
    return run_auto(
        cfg, out, max_drop_pp=5.0, max_trials=2, space=SPACE, progress=False, confirm_fraction=None
    )


def test_candidates_distilled_from_the_dense_baseline(cfg, tmp_path):
    from dataclasses import replace

    runs = {}
    for alpha in (0.0, 1.0):
        kd = replace(cfg, prune=replace(cfg.prune, distill_alpha=alpha, distill_temperature=2.0))
        runs[alpha] = _two_trials(kd, tmp_path / f"a{alpha}")
    assert "distill" not in runs[0.0]["settings"]
    assert runs[1.0]["settings"]["distill"] == {"alpha": 1.0, "temperature": 2.0}
    trials = {a: [t["accuracy"] for t in r["result"]["trials"]] for a, r in runs.items()}
    assert len(trials[0.0]) == len(trials[1.0]) == 2
    assert trials[0.0] != trials[1.0]  # the same candidates, trained on another loss


def test_centroid_finetuning_distilled_from_the_dense_baseline(cfg, tmp_path):
    from dataclasses import replace

    from jaxzip.config import KMeansConfig

    runs = {}
    for alpha in (0.0, 1.0):
        kmeans = KMeansConfig(learning_rate=1e-2, distill_alpha=alpha, distill_temperature=2.0)
        runs[alpha] = _two_trials(replace(cfg, kmeans=kmeans), tmp_path / f"a{alpha}")
    assert "distill" not in runs[0.0]["settings"]["codebook_finetune"]
    assert runs[1.0]["settings"]["codebook_finetune"]["distill"] == {
        "alpha": 1.0,
        "temperature": 2.0,
    }
    assert "distill" not in runs[1.0]["settings"]  # the pruning fine-tune still on the labels
    accs = {a: [t["accuracy"] for t in r["result"]["trials"]] for a, r in runs.items()}
    assert accs[0.0] != accs[1.0]  # the same candidates, centroids tuned on another loss


def test_with_a_budget_the_search_may_train_distilling_or_on_the_labels(cfg, tmp_path):
    """The pipeline's hooks take ``distill`` only where the config distills: then one rung is
    built both ways (issue 18: distillation as an option the search may choose)."""
    from dataclasses import replace

    space = jz_auto.SearchSpace(
        sparsities=(0.0, 0.5, 0.9), bits=(4,), kmeans_iters=5, finetune_rounds=(1, 2)
    )
    flags = {}
    for alpha in (0.0, 1.0):
        kd = replace(cfg, prune=replace(cfg.prune, distill_alpha=alpha, distill_temperature=2.0))
        s = run_auto(
            kd,
            tmp_path / f"a{alpha}",
            max_drop_pp=5.0,
            max_trials=8,
            space=space,
            progress=False,
            confirm_fraction=None,
        )
        flags[alpha] = [t.get("distill", True) for t in s["result"]["trials"]]
    assert False not in flags[0.0]  # nothing to choose: every candidate as configured
    i = flags[1.0].index(False)  # the duel: one rung, both ways, one after the other
    trials = s["result"]["trials"]
    assert (trials[i - 1]["sparsity"], trials[i - 1].get("rounds")) == (
        trials[i]["sparsity"],
        trials[i].get("rounds"),
    )


def test_confidence_is_for_image_searches(tmp_path):
    lm = load_config("experiments/kjv_auto.toml")
    with pytest.raises(ValueError, match="confidence: 1 applies to the image search"):
        run_auto(lm, tmp_path / "o", max_drop_pp=2.0, confidence=1.0, progress=False)
    assert not (tmp_path / "o").exists()
