"""Tests for jaxzip/config/_build.py: config sections into library objects."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.config import (
    ExperimentConfig,
    ExperimentSection,
    ModelConfig,
    TrainConfig,
    augment_of,
    config_arch,
    make_module,
    make_train_tx,
    run_key,
)


def _data(key: jax.Array) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


def test_run_key_is_the_seed_split_by_name():
    cfg = ExperimentConfig(experiment=ExperimentSection(seed=7))
    np.testing.assert_array_equal(_data(run_key(cfg, "train")), _data(run_key(cfg, "train")))
    assert not np.array_equal(_data(run_key(cfg, "train")), _data(run_key(cfg, "model")))
    other = ExperimentConfig(experiment=ExperimentSection(seed=8))
    assert not np.array_equal(_data(run_key(cfg, "train")), _data(run_key(other, "train")))


def _lrs(tx, steps: int) -> list[float]:
    """The step sizes SGD without momentum takes on a gradient of 1, step by step."""
    params, state, out = {"w": jnp.zeros(())}, None, []
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update({"w": jnp.ones(())}, state, params)
        out.append(-float(updates["w"]))
    return out


def test_make_train_tx_warms_up_then_decays_over_its_own_steps():
    t = TrainConfig(optimizer="sgd", momentum=0.0, schedule="warmup_cosine", warmup_epochs=1.0)
    lrs = _lrs(make_train_tx(t, learning_rate=1.0, epochs=2, steps_per_epoch=4), 8)
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])  # one epoch of linear warmup
    assert lrs[4] > lrs[5] > lrs[6] > lrs[7] > 0.0  # then cosine decay towards 0 at step 8


def test_make_train_tx_clips_by_the_global_norm_first():
    t = TrainConfig(optimizer="sgd", momentum=0.0, schedule="constant", clip_norm=0.5)
    tx = make_train_tx(t, learning_rate=1.0, epochs=1, steps_per_epoch=1)
    updates, _ = tx.update({"w": jnp.full((4,), 3.0)}, tx.init({"w": jnp.zeros(4)}))
    assert float(jnp.linalg.norm(updates["w"])) == pytest.approx(0.5, rel=1e-5)


def test_make_module_from_the_model_section():
    mlp = make_module(config_arch(ModelConfig(name="mlp", widths=[8]), 0), 10)
    assert type(mlp).__name__ == "MLP" and mlp.widths == (8,) and mlp.num_classes == 10
    lm = ModelConfig(name="transformer", d_model=8, num_heads=2, num_layers=1)
    module = make_module(config_arch(lm, 16), 256)
    assert (module.vocab_size, module.max_len, module.d_model) == (256, 16, 8)


def test_augment_of():
    assert augment_of(TrainConfig()) is None
    assert augment_of(TrainConfig(augment_shift=3)).pixels == 3
