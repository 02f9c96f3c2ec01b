"""Tests for jaxzip/prune/_compact.py: compacted Dense/Conv chains compute the masked model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.prune import Channel, apply_mask, compact, magnitude_mask, mask_channel_biases


class _MLP(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        for w in self.widths[:-1]:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.widths[-1])(x)


class _CNN(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        for c in self.widths[:2]:
            x = nn.relu(nn.Conv(c, (3, 3), padding="VALID")(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.widths[2])(x))
        return nn.Dense(self.widths[3])(x)


def _channel_mask(params, sparsity):
    mask = magnitude_mask(
        params, sparsity=sparsity, where=r"(Conv_\d|Dense_[01])/kernel", structure=Channel()
    )
    return mask


def test_mlp_compaction_equals_masked_model(mlp_params):
    layers = ["Dense_0", "Dense_1", "Dense_2"]
    mask = magnitude_mask(
        mlp_params, sparsity=0.5, where=r"Dense_[01]/kernel", structure=Channel(ord=2)
    )
    mask = mask_channel_biases(mlp_params, mask, layers=layers[:-1])
    small, widths = compact(mlp_params, mask, layers=layers)
    assert widths == (6, 4, 4)
    assert small["Dense_0"]["kernel"].shape == (16, 6)
    assert small["Dense_1"]["kernel"].shape == (6, 4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 16)), jnp.float32)
    want = _MLP((12, 8, 4)).apply({"params": apply_mask(mlp_params, mask)}, x)
    got = _MLP(widths).apply({"params": small}, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cnn_compaction_handles_conv_to_dense_flatten(cnn_params):
    layers = ["Conv_0", "Conv_1", "Dense_0", "Dense_1"]
    mask = _channel_mask(cnn_params, 0.5)
    mask = mask_channel_biases(cnn_params, mask, layers=layers[:-1])
    small, widths = compact(cnn_params, mask, layers=layers)
    assert widths == (2, 3, 4, 3)
    assert small["Dense_0"]["kernel"].shape == (2 * 2 * 3, 4)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(3, 14, 14, 1)), jnp.float32)
    want = _CNN((4, 6, 8, 3)).apply({"params": apply_mask(cnn_params, mask)}, x)
    got = _CNN(widths).apply({"params": small}, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unit_with_live_bias_is_kept_so_outputs_still_match(mlp_params):
    layers = ["Dense_0", "Dense_1", "Dense_2"]
    mask = magnitude_mask(mlp_params, sparsity=0.5, where=r"Dense_0/kernel", structure=Channel())
    small, widths = compact(mlp_params, mask, layers=layers)  # biases unmasked: nothing removable
    assert widths == (12, 8, 4)
    x = jnp.ones((2, 16))
    want = _MLP((12, 8, 4)).apply({"params": apply_mask(mlp_params, mask)}, x)
    np.testing.assert_allclose(_MLP(widths).apply({"params": small}, x), want, rtol=1e-6)


def test_bad_layers(mlp_params):
    mask = jax.tree.map(lambda p: jnp.ones(p.shape, bool), mlp_params)
    with pytest.raises(ValueError, match="Dense_9"):
        compact(mlp_params, mask, layers=["Dense_0", "Dense_9"])
    with pytest.raises(ValueError, match="inputs"):
        compact(mlp_params, mask, layers=["Dense_0", "Dense_2"])
    with pytest.raises(ValueError, match="distinct"):
        compact(mlp_params, mask, layers=["Dense_0", "Dense_0"])
