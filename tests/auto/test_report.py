"""Tests of jaxzip/auto/_report.py."""

from __future__ import annotations

import jax
import pytest

from jaxzip.auto import SearchSpace, search, write_report


def test_report_written(mlp, make_eval, tmp_path):
    space = SearchSpace(sparsities=(0.0, 0.5, 0.8), bits=(4, 2), kmeans_iters=5)
    r = search(
        mlp,
        eval_fn=make_eval(),
        max_drop=0.1,
        where=r".*/kernel",
        key=jax.random.key(0),
        space=space,
    )
    path = write_report(r, tmp_path / "rep", test_metrics={"best_test_accuracy": 0.5})
    text = path.read_text()
    assert path.name == "report.md"
    for needle in ("| baseline accuracy (validation) | 1.0000 |", "| best_test_accuracy | 0.5000",
                   "| Dense_0/kernel |", "entropy bound", "trials.png", "sensitivity.png",
                   f"| file bytes | {r.best['bytes']} |"):  # fmt: skip
        assert needle in text
    for png in ("trials.png", "layers.png", "sensitivity.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="SearchResult"):
        write_report(r.to_dict(), tmp_path)
