"""Tests for jaxzip/pipeline/_core_stages.py on text: a tiny KJV language model through `jaxzip run`.

The run (context 16, 4 steps, 8 + 8 held-out windows) reads ../shared/data/kjv through
``$JAXZIP_DATA_DIR`` (set under CI, where a skip fails).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxzip as jz
from jaxzip import ConfigError, DataError
from jaxzip.cli import main
from jaxzip.config import ExperimentConfig, config_from_dict, load_config, run_key, stage_names
from jaxzip.pipeline import RunState, run_experiment
from jaxzip.pipeline._core_stages import load_data

TINY = {
    "experiment": {"name": "kjv_tiny"},
    "data": {"name": "kjv", "seq_len": 16, "train_windows": 64, "held_out_windows": 8},
    "model": {"name": "transformer", "num_layers": 1, "d_model": 8, "num_heads": 2, "mlp_ratio": 1},
    "train": {"epochs": 1, "batch_size": 16, "learning_rate": 0.02, "clip_norm": 1.0},
    "codec": {"file": "lm.jz"},
    "export": {"file": "lm.jzx"},
}


@pytest.fixture(scope="module")
def kjv_run(tmp_path_factory, kjv_dir):
    """``(out, cfg, results)`` of the tiny run, or skip without the KJV text."""
    cfg = config_from_dict(TINY)
    out = tmp_path_factory.mktemp("kjv") / "run"
    return out, cfg, run_experiment(cfg, out, progress=False, report=False)


def _model_and_params(out: Path):
    module = jz.models.Transformer(num_layers=1, d_model=8, num_heads=2, mlp_ratio=1, max_len=16)
    like = jax.eval_shape(module.init, jax.random.key(0), np.zeros((1, 16), np.int32))["params"]
    return module, jz.train.load_params(out / "params.npz", like)


def test_bits_per_byte_are_the_library_evaluation_of_the_held_out_windows(kjv_run):
    out, _, results = kjv_run
    m = results["metrics"]
    splits = jz.data.load_splits("kjv", val_fraction=0.1, seed=0, seq_len=16, held_out_windows=8)
    module, params = _model_and_params(out)
    apply_fn = jz.models.linen_apply_fn(module)
    for part in ("val", "test"):
        r = jz.train.evaluate(apply_fn, params, getattr(splits, part))
        assert m[f"{part}_bits_per_byte"] == pytest.approx(r["bits_per_token"], rel=1e-5)
        assert m[f"{part}_accuracy"] == pytest.approx(r["accuracy"])
        assert m[f"{part}_errors"] == r["errors"] and r["count"] == 8 * 16
    # equal token counts: the whole held-out figure is the mean of the two halves
    both = (m["val_bits_per_byte"] + m["test_bits_per_byte"]) / 2
    assert m["held_out_bits_per_byte"] == pytest.approx(both, rel=1e-6)
    # 4 steps of Adam already beat the uniform 8 bits per byte
    assert m["held_out_bits_per_byte"] < 8.0
    assert (m["train_examples"], m["val_examples"], m["test_examples"]) == (64, 8, 8)


def test_training_ran_per_token_steps_and_reported_validation_bits(kjv_run):
    _, _, results = kjv_run
    assert results["metrics"]["steps"] == 64 // 16
    assert (
        results["metrics"]["param_count"]
        == 2 * 256 * 8
        + 256
        + 16 * 8
        + 1 * (4 * (8 * 8 + 8) + 2 * 2 * 8 + 2 * 8 * 8 + 8 + 8)
        + 2 * 8
    )
    (record,) = results["history"]
    assert record["val_bits_per_byte"] == pytest.approx(record["val_loss"] / math.log(2))
    assert math.isfinite(record["train_loss"])


def test_codec_file_and_export_hold_the_trained_model(kjv_run):
    out, _, results = kjv_run
    module, params = _model_and_params(out)
    loaded = jz.codec.load(out / "lm.jz")
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded, params))
    assert results["codec"]["file_bytes"] == (out / "lm.jz").stat().st_size
    e = results["export"]
    assert e["input_shape"] == [None, 16] and e["output_shape"] == [None, 16, 256]
    x = np.arange(3 * 16, dtype=np.int32).reshape(3, 16)
    want = jz.models.linen_apply_fn(module)(params, x, train=False, key=None)
    np.testing.assert_allclose(jz.deploy.load_exported(out / "lm.jzx")(x), want, atol=1e-5)


def test_rerun_restores_the_transformer_from_the_cache(kjv_run, tmp_path):
    out, cfg, first = kjv_run
    shutil.copytree(out, tmp_path / "run")
    again = run_experiment(cfg, tmp_path / "run", progress=False, report=False)
    assert again["cached"] == ["model", "train", "evaluate", "encode", "export"]
    assert again["metrics"]["held_out_bits_per_byte"] == first["metrics"]["held_out_bits_per_byte"]


def test_pruning_and_codebooks_retrain_on_token_windows(kjv_run, tmp_path):
    """[prune] (retrained, distilled from the model before pruning) and [kmeans] with a
    fine-tune on the tiny model: each round and fine-tune reports validation bits per byte,
    the library's evaluation of what it made, and the pruned weights stay zero in the file."""
    out, _, _ = kjv_run
    data = {k: dict(v) for k, v in TINY.items() if k not in ("codec", "export")}
    data["model"]["params_from"] = str(out / "params.npz")
    data["train"]["epochs"] = 0
    data["prune"] = {"sparsity": 0.5, "epochs_per_round": 1, "distill_alpha": 0.5}
    data["kmeans"] = {"dense_bits": 4, "finetune_epochs": 1, "learning_rate": 1e-3}
    run = tmp_path / "run"
    results = run_experiment(config_from_dict(data), run, progress=False, report=False)
    m = results["metrics"]
    module, _ = _model_and_params(out)
    apply_fn = jz.models.linen_apply_fn(module)
    splits = jz.data.load_splits("kjv", val_fraction=0.1, seed=0, seq_len=16, held_out_windows=8)
    pruned = jz.codec.load(next((run / "stages").glob("05-prune-*")) / "params.jz")
    r = jz.train.evaluate(apply_fn, pruned, splits.val)
    assert m["round1_val_bits_per_byte"] == pytest.approx(r["bits_per_token"], rel=1e-5)
    assert results["prune"]["rounds"][0]["epochs"] == 1
    books = jz.codec.load(run / "model.jz")
    decoded = jz.quant.dequantize_params(books)
    r = jz.train.evaluate(apply_fn, decoded, splits.val)
    assert m["kmeans_val_bits_per_byte"] == pytest.approx(r["bits_per_token"], rel=1e-5)
    assert "kmeans_val_bits_per_byte_before_finetune" in m
    assert m["sparsity"] == 0.5
    flat = dict(jz.paths.leaves_with_paths(decoded))
    for path, leaf in jz.paths.leaves_with_paths(pruned):
        if path.endswith("kernel"):  # zero where pruned, and still zero after the fine-tune
            assert np.all(np.asarray(flat[path])[np.asarray(leaf) == 0] == 0), path


def test_a_transformer_student_distills_on_token_windows(kjv_run, tmp_path):
    """[distill] with a transformer student on text: trained on the teacher's per-token
    distributions over the same windows, scored in bits per byte, exported, restored."""
    out, _, _ = kjv_run
    data = {k: dict(v) for k, v in TINY.items()}
    data["model"]["params_from"] = str(out / "params.npz")
    data["train"]["epochs"] = 0
    student = {"model": "transformer", "num_layers": 1, "d_model": 4, "num_heads": 2}
    data["distill"] = {**student, "mlp_ratio": 1, "epochs": 1, "learning_rate": 0.02}
    run = tmp_path / "run"
    cfg = config_from_dict(data)
    results = run_experiment(cfg, run, progress=False, report=False)
    m = results["metrics"]
    module = jz.models.Transformer(num_layers=1, d_model=4, num_heads=2, mlp_ratio=1, max_len=16)
    like = jax.eval_shape(module.init, jax.random.key(0), np.zeros((1, 16), np.int32))["params"]
    params = jz.train.load_params(run / "params.npz", like)
    splits = jz.data.load_splits("kjv", val_fraction=0.1, seed=0, seq_len=16, held_out_windows=8)
    r = jz.train.evaluate(jz.models.linen_apply_fn(module), params, splits.val)
    assert m["student_val_bits_per_byte"] == pytest.approx(r["bits_per_token"], rel=1e-5)
    assert m["val_bits_per_byte"] == pytest.approx(r["bits_per_token"], rel=1e-5)
    assert m["student_param_count"] == jz.models.param_count(params) < m["teacher_param_count"]
    assert m["export_max_abs_diff"] < 1e-4  # the exported file runs the student
    # `jaxzip export --config` builds what the run ends with: the student
    argv = ["export", "--config", str(run / "config.toml"), "--weights", str(run / "lm.jz")]
    assert main([*argv, "--out", str(tmp_path / "cli.jzx")]) == 0
    x = np.asarray(splits.val.x[:1])
    want = jz.models.linen_apply_fn(module)(params, x, train=False, key=None)
    got = jz.deploy.load_exported(tmp_path / "cli.jzx")(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # the teacher's distributions shape the student: trained on the labels alone, it differs
    labels = config_from_dict({**data, "distill": {**data["distill"], "alpha": 0.0}})
    alone = run_experiment(labels, tmp_path / "labels", progress=False, report=False)
    assert alone["metrics"]["student_val_bits_per_byte"] != m["student_val_bits_per_byte"]
    # a rerun restores the student (rebuilt with the data's context) from the cache
    again = run_experiment(cfg, run, progress=False, report=False)
    assert "distill" in again["cached"] and again["metrics"] == {
        **m,
        **{k: v for k, v in again["metrics"].items() if k.endswith("_s")},
    }


def _oneshot_run(kjv_run, tmp_path, prune):
    out, _, _ = kjv_run
    data = {k: dict(v) for k, v in TINY.items() if k not in ("codec", "export")}
    data["model"]["params_from"] = str(out / "params.npz")
    data["train"]["epochs"] = 0
    data["prune"] = {"allocation": "uniform", "epochs_per_round": 0, **prune}
    data["prune"]["calibration_examples"] = 32
    cfg = config_from_dict(data)
    results = run_experiment(cfg, tmp_path / "run", progress=False, report=False)
    module, params = _model_and_params(out)
    pruned = jz.train.load_params(tmp_path / "run" / "params.npz", params)
    return cfg, module, params, pruned, results


def test_sparsegpt_from_the_config_is_the_library_call_on_the_calibration_sample(kjv_run, tmp_path):
    cfg, module, params, pruned, results = _oneshot_run(
        kjv_run, tmp_path, {"method": "sparsegpt", "sparsity": 0.5}
    )
    apply_fn = jz.models.linen_apply_fn(module)
    splits = jz.data.load_splits("kjv", val_fraction=0.1, seed=0, seq_len=16, train_windows=64)
    perm = jax.random.permutation(run_key(cfg, "prune/calibration"), 64)
    idx = np.sort(np.asarray(perm)[:32])
    batches = [splits.train.x[idx[:16]], splits.train.x[idx[16:]]]
    want, _ = jz.prune.sparsegpt(
        lambda p, x: apply_fn(p, x, train=False, key=None),
        params,
        batches,
        sparsity=0.5,
        where=".*/kernel",
    )
    for (path, a), (_, b) in zip(
        jz.paths.leaves_with_paths(want), jz.paths.leaves_with_paths(pruned), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
    assert results["metrics"]["sparsity"] == 0.5


def test_wanda_two_of_four_along_each_kernels_input_axis(kjv_run, tmp_path):
    _, _, _, pruned, results = _oneshot_run(
        kjv_run, tmp_path, {"method": "wanda", "sparsity": 0.5, "structure": "2:4"}
    )
    kept = np.asarray(pruned["block_0"]["mlp_in"]["kernel"]) != 0  # (8 in, 8 out)
    assert (kept.reshape(2, 4, 8).sum(axis=1) == 2).all()
    kept = np.asarray(pruned["block_0"]["attn"]["out"]["kernel"]) != 0  # (2 heads, 4, 8 out)
    assert (kept.sum(axis=1) == 2).all()  # the last input axis: head_dim, one group of 4
    assert results["metrics"]["round1_val_bits_per_byte"] > 0


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"model": {"name": "mlp", "d_model": 8}},
            "model.d_model: expected 192 for model 'mlp' (only \"transformer\" takes it), got 8",
        ),
        (
            {"model": {"name": "transformer", "d_model": 10, "num_heads": 4}},
            "model.num_heads: expected a divisor of d_model = 10, got 4",
        ),
        (
            {"model": {"name": "mlp"}},
            "model.name: expected a model of tokens ['transformer'] "
            "for data.name = 'kjv', got 'mlp'",
        ),
        (
            {"data": {"name": "digits"}},
            "model.name: expected an image model, not one of "
            "['transformer'] for data.name = 'digits', got 'transformer'",
        ),
        (
            {"data": {"name": "digits", "train_windows": 5}, "model": {"name": "mlp"}},
            "data.train_windows: expected 0 for data.name 'digits'",
        ),
        ({"data": {"name": "kjv", "seq_len": 0}}, "data.seq_len: expected an integer in [1, 8192]"),
        ({"train": {"augment_shift": 2}}, "train.augment_shift: expected 0 for text data"),
        (
            {"distill": {"model": "mlp"}},
            "distill.model: expected a model of tokens ['transformer'] "
            "for data.name = 'kjv', got 'mlp'",
        ),
        (
            {"distill": {"model": "transformer", "augment_shift": 1}},
            "distill.augment_shift: expected 0 for text data",
        ),
        (
            {"distill": {"model": "transformer", "d_model": 6, "num_heads": 4}},
            "distill.num_heads: expected a divisor of d_model = 6, got 4",
        ),
        (
            {"model": {"name": "transformer", "input_dropout_rate": 0.1}},
            "model.input_dropout_rate: expected 0.0 for model 'transformer'",
        ),
    ],
)
def test_bad_text_configs_name_the_field(change, needle):
    data = {k: dict(v) for k, v in TINY.items()}
    data.update(change)  # each changed section replaced whole
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="t.toml")
    assert str(info.value).startswith("t.toml: ")
    assert needle in str(info.value)


def test_missing_kjv_directory_is_one_data_error(tmp_path):
    cfg = config_from_dict({**TINY, "data": {**TINY["data"], "data_dir": str(tmp_path)}})
    with pytest.raises(
        DataError, match=r"kjv: directory .* lacks kjv.txt.gz \(or the raw kjv.txt\)"
    ):
        load_data(cfg, RunState(out_dir=tmp_path))
    assert isinstance(cfg, ExperimentConfig)


def test_the_experiment_configs_load_with_their_stages():
    root = Path(__file__).resolve().parents[2] / "experiments"
    cfg = load_config(root / "kjv_transformer.toml")
    assert (cfg.data.name, cfg.model.name, cfg.data.seq_len) == ("kjv", "transformer", 128)
    assert stage_names(cfg) == ("data", "model", "train", "evaluate", "encode")
    steps = cfg.data.train_windows // cfg.train.batch_size * cfg.train.epochs
    assert steps == 1200
    cfg = load_config(root / "kjv_transformer_kmeans.toml")
    assert stage_names(cfg)[-5:] == ("evaluate_dense", "kmeans", "evaluate", "encode", "export")
    cfg = load_config(root / "kjv_gptq.toml")
    assert stage_names(cfg)[-5:] == ("evaluate_dense", "quantize", "evaluate", "encode", "export")
    assert (cfg.quantize.method, cfg.quantize.bits, cfg.quantize.group_size) == ("gptq", 4, 64)
    cfg = load_config(root / "kjv_prune.toml")
    assert stage_names(cfg)[-4:] == ("evaluate_dense", "prune", "evaluate", "encode")
    assert cfg.data.train_windows // cfg.train.batch_size * cfg.prune.epochs_per_round == 100
    cfg = load_config(root / "kjv_prune_gptq.toml")
    assert stage_names(cfg)[-5:] == ("evaluate_dense", "prune", "quantize", "evaluate", "encode")
    assert (cfg.prune.method, cfg.quantize.bits, cfg.quantize.symmetric) == ("sparsegpt", 4, True)
    cfg = load_config(root / "kjv_distill.toml")
    assert stage_names(cfg) == ("data", "model", "evaluate_dense", "distill", "evaluate")
    assert cfg.data.train_windows // cfg.train.batch_size * cfg.distill.epochs == 600
    assert (cfg.distill.num_layers, cfg.distill.d_model) == (2, cfg.model.d_model)
