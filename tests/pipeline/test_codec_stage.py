"""Tests for jaxzip/pipeline/_codec_stage.py and the [kmeans] / [codec] config sections.

Tiny runs on scikit-learn's digits: an MLP with one hidden layer of 32 units and
SmallCNN, 1 epoch each.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.config import (
    CodecConfig,
    ExperimentConfig,
    FieldError,
    KMeansConfig,
    apply_overrides,
    load_config,
)
from jaxzip.pipeline import (
    PARAMS_FILE,
    RESULTS_FILE,
    RunState,
    default_stages,
    encode_stage,
    run_experiment,
)

TINY = ["model.name=mlp", "model.widths=[32]", "train.epochs=1", "train.learning_rate=0.01"]


def _tiny(*extra: str) -> ExperimentConfig:
    return apply_overrides(load_config(), [*TINY, *extra])


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _flat(tree) -> dict[str, np.ndarray]:
    return {p: np.asarray(x) for p, x in jz.paths.leaves_with_paths(tree)}


@pytest.fixture(scope="module")
def pruned_kmeans_run(tmp_path_factory) -> tuple[Path, dict]:
    """Train 1 epoch, prune to 80%, 3-bit k-means with 1 epoch of fine-tuning, encode."""
    out = tmp_path_factory.mktemp("dc")
    cfg = _tiny(
        "prune.sparsity=0.8",
        "kmeans.dense_bits=3",
        "kmeans.finetune_epochs=1",
        "kmeans.learning_rate=0.01",
    )
    results = run_experiment(cfg, out, progress=False, report=False)
    return out, results


# --- config ----------------------------------------------------------------------------


def test_sections_are_optional_and_defaults_are_as_documented():
    cfg = ExperimentConfig()
    assert cfg.kmeans is None and cfg.codec is None
    k = KMeansConfig()
    assert (k.dense_bits, k.conv_bits, k.where) == (5, 8, ".*/kernel")
    assert CodecConfig() == CodecConfig(file="model.jz", write=True)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dense_bits": 0}, "dense_bits"),
        ({"dense_bits": 9}, "dense_bits"),
        ({"conv_bits": 9}, "conv_bits"),
        ({"iters": 0}, "iters"),
        ({"finetune_epochs": -1}, "finetune_epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"where": "("}, "where"),
        ({"where": ""}, "where"),
        ({"unshared_bits": 1}, r"unshared_bits: expected an integer 0 or in \[2, 8\], got 1"),
        ({"unshared_bits": 9}, "unshared_bits"),
        ({"distill_alpha": -0.1}, r"distill_alpha: expected a number in \[0.0, 1.0\], got -0.1"),
        ({"distill_temperature": 0.0}, "distill_temperature: expected a number > 0.0"),
    ],
)
def test_kmeans_config_rejects_bad_values(kwargs, name):
    with pytest.raises(FieldError, match=name):
        KMeansConfig(**kwargs)


@pytest.mark.parametrize("file", ["", "a/b.jz", "../x", ".hidden"])
def test_codec_config_rejects_paths(file):
    with pytest.raises(FieldError, match="file"):
        CodecConfig(file=file)


def test_toml_sections_load_and_validate(write_config):
    cfg = load_config(
        write_config("""
        [kmeans]
        dense_bits = 4
        finetune_epochs = 0
        [codec]
        file = "m.jz"
        """)
    )
    assert cfg.kmeans == KMeansConfig(dense_bits=4, finetune_epochs=0)
    assert cfg.codec == CodecConfig(file="m.jz")
    with pytest.raises(ValueError, match=r"kmeans\.conv_bits"):
        load_config(write_config("[kmeans]\nconv_bits = 12\n"))
    with pytest.raises(ValueError, match="kmeans"):
        load_config(write_config("[kmeans]\nbits = 4\n"))


def test_stage_order():
    names = lambda cfg: [s.name for s in default_stages(cfg)]  # noqa: E731
    assert names(_tiny("prune.sparsity=0.5", "kmeans.dense_bits=4"))[3:] == [
        "evaluate_dense",
        "prune",
        "kmeans",
        "evaluate",
        "encode",
    ]
    assert names(_tiny("kmeans.dense_bits=4", "codec.write=false"))[-1] == "evaluate"
    assert names(_tiny("codec.file=x.jz"))[-2:] == ["evaluate", "encode"]  # float params
    assert "encode" not in names(_tiny())


# --- runs -------------------------------------------------------------------------------


def test_file_decodes_to_the_evaluated_params(pruned_kmeans_run):
    out, results = pruned_kmeans_run
    evaluated = _npz(out / PARAMS_FILE)  # the params evaluate saw (decoded codebooks)
    loaded = jz.codec.load(out / "model.jz")
    decoded = _flat(jz.quant.dequantize_params(loaded))
    assert decoded.keys() == evaluated.keys()
    for path, w in evaluated.items():
        np.testing.assert_array_equal(decoded[path], w)
    assert isinstance(loaded["Dense_0"]["kernel"], jz.quant.KMeansArray)
    assert loaded["Dense_0"]["kernel"].bits == 3
    # 3 bits: at most 8 shared values per kernel
    assert np.unique(evaluated["Dense_0/kernel"]).size <= 8 + 1
    # the reported test error is the file's model's
    splits = jz.data.load_splits("digits", val_fraction=0.1, seed=0)
    apply_fn = jz.models.linen_apply_fn(jz.models.MLP((32,), num_classes=10))
    m = jz.train.evaluate(
        apply_fn, jz.quant.dequantize_params(loaded), splits.test, batch_size=1000
    )
    assert results["metrics"]["test_errors"] == int(m["errors"])


def test_ratio_is_four_bytes_per_param_over_file_bytes(pruned_kmeans_run):
    out, _ = pruned_kmeans_run
    on_disk = json.loads((out / RESULTS_FILE).read_text())
    nbytes = (out / "model.jz").stat().st_size
    n = 64 * 32 + 32 + 32 * 10 + 10
    assert on_disk["metrics"]["file_bytes"] == nbytes == on_disk["codec"]["file_bytes"]
    assert on_disk["metrics"]["param_count"] == n
    assert on_disk["metrics"]["compression_ratio"] == pytest.approx(4 * n / nbytes, rel=1e-12)
    rows = on_disk["codec"]["size_report"]["leaves"]
    assert {r["path"] for r in rows} == set(_npz(out / PARAMS_FILE))
    assert {r["kind"] for r in rows if r["path"].endswith("kernel")} == {"kmeans"}


def test_pruned_zeros_stay_zero_through_finetuning(pruned_kmeans_run):
    out, results = pruned_kmeans_run
    evaluated = _npz(out / PARAMS_FILE)
    nonzeros = sum(int(np.count_nonzero(evaluated[p])) for p in evaluated if p.endswith("kernel"))
    assert nonzeros == results["stages"]["prune"]["nonzeros"]
    assert results["metrics"]["kmeans_finetune_epochs"] == 1


def test_params_from_a_pruned_file_masks_its_exact_zeros(tmp_path, pruned_kmeans_run):
    src, _ = pruned_kmeans_run
    params = _npz(src / PARAMS_FILE)
    params["Dense_1/bias"][:3] = 0.0  # a zero outside kmeans.where stays zero too
    pruned = tmp_path / "pruned.npz"
    np.savez(pruned, **params)
    cfg = _tiny(
        "train.epochs=0",
        f"model.params_from={json.dumps(str(pruned))}",
        "kmeans.dense_bits=2",
        "kmeans.finetune_epochs=1",
        "kmeans.learning_rate=0.05",  # large: centroids and biases move a lot
        "codec.file=z.jz",
    )
    run_experiment(cfg, tmp_path / "out", progress=False, report=False)
    after = _npz(tmp_path / "out" / PARAMS_FILE)
    for path, w in params.items():
        np.testing.assert_array_equal(after[path] == 0, w == 0, err_msg=path)
    assert not np.array_equal(after["Dense_1/bias"], params["Dense_1/bias"])  # it did train
    assert (tmp_path / "out" / "z.jz").exists() and not (tmp_path / "out" / "model.jz").exists()


def test_conv_and_dense_kernels_get_their_own_bits(tmp_path):
    cfg = apply_overrides(
        load_config(),
        ["train.epochs=1", "kmeans.conv_bits=3", "kmeans.dense_bits=2", "kmeans.finetune_epochs=0"],
    )
    results = run_experiment(cfg, tmp_path, progress=False, report=False)
    loaded = jz.codec.load(tmp_path / "model.jz")
    bits = {
        jz.paths.keystr(kp): b.bits
        for kp, b in __import__("jax").tree_util.tree_flatten_with_path(
            loaded, is_leaf=jz.quant.is_quantized
        )[0]
        if jz.quant.is_quantized(b)
    }
    assert bits and all(b == (3 if "Conv" in p else 2) for p, b in bits.items())
    assert any("Conv" in p for p in bits) and any("Dense" in p for p in bits)
    assert results["kmeans"]["layers"].keys() == bits.keys()


def test_unshared_bits_store_the_biases_as_int8_and_the_file_is_the_evaluated_model(tmp_path):
    cfg = _tiny("kmeans.dense_bits=3", "kmeans.finetune_epochs=1", "kmeans.unshared_bits=8")
    results = run_experiment(cfg, tmp_path, progress=False, report=False)
    loaded = jz.codec.load(tmp_path / "model.jz")
    for layer in ("Dense_0", "Dense_1"):
        assert isinstance(loaded[layer]["kernel"], jz.quant.KMeansArray)
        bias = loaded[layer]["bias"]
        assert isinstance(bias, jz.quant.QArray) and bias.bits == 8 and bias.scale.size == 1
    evaluated = _npz(tmp_path / PARAMS_FILE)  # encode_stage also checks this, bit for bit
    for path, w in _flat(jz.quant.dequantize_params(loaded)).items():
        np.testing.assert_array_equal(w, evaluated[path])
    assert results["metrics"]["kmeans_unshared_bits"] == 8
    assert set(results["kmeans"]["layers"]) == {"Dense_0/kernel", "Dense_1/kernel"}


def test_encode_fails_loudly_when_the_file_is_not_the_evaluated_model(tmp_path):
    books = jz.quant.kmeans_params({"w": jnp.array([0.0, 1.0, 2.0, 3.0])}, bits=1, where="w")
    cfg = ExperimentConfig(codec=CodecConfig())
    ctx = RunState(out_dir=tmp_path, books=books, params={"w": jnp.array([0.0, 1.0, 2.0, 3.0])})
    with pytest.raises(RuntimeError, match="does not decode to the evaluated params"):
        encode_stage(cfg, ctx)
    ok = ctx.updated({"params": jz.quant.dequantize_params(books)})
    _updates, metrics = encode_stage(cfg, ok)
    assert metrics["file_bytes"] == (tmp_path / "model.jz").stat().st_size


def test_kmeans_where_selecting_nothing_is_a_config_error(tmp_path):
    cfg = _tiny("kmeans.where=nothing/here")
    with pytest.raises(ValueError, match=r"kmeans\.where"):
        run_experiment(cfg, tmp_path, progress=False, report=False)
    assert not (tmp_path / "model.jz").exists()


def test_centroid_finetuning_distills_from_the_model_before_weight_sharing():
    # the teacher is the shared model itself: its outputs equal the student's, so with
    # alpha=1 (the KD term only) every gradient is zero and no centroid moves; on the
    # labels (alpha=0) they do. The default teacher is the run state's params.
    from dataclasses import replace

    from jaxzip.pipeline._codec_stage import finetune_codebooks

    cfg = _tiny("kmeans.dense_bits=2", "kmeans.finetune_epochs=1", "kmeans.learning_rate=0.01")
    state = RunState(out_dir=Path("unused"), progress=False)
    for stage in default_stages(cfg)[:2]:  # data, model
        state = state.updated(stage.run(cfg, state)[0])
    books = jz.quant.kmeans_params(state.params, bits=2, where=".*/kernel")
    shared = jz.quant.dequantize_params(books)
    keep = jax.tree.map(lambda x: jnp.ones(jnp.shape(x), bool), state.params)
    moved = {}
    for alpha, teacher in ((0.0, None), (1.0, None), (1.0, state.params)):
        kmeans = replace(cfg.kmeans, distill_alpha=alpha, distill_temperature=2.0)
        tuned = finetune_codebooks(
            cfg, state.updated({"params": shared}), books, keep, kmeans=kmeans, teacher=teacher
        )
        diffs = jax.tree.map(
            lambda a, b: float(jnp.max(jnp.abs(a - b))), jz.quant.dequantize_params(tuned), shared
        )
        moved[alpha, teacher is None] = max(jax.tree.leaves(diffs))
    assert moved[0.0, True] > 1e-4
    assert moved[1.0, True] < 1e-6  # taught by the shared model: nothing to learn
    assert moved[1.0, False] > 1e-4  # taught by the float model: the centroids move towards it
