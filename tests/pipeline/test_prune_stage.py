"""Tests for jaxzip/pipeline/_prune_stage.py and the [prune] / params_from config it runs from.

Tiny runs: an MLP with one hidden layer of 32 units on scikit-learn's digits, 1 epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip import ConfigError
from jaxzip.cli import config_keys_help, main
from jaxzip.config import (
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)
from jaxzip.config._experiment import PruneConfig
from jaxzip.pipeline import PARAMS_FILE, RESULTS_FILE, RunState, default_stages, run_experiment
from jaxzip.pipeline._prune_stage import prune_stage

TINY = ["model.name=mlp", "model.widths=[32]", "train.epochs=1", "train.learning_rate=0.01"]
N_KERNEL = 64 * 32 + 32 * 10  # Dense_0/kernel + Dense_1/kernel on 8x8 digits
N_ALL = N_KERNEL + 32 + 10


def _tiny(*extra: str) -> ExperimentConfig:
    return apply_overrides(load_config(), [*TINY, *extra])


def _zeros(npz_path: Path) -> dict[str, int]:
    with np.load(npz_path, allow_pickle=False) as npz:
        return {k: int(np.sum(npz[k] == 0)) for k in npz.files}


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory) -> Path:
    """A dense tiny MLP trained for one epoch; its output directory."""
    out = tmp_path_factory.mktemp("dense")
    run_experiment(_tiny(), out, progress=False, report=False)
    return out


# --- config ----------------------------------------------------------------------------


def test_prune_section_is_optional_and_defaults_are_valid():
    assert ExperimentConfig().prune is None
    p = PruneConfig()
    assert (p.where, p.allocation, p.rounds) == (".*/kernel", "global", 1)
    cfg = config_from_dict({"prune": {"sparsity": 0.5, "rounds": 3, "allocation": "erk"}})
    assert cfg.prune == PruneConfig(sparsity=0.5, rounds=3, allocation="erk")


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"sparsity": 1.0}, "prune.sparsity: expected a number in [0.0, 1.0), got 1.0"),
        ({"sparsity": -0.1}, "prune.sparsity: expected a number in [0.0, 1.0)"),
        ({"allocation": "magnitude"}, "prune.allocation: expected one of 'global', 'uniform'"),
        ({"rounds": 0}, "prune.rounds: expected an integer >= 1, got 0"),
        ({"epochs_per_round": -1}, "prune.epochs_per_round: expected an integer >= 0"),
        ({"learning_rate": 0}, "prune.learning_rate: expected a number > 0.0"),
        ({"distill_alpha": 1.5}, "prune.distill_alpha: expected a number in [0.0, 1.0], got 1.5"),
        ({"distill_temperature": 0}, "prune.distill_temperature: expected a number > 0.0"),
        ({"where": "Dense_(0"}, "prune.where: expected a string (non-empty), (a valid regular"),
        ({"sparsty": 0.5}, "did you mean prune.sparsity?"),
    ],
)
def test_bad_prune_values_name_the_key(table, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict({"prune": table}, source="x.toml")
    assert needle in str(e.value) and str(e.value).startswith("x.toml: prune.")


def test_epochs_zero_needs_params_from():
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer >= 1, got 0 \(0 "):
        ExperimentConfig(train=TrainConfig(epochs=0))
    with pytest.raises(ConfigError, match=r"--set train\.epochs: .*model\.params_from"):
        apply_overrides(load_config(), ["train.epochs=0"])
    cfg = ExperimentConfig(model=ModelConfig(params_from="p.npz"), train=TrainConfig(epochs=0))
    assert cfg.train.epochs == 0
    with pytest.raises(ConfigError, match=r"train\.epochs: expected an integer >= 0, got -1"):
        apply_overrides(load_config(), ["train.epochs=-1", "model.params_from=p.npz"])


def test_help_lists_the_new_keys():
    text = config_keys_help()
    assert "  [prune]" in text
    for key in ("sparsity = 0.9", 'where = ".*/kernel"', 'allocation = "global"', "rounds = 1"):
        assert key in text
    assert 'params_from = ""' in text and '"global", "uniform", "erk"' in text


def test_stages_with_prune():
    names = [s.name for s in default_stages(_tiny("prune.sparsity=0.5"))]
    assert names == ["data", "model", "train", "evaluate_dense", "prune", "evaluate"]


# --- params_from -----------------------------------------------------------------------


def test_params_from_round_trip_and_uniform_exactness(dense_run, tmp_path):
    dense = json.loads((dense_run / RESULTS_FILE).read_text())["metrics"]
    cfg = _tiny(
        "train.epochs=0",
        f"model.params_from={json.dumps(str(dense_run / PARAMS_FILE))}",
        "prune.sparsity=0.5",
        "prune.allocation=uniform",
        "prune.epochs_per_round=0",
    )
    results = run_experiment(cfg, tmp_path, progress=False, report=False)
    m = results["metrics"]
    # the loaded params are the dense run's: the same test metrics before pruning
    assert m["dense_test_errors"] == dense["test_errors"]
    assert m["dense_test_accuracy"] == dense["test_accuracy"]
    assert m["epochs"] == 0 and results["history"] == [] and m["retrain_epochs"] == 0
    # no retraining: each weight is the loaded one or zero; uniform = exactly half per kernel
    with np.load(dense_run / PARAMS_FILE) as a, np.load(tmp_path / PARAMS_FILE) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            kept = b[k] != 0
            np.testing.assert_array_equal(b[k][kept], a[k][kept])
            if k.endswith("kernel"):
                assert np.sum(~kept) == a[k].size // 2
                pruned_max, kept_min = np.abs(a[k][~kept]).max(), np.abs(a[k][kept]).min()
                assert pruned_max <= kept_min  # the smallest magnitudes went
            else:
                np.testing.assert_array_equal(b[k], a[k])
    assert m["sparsity[Dense_1/kernel]"] == 0.5 and m["sparsity"] == 0.5


def test_params_from_missing_or_mismatched(dense_run, tmp_path):
    missing = _tiny("model.params_from=nowhere/params.npz")
    with pytest.raises(ConfigError, match=r"model\.params_from: .*'nowhere/params\.npz'"):
        run_experiment(missing, tmp_path, progress=False, report=False)
    path = json.dumps(str(dense_run / PARAMS_FILE))
    wrong = _tiny("model.widths=[16]", f"model.params_from={path}")
    with pytest.raises(
        ConfigError, match=r"model\.params_from: .*'Dense_0/bias' expected shape \(16,\)"
    ):
        run_experiment(wrong, tmp_path, progress=False, report=False)


# --- the stage -------------------------------------------------------------------------


def test_exact_global_sparsity_in_saved_params(dense_run, tmp_path):
    path = json.dumps(str(dense_run / PARAMS_FILE))
    cfg = _tiny(
        "train.epochs=0",
        f"model.params_from={path}",
        "prune.sparsity=0.8",
        "prune.rounds=2",
        "prune.epochs_per_round=1",
    )
    results = run_experiment(cfg, tmp_path, progress=False, report=False)
    zeros = _zeros(tmp_path / PARAMS_FILE)
    pruned = zeros["Dense_0/kernel"] + zeros["Dense_1/kernel"]
    assert pruned == round(0.8 * N_KERNEL)  # exactly, counted in the saved file
    assert zeros["Dense_0/bias"] + zeros["Dense_1/bias"] < 42  # biases are not pruned
    m = results["metrics"]
    assert m["nonzeros"] == N_KERNEL - pruned
    assert m["sparsity"] == pytest.approx(pruned / N_KERNEL)
    assert m["overall_nonzeros"] == N_ALL - sum(zeros.values())
    assert m["round1_sparsity"] == pytest.approx(1 - 0.2**0.5, abs=1 / N_KERNEL)
    assert m["retrain_epochs"] == 2 and 0 <= m["round2_val_accuracy"] <= 1
    report = results["prune"]
    assert [r["round"] for r in report["rounds"]] == [1, 2]
    assert report["mask"]["nonzeros"] == m["nonzeros"]
    layers = report["selected"]["layers"]
    assert set(layers) == {"Dense_0/kernel", "Dense_1/kernel"}
    assert sum(v["nonzeros"] for v in layers.values()) == m["nonzeros"]
    assert report["flops"]["sparse"] == 2 * m["nonzeros"]
    assert "dense_test_error" in m and "test_error" in m


def _stage_ctx(cfg: ExperimentConfig) -> RunState:
    state = RunState(out_dir=Path("unused"), progress=False)
    for stage in default_stages(cfg)[:2]:  # data, model
        state = state.updated(stage.run(cfg, state)[0])
    return state


def test_pruned_weights_stay_zero_while_retraining(capsys):
    cfg = _tiny("prune.sparsity=0.6", "prune.rounds=1", "prune.epochs_per_round=2")
    ctx = _stage_ctx(cfg)
    before = ctx.params
    expected = jz.prune.magnitude_mask(
        before, sparsity=0.6, where=".*/kernel", allocation=jz.prune.Global()
    )
    updates, metrics = prune_stage(cfg, ctx)
    after = updates["params"]
    for m, b, a in zip(*(jax.tree.leaves(t) for t in (expected, before, after)), strict=True):
        m, b, a = np.asarray(m), np.asarray(b), np.asarray(a)
        assert np.all(a[~m] == 0.0)  # pruned: exactly zero after two epochs of SGD+momentum
        assert np.any(a[m] != b[m])  # kept: retrained
    assert jax.tree.all(jax.tree.map(jnp.array_equal, updates["mask"], expected))
    assert metrics["round1_sparsity"] == pytest.approx(round(0.6 * N_KERNEL) / N_KERNEL)
    assert "prune round 1/1: sparsity 0.6" in capsys.readouterr().err


def test_retraining_distills_from_the_model_before_pruning():
    # nothing pruned: the student starts as its teacher, so with alpha=1 (the KD term only)
    # every gradient is zero and retraining leaves it as it was; on the labels it moves
    moved = {}
    for alpha in (0.0, 1.0):
        cfg = _tiny(
            "prune.sparsity=0.0",
            "prune.epochs_per_round=1",
            f"prune.distill_alpha={alpha}",
            "prune.distill_temperature=2.0",
        )
        ctx = _stage_ctx(cfg)
        updates, _ = prune_stage(cfg, ctx)
        diffs = jax.tree.map(
            lambda a, b: float(jnp.max(jnp.abs(a - b))), updates["params"], ctx.params
        )
        moved[alpha] = max(jax.tree.leaves(diffs))
    assert moved[0.0] > 1e-3
    assert moved[1.0] < 1e-6


def test_distilled_retraining_keeps_pruned_weights_at_zero():
    cfg = _tiny("prune.sparsity=0.6", "prune.epochs_per_round=1", "prune.distill_alpha=0.5")
    updates, metrics = prune_stage(cfg, _stage_ctx(cfg))
    for m, a in zip(
        *(jax.tree.leaves(t) for t in (updates["mask"], updates["params"])), strict=True
    ):
        assert np.all(np.asarray(a)[~np.asarray(m)] == 0.0)
    assert metrics["round1_sparsity"] == pytest.approx(round(0.6 * N_KERNEL) / N_KERNEL)
    assert 0 <= metrics["round1_val_accuracy"] <= 1


def test_where_selecting_nothing_names_the_key():
    cfg = _tiny("prune.where=Conv_.*/kernel")
    ctx = _stage_ctx(cfg)
    with pytest.raises(ConfigError, match=r"prune\.where: .*Conv_"):
        prune_stage(cfg, ctx)


def test_cli_set_prune_sparsity(dense_run, tmp_path, capsys):
    path = json.dumps(str(dense_run / PARAMS_FILE))
    argv = ["run", *(a for s in TINY for a in ("--set", s))]
    argv += ["--set", "train.epochs=0", "--set", f"model.params_from={path}"]
    argv += ["--set", "prune.sparsity=0.7", "--set", "prune.epochs_per_round=0"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["prune", "target_sparsity", "0.7000"] in table
    assert load_config(tmp_path / "config.toml").prune.sparsity == 0.7
    zeros = _zeros(tmp_path / PARAMS_FILE)
    assert zeros["Dense_0/kernel"] + zeros["Dense_1/kernel"] == round(0.7 * N_KERNEL)
    assert main(["run", "--set", "prune.sparsity=1.5"]) == 2
    assert "prune.sparsity: expected a number in [0.0, 1.0)" in capsys.readouterr().err


def test_nbym_on_a_kernel_too_narrow_for_it_says_prune_where_can_leave_it_out():
    # the small CNN's first conv has one input channel: no 2:4 group fits along it
    sets = ["prune.method=sparsegpt", "prune.allocation=uniform", 'prune.structure="2:4"']
    cfg = apply_overrides(load_config(), [*sets, "prune.sparsity=0.5", "train.epochs=1"])
    with pytest.raises(ConfigError) as info:
        prune_stage(cfg, _stage_ctx(cfg))
    message = str(info.value)
    assert "prune.method = 'sparsegpt': Conv_0/kernel: NByM m=4 must divide the size 1" in message
    assert "prune.where '.*/kernel' chooses the kernels: leave that one out" in message
