"""Runs experiments/lm_compression.py at tiny size, in-process, on a teacher lm_train.py trains."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import math
import re
import shlex
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TEXT = b"".join(f"verse {i}: in the beginning was the word.\n".encode() for i in range(80))


def _load(name: str):
    sys.path.insert(0, str(EXPERIMENTS))  # for _common
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("lmc")
    (d / "toy.txt.gz").write_bytes(gzip.compress(TEXT, mtime=0))
    text = ["--text", str(d / "toy.txt.gz"), "--sha256", hashlib.sha256(TEXT).hexdigest()]
    _load("lm_train").main(
        [
            *text,
            *shlex.split("--size tiny --seq-len 16 --batch-size 4 --warmup-steps 2 --steps 6"),
            *shlex.split("--eval-every 0 --eval-limit 4 --out"),
            str(d / "lm"),
        ],
        log=lambda _: None,
    )
    return text, d / "lm" / "teacher.npz"


def test_tiny_table(teacher, tmp_path, capsys):
    text, params = teacher
    out = tmp_path / "out"
    results = _load("lm_compression").main(
        [
            *text,
            "--teacher",
            str(params),
            *shlex.split("--size tiny --seq-len 16 --eval-windows 4 --calib 8 --calib-batch 4"),
            *shlex.split("--finetune-steps 2 --batch-size 4 --only fp32,rtn,w8a8 --no-qwix"),
            "--out",
            str(out),
        ]
    )
    assert results == json.loads((out / "lm_compression.json").read_text())
    assert "wanda_check" not in results  # only beside the pruning rows
    rows = {(r["method"], r["setting"]): r for r in results["rows"]}
    assert not [r for r in rows.values() if "error" in r]
    fp32 = rows[("fp32", "-")]
    assert fp32["bpb"] == results["fp32_bpb"] and fp32["increase"] == 0.0
    for key in [
        ("RTN", "int8 per-channel"),
        ("RTN", "int3 g64"),
        ("W8A8", "dynamic per token"),
        ("SmoothQuant+W8A8", "a=0.5 static"),
    ]:
        row = rows[key]
        assert math.isfinite(row["bpb"]) and row["increase"] == pytest.approx(
            row["bpb"] - fp32["bpb"]
        )
        assert row["file_bytes"] > 0
    assert (
        rows[("RTN", "int3 per-channel")]["file_bytes"]
        < rows[("RTN", "int8 per-channel")]["file_bytes"]
        < fp32["file_bytes"]
    )
    # the g64 row with int8 embedding tables: smaller, ratio and bits/param of its own file
    assert results["embedding_tables"] == ["embed/embedding", "pos_embed"]
    g64, emb = rows[("RTN", "int4 g64")], rows[("RTN", "int4 g64 + int8 emb")]
    assert emb["file_bytes"] < g64["file_bytes"] and math.isfinite(emb["bpb"])
    for row in (g64, emb, fp32):
        assert row["file_ratio"] == row["file_bytes"] / results["fp32_file_bytes"]
        assert row["bits_per_param"] == 8 * row["file_bytes"] / results["num_params"]
    assert fp32["file_ratio"] == 1.0 and fp32["bits_per_param"] > 32
    # bits per quantized weight: only where QArrays are stored, fewer at int3 than int8
    assert "bits_per_qweight" not in fp32
    int3, int8 = rows[("RTN", "int3 g64")], rows[("RTN", "int8 per-channel")]
    assert 0 < int3["bits_per_qweight"] < int8["bits_per_qweight"] < fp32["bits_per_param"]
    # the asymmetric (zero-point) settings: a row beside each symmetric int4 / int3 one
    for setting in ("int4 per-channel", "int4 g64", "int3 per-channel", "int3 g64"):
        sym, asym = rows[("RTN", setting)], rows[("RTN", f"{setting} asym")]
        assert math.isfinite(asym["bpb"]) and asym["bpb"] != sym["bpb"]
        assert asym["file_ratio"] == asym["file_bytes"] / results["fp32_file_bytes"]
    assert math.isfinite(rows[("RTN", "int4 g64 asym + int8 emb")]["bpb"])
    assert "asym: asymmetric grid" in (out / "lm_compression.md").read_text()
    assert "| RTN" in (out / "lm_compression.md").read_text()
    assert "SmoothQuant+W8A8" in capsys.readouterr().out


def test_a_failing_method_is_a_row_not_a_crash(teacher, tmp_path, monkeypatch):
    text, params = teacher
    module = _load("lm_compression")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(module, "rtn_params", broken)
    results = module.main(
        [
            *text,
            "--teacher",
            str(params),
            *shlex.split(
                "--size tiny --seq-len 16 --eval-windows 2 --calib 4 --only rtn --no-qwix"
            ),
            *["--settings", "int8,int4 g64", "--out", str(tmp_path / "o")],
        ]
    )
    errors = [r for r in results["rows"] if r["method"] == "RTN"]
    assert errors and all(r["error"] == "RuntimeError: boom" for r in errors)
    # --settings keeps the settings with those prefixes
    assert [r["setting"] for r in errors] == [
        "int8 per-channel",
        "int4 g64",
        "int4 g64 + int8 emb",
        "int4 g64 asym",
        "int4 g64 asym + int8 emb",
    ]


def _qarrays(tree) -> list:
    leaves = jax.tree.leaves(tree, is_leaf=jz.quant.is_quantized)
    return [x for x in leaves if jz.quant.is_quantized(x)]


def _tiny_bench(teacher):
    """lm_compression.py and its ``Bench`` (calibration batches, layouts) on the tiny teacher."""
    text, params = teacher
    module = _load("lm_compression")
    tiny = ["--size", "tiny", "--seq-len", "16", "--eval-windows", "2", "--calib", "8", "--no-qwix"]
    return module, module.Bench(module.parse_args([*text, "--teacher", str(params), *tiny]))


def test_asym_grid_and_its_zero_points_in_the_file(teacher):
    """``asym``: 2^B levels with a zero point per scale, and the file bytes count the zero points."""
    module, b = _tiny_bench(teacher)
    rtn = module.rtn_params(b, 3, True, symmetric=False)
    mlp = module.gptq_params(b, 4, False, mlp_only=True, symmetric=False)
    # GPTQ (MLP only) quantizes exactly the MLP kernels
    kinds = jax.tree.map(jz.quant.is_quantized, mlp, is_leaf=jz.quant.is_quantized)
    quantized = {p for p, k in jz.paths.leaves_with_paths(kinds) if k}
    assert quantized and quantized == {p for p in b.layouts if module.MLP.search(p)}
    for q, bits in ((rtn, 3), (mlp, 4)):
        qs = _qarrays(q)
        assert qs and {x.bits for x in qs} == {bits}
        values = np.concatenate([np.ravel(x.values) for x in qs])
        # all 2^B levels, -2^(B-1) included (the level the symmetric grid leaves out)
        assert values.min() == -(2 ** (bits - 1)) and values.max() == 2 ** (bits - 1) - 1
        assert any(np.any(np.asarray(x.zero_point) != 0) for x in qs)
        # the table's bytes are the file with the zero points: zeroing them shrinks it
        zeroed = jax.tree.map(
            lambda x: (
                x.replace(zero_point=jnp.zeros_like(x.zero_point))
                if jz.quant.is_quantized(x)
                else x
            ),
            q,
            is_leaf=jz.quant.is_quantized,
        )
        assert module.file_bytes(zeroed) < module.file_bytes(q)


def test_docs_language_models_snippets_run(capsys):
    """docs/language_models.md's Python runs; a ``# ...`` line after a print states its output."""
    doc = (EXPERIMENTS.parent / "docs" / "language_models.md").read_text(encoding="utf-8")
    snippets = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert snippets
    for i, code in enumerate(snippets):
        exec(compile(code, f"docs/language_models.md snippet {i}", "exec"), {})
        printed = capsys.readouterr().out.splitlines()
        expected = re.findall(r"^print\(.*\n# (.*)$", code, flags=re.MULTILINE)
        assert expected and all(line in printed for line in expected)


def test_wanda_check(teacher):
    """The diagnostic behind "Wanda does no better than magnitude here": per-kernel input-norm
    spread and mask disagreement, and jaxzip's Wanda against a float64 NumPy transcription."""
    module, b = _tiny_bench(teacher)
    check = module.wanda_check(b)
    assert set(check["kernels"]) == set(b.layouts)
    for k in check["kernels"].values():
        assert k["norm_max_over_median"] >= 1.0 and 0.0 <= k["differs_from_magnitude"] <= 1.0
    ref = check["numpy_reference"]
    assert ref["kernel"] == next(iter(b.layouts)) and ref["differ_from_numpy"] == 0
    # the NumPy rule itself: per column, the inputs of lowest |W| * norm go (ties: lower row)
    w = np.array([[4.0, 0.5], [3.0, 0.1], [2.0, 0.4], [1.0, 0.2]])
    keep = module.wanda_reference(w, np.array([1.0, 1.0, 1.0, 10.0]), 0.5)
    np.testing.assert_array_equal(
        keep, [[True, True], [False, False], [False, False], [True, True]]
    )
    # louder inputs move the mask away from magnitude's: flat norms give magnitude's own mask
    flat = module.wanda_reference(w, np.ones(4), 0.5)
    np.testing.assert_array_equal(
        flat, [[True, True], [True, False], [False, True], [False, False]]
    )


def test_the_scanned_build_gives_the_loop_builds_rows(teacher, tmp_path):
    """``--scan``: the same teacher as one nn.scan over stacked blocks. GPTQ, SparseGPT and
    Wanda calibrate the stack layer by layer, and magnitude pruning ranks each layer of the
    stack on its own (``layer_axes``), so their bits per byte are the loop build's (up to
    float rounding) (AWQ, SmoothQuant and W8A8 on stacks: tests/calib/test_layer_stacks.py)."""
    text, params = teacher
    common = [
        *text,
        "--teacher",
        str(params),
        *shlex.split("--size tiny --seq-len 16 --eval-windows 4 --calib 8 --calib-batch 4"),
        *shlex.split("--finetune-steps 0 --only fp32,gptq,prune --no-qwix"),
        "--settings",
        "int4 per-channel asym,50%",
    ]
    module = _load("lm_compression")
    loop = module.main([*common, "--out", str(tmp_path / "loop")])
    scan = module.main([*common, "--scan", "--out", str(tmp_path / "scan")])
    rows = {
        name: {(r["method"], r["setting"]): r for r in res["rows"]}
        for name, res in (("loop", loop), ("scan", scan))
    }
    assert set(rows["scan"]) == set(rows["loop"])
    compared = 0
    for key, want in rows["loop"].items():
        got = rows["scan"][key]
        assert "error" not in want and "error" not in got, (key, got)
        assert got["bpb"] == pytest.approx(want["bpb"], abs=1e-4), key
        compared += 1
    assert {"GPTQ", "SparseGPT", "Wanda", "magnitude"} <= {k[0] for k in rows["loop"]}
    assert compared >= 5
