"""Tests for jaxzip/pipeline/_quantize_stage.py: ``[quantize]`` (GPTQ, RTN) through ``jaxzip run``.

The GPTQ run is a tiny KJV language model (context 16, one block of width 8) read through
``$JAXZIP_DATA_DIR`` (set under CI, where a skip fails); the RTN run an MLP on digits.
"""

from __future__ import annotations

import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip import ConfigError
from jaxzip.config import config_from_dict, run_key, stage_names
from jaxzip.pipeline import run_experiment

TINY_LM = {
    "experiment": {"name": "kjv_gptq"},
    "data": {"name": "kjv", "seq_len": 16, "train_windows": 64, "held_out_windows": 8},
    "model": {"name": "transformer", "num_layers": 1, "d_model": 8, "num_heads": 2, "mlp_ratio": 1},
    "train": {"epochs": 0},  # params_from: the fixture's random init
    "quantize": {"bits": 4, "group_size": 4, "table_bits": 8, "calibration_examples": 32},
    "codec": {"file": "lm.jz"},
}
KERNELS = [
    "block_0/attn/key/kernel",
    "block_0/attn/out/kernel",
    "block_0/attn/query/kernel",
    "block_0/attn/value/kernel",
    "block_0/mlp_in/kernel",
    "block_0/mlp_out/kernel",
    "head/kernel",
]
MLP = {
    "experiment": {"name": "digits_rtn"},
    "model": {"name": "mlp", "widths": [32]},
    "train": {"epochs": 1, "learning_rate": 0.01},
    "quantize": {"method": "rtn", "bits": 8},
    "export": {"file": "m.jzx"},
}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, kjv_dir):
    """``(out, cfg, results)`` of the tiny GPTQ run, or skip without the KJV text."""
    base = tmp_path_factory.mktemp("gptq")
    module, _ = _lm_model()
    params = jz.models.init_params(module, jax.random.key(1), np.zeros((1, 16), np.int32))
    jz.train.save_params(base / "init.npz", params)
    model = {**TINY_LM["model"], "params_from": str(base / "init.npz")}
    cfg = config_from_dict({**TINY_LM, "model": model})
    return base / "run", cfg, run_experiment(cfg, base / "run", progress=False, report=False)


def _lm_model():
    module = jz.models.Transformer(num_layers=1, d_model=8, num_heads=2, mlp_ratio=1, max_len=16)
    like = jax.eval_shape(module.init, jax.random.key(0), np.zeros((1, 16), np.int32))["params"]
    return module, like


def test_a_quantize_section_adds_its_stages():
    cfg = config_from_dict(MLP)
    names = ("data", "model", "train", "evaluate_dense", "quantize", "evaluate", "encode")
    assert stage_names(cfg) == (*names, "export")
    assert cfg.quantize.method == "rtn" and cfg.quantize.table_bits == 0
    assert config_from_dict({**MLP, "codec": {"write": False}}).codec.write is False
    assert "encode" not in stage_names(config_from_dict({**MLP, "codec": {"write": False}}))


def test_quantize_does_not_combine_with_kmeans():
    with pytest.raises(ConfigError, match=r"\[quantize\] and \[kmeans\] cannot be combined"):
        config_from_dict({**MLP, "kmeans": {}})


def _kernels(tree) -> dict:
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=jz.quant.is_quantized)[0]
    return {jz.paths.keystr(kp): x for kp, x in flat if jz.paths.keystr(kp) in KERNELS}


def test_pruned_then_gptq_holds_the_zeros_and_is_the_library_call_with_the_mask(lm_run, tmp_path):
    """[prune] (half of each kernel, one-shot) then [quantize] GPTQ: the file's kernels are
    zero exactly where pruning left them, as jz.quant.gptq(..., mask=) gives by hand."""
    _, cfg, _ = lm_run
    data = {**TINY_LM, "model": {**TINY_LM["model"], "params_from": cfg.model.params_from}}
    data["prune"] = {"sparsity": 0.5, "allocation": "uniform", "epochs_per_round": 0}
    run = tmp_path / "run"
    results = run_experiment(config_from_dict(data), run, progress=False, report=False)
    module, _ = _lm_model()
    pruned = jz.codec.load(next((run / "stages").glob("*-prune-*")) / "params.jz")
    books = jz.codec.load(run / "lm.jz")
    for path, q in _kernels(books).items():
        before = np.asarray(_kernels(pruned)[path])
        after = np.asarray(jz.quant.dequantize(q))
        assert np.mean(before == 0) >= 0.5 and np.all(after[before == 0] == 0), path
        assert np.mean(after[before != 0] != 0) > 0.8, path  # the kept weights stay weights
    splits = jz.data.load_splits("kjv", val_fraction=0.1, seed=0, seq_len=16, train_windows=64)
    perm = jax.random.permutation(run_key(config_from_dict(data), "quantize/calibration"), 64)
    idx = np.sort(np.asarray(perm)[:32])
    batches = [jnp.asarray(splits.train.x[idx[:16]]), jnp.asarray(splits.train.x[idx[16:]])]
    spec = jz.quant.QuantSpec(bits=4, axes=(-1,), group_size=4, symmetric=False)
    apply_fn = jz.models.linen_apply_fn(module)
    assert results["prune"]["rounds"][0]["sparsity"] == 0.5
    # the mask by hand: the pruned zeros of each kernel, everything else kept
    full = jax.tree.map(lambda x: np.ones(np.shape(x), bool), pruned)
    for path in KERNELS:
        node_f, node_p = full, pruned
        *head, last = path.split("/")
        for part in head:
            node_f, node_p = node_f[part], node_p[part]
        node_f[last] = np.asarray(node_p[last]) != 0
    want = jz.quant.gptq(
        lambda p, x: apply_fn(p, x, train=False, key=None),
        pruned,
        batches,
        [(re.escape(k), spec) for k in KERNELS],
        mask=full,
    )
    assert sorted(_kernels(want)) == KERNELS == sorted(_kernels(books))
    for path, q in _kernels(want).items():
        got = _kernels(books)[path]
        np.testing.assert_array_equal(np.asarray(q.values), np.asarray(got.values), path)
    m = results["metrics"]
    assert m["held_out_bits_per_byte"] != m["dense_held_out_bits_per_byte"]


def test_pruned_then_rounded_to_nearest_holds_the_zeros(tmp_path):
    """Round to nearest on an asymmetric grid keeps pruned weights at exactly zero (the zero
    point is an integer level)."""
    data = {**MLP, "prune": {"sparsity": 0.6, "epochs_per_round": 0}}
    data["quantize"] = {"method": "rtn", "bits": 3}
    run = tmp_path / "run"
    results = run_experiment(config_from_dict(data), run, progress=False, report=False)
    books = jz.codec.load(run / "model.jz")
    before = jz.codec.load(next((run / "stages").glob("*-prune-*")) / "params.jz")
    for layer in ("Dense_0", "Dense_1"):
        w = np.asarray(before[layer]["kernel"])
        after = np.asarray(jz.quant.dequantize(books[layer]["kernel"]))
        assert np.all(after[w == 0] == 0) and np.mean(w == 0) > 0.3
    assert results["metrics"]["sparsity"] == pytest.approx(0.6, abs=0.01)


def test_gptq_run_stores_the_quantized_kernels_and_tables_it_evaluated(lm_run):
    out, _, results = lm_run
    report = results["quantize"]
    assert sorted(report["kernels"]) == KERNELS
    assert report["tables"] == ["embed/embedding", "pos_embed"]
    assert report["calibration_examples"] == 32
    # the attention output projection's last input axis is one head (4 inputs): one group
    assert {k["group_size"] for k in report["kernels"].values()} == {4}
    # the file holds 4-bit kernels and int8 tables, and decodes to the evaluated params
    books = jz.codec.load(out / "lm.jz")
    leaves = dict(
        (jz.paths.keystr(kp), x)
        for kp, x in jax.tree_util.tree_flatten_with_path(books, is_leaf=jz.quant.is_quantized)[0]
    )
    assert {p for p, x in leaves.items() if jz.quant.is_quantized(x)} == {
        *KERNELS,
        "embed/embedding",
        "pos_embed",
    }
    assert {leaves[p].bits for p in KERNELS} == {4}
    assert leaves["pos_embed"].bits == 8 and leaves["pos_embed"].axes == (0,)
    _, like = _lm_model()
    saved = jz.train.load_params(out / "params.npz", like)
    decoded = jz.quant.dequantize_params(books)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(decoded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # evaluate scores the quantized model, evaluate_dense the float one
    m = results["metrics"]
    assert m["held_out_bits_per_byte"] != m["dense_held_out_bits_per_byte"]
    assert abs(m["held_out_bits_per_byte"] - m["dense_held_out_bits_per_byte"]) < 0.5
    assert results["codec"]["file_bytes"] == (out / "lm.jz").stat().st_size


def test_gptq_run_equals_the_library_call_on_the_documented_calibration_sample(lm_run):
    """The stage is jz.quant.gptq on 32 training windows drawn with the run's key named
    "quantize/calibration", in dataset order, in batches of 16, asymmetric groups of 4."""
    out, cfg, _ = lm_run
    module, like = _lm_model()
    apply_fn = jz.models.linen_apply_fn(module)
    trained = jz.train.load_params(cfg.model.params_from, like)
    splits = jz.data.load_splits("kjv", val_fraction=0.1, seed=0, seq_len=16, train_windows=64)
    perm = jax.random.permutation(run_key(cfg, "quantize/calibration"), 64)
    idx = np.sort(np.asarray(perm)[:32])
    batches = [jnp.asarray(splits.train.x[idx[:16]]), jnp.asarray(splits.train.x[idx[16:]])]
    spec = jz.quant.QuantSpec(bits=4, axes=(-1,), group_size=4, symmetric=False)
    want = jz.quant.gptq(
        lambda p, x: apply_fn(p, x, train=False, key=None),
        trained,
        batches,
        [(re.escape(k), spec) for k in KERNELS],
    )
    got = jz.codec.load(out / "lm.jz")
    for k in KERNELS:
        node_w, node_g = want, got
        for part in k.split("/"):
            node_w, node_g = node_w[part], node_g[part]
        np.testing.assert_array_equal(np.asarray(node_w.values), np.asarray(node_g.values))
        np.testing.assert_array_equal(np.asarray(node_w.scale), np.asarray(node_g.scale))


@pytest.fixture(scope="module")
def rtn_run(tmp_path_factory):
    """``(out, results)`` of the MLP run with int8 round to nearest (tests copy ``out``)."""
    out = tmp_path_factory.mktemp("rtn") / "run"
    return out, run_experiment(config_from_dict(MLP), out, progress=False, report=False)


def test_rtn_run_on_images_rounds_each_kernel_per_output_channel(rtn_run):
    out, results = rtn_run
    assert sorted(results["quantize"]["kernels"]) == ["Dense_0/kernel", "Dense_1/kernel"]
    assert results["quantize"]["calibration_examples"] == 0  # round to nearest needs none
    books = jz.codec.load(out / "model.jz")
    dense = jz.codec.load(next((out / "stages").glob("03-train-*")) / "params.jz")
    spec = jz.quant.QuantSpec(bits=8, axes=(1,), symmetric=False, group_axis=0)
    want = jz.quant.quantize_params(dense, [(r".*/kernel", spec)])
    for layer in ("Dense_0", "Dense_1"):
        np.testing.assert_array_equal(
            np.asarray(books[layer]["kernel"].values), np.asarray(want[layer]["kernel"].values)
        )
        np.testing.assert_array_equal(np.asarray(books[layer]["bias"]), dense[layer]["bias"])
    m = results["metrics"]
    assert abs(m["val_accuracy"] - m["dense_val_accuracy"]) <= 0.02  # int8: a small change
    assert results["codec"]["file_bytes"] < 0.4 * 4 * m["param_count"]  # float32: 4 B each
    assert m["export_max_abs_diff"] < 1e-4  # the export runs the int8 kernels


def test_a_rerun_restores_quantize_and_a_new_bit_width_reruns_it(rtn_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(rtn_run[0], out)
    first = rtn_run[1]
    again = run_experiment(config_from_dict(MLP), out, progress=False, report=False)
    assert "quantize" in again["cached"] and again["metrics"] == first["metrics"]
    four = config_from_dict({**MLP, "quantize": {"method": "rtn", "bits": 4}})
    third = run_experiment(four, out, progress=False, report=False)
    assert "train" in third["cached"] and "quantize" not in third["cached"]
    assert third["codec"]["file_bytes"] < first["codec"]["file_bytes"]
    shutil.rmtree(out)


def test_jaxzip_auto_refuses_a_quantize_section(tmp_path):
    with pytest.raises(ConfigError, match=r"jaxzip auto chooses each kernel's bits itself"):
        jz.pipeline.run_auto(config_from_dict(MLP), tmp_path, max_drop_pp=1.0)
