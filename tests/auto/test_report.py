"""Tests of jaxzip/auto/_report.py."""

from __future__ import annotations

import pytest

from jaxzip.auto import SearchSpace, write_report

SPACE = SearchSpace(sparsities=(0.0, 0.5, 0.8), bits=(4, 2), kmeans_iters=5)


def test_report_written(mlp, make_eval, run_search, tmp_path):
    r = run_search(mlp, make_eval(), SPACE, max_drop=0.1)
    path = write_report(r, tmp_path / "rep", test_metrics={"best_test_accuracy": 0.5})
    text = path.read_text()
    assert path.name == "report.md"
    for needle in (
        "| baseline accuracy (validation) | 1.0000 |",
        "| best_test_accuracy | 0.5000",
        "| Dense_0/kernel |",
        "entropy bound",
        "trials.png",
        "sensitivity.png",
        f"| file bytes | {r.best['bytes']} |",
    ):
        assert needle in text
    for png in ("trials.png", "layers.png", "sensitivity.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="SearchResult"):
        write_report(r.to_dict(), tmp_path)


def test_report_shows_drops_confirmation_and_time(mlp, make_eval, run_search, tmp_path):
    ev = make_eval()
    r = run_search(mlp, ev, SPACE, max_drop=0.1, confirm_fn=ev, confirm_n=256, val_n=256)
    d = {
        "validation": {
            "n": 256,
            "baseline_accuracy": 1.0,
            "accuracy": 0.98,
            "drop_pp": 2.0,
            "se_pp": 0.875,
        },
        "confirmation": None,
        "test": {
            "n": 10,
            "baseline_accuracy": 0.9,
            "accuracy": 0.8,
            "drop_pp": 10.0,
            "se_pp": 16.58,
        },
    }
    text = write_report(
        r, tmp_path, drops={**d, "bound_pp": 10.0, "se_method": "binomial"}
    ).read_text()
    for needle in (
        "| validation | 256 | 1.0000 | 0.9800 | 2.000 | 0.875 |",
        "| confirmation | | | | not measured | |",
        "| test | 10 |",
        "## Confirmation",
        f"confirmed `{r.best['key']}`",
        "## Best ratio against time",
        f"| {r.best['ratio']:.2f}x | {r.best['bytes']} | `{r.best['key']}` |",
    ):
        assert needle in text, needle
    assert (tmp_path / "time.png").read_bytes()[:4] == b"\x89PNG"
    a = r.confirmation["attempts"][0]  # the confirmation's standard error, unpaired here
    assert f"| {a['drop']:.4f} | {a['drop_se']:.4f} | yes |" in text
    assert "standard errors (paired where" not in text  # no confidence margin


def test_report_shows_the_confidence_and_paired_errors(mlp, make_eval, tmp_path):
    from tests.auto.test_drops import VectorConfirm, _run

    r = _run(mlp, make_eval(), tmp_path / "s", VectorConfirm(mlp, [(50, 0)]), confidence=2.0)
    text = write_report(r, tmp_path).read_text()
    first = r.confirmation["attempts"][0]
    assert "A pass needs the drop plus 2 standard errors (paired where shown" in text
    assert f"| {first['drop']:.4f} | {first['paired_se']:.4f} paired | no |" in text
