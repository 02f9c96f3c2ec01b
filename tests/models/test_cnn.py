"""Tests for jaxzip/models/_cnn.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.models import LeNet5, SmallCNN, init_params, param_count


def test_lenet5_is_deep_compressions_431k_model(param_shapes):
    params, shapes = param_shapes(LeNet5(), (1, 28, 28, 1))
    assert shapes == {
        "Conv_0": {"kernel": (5, 5, 1, 20), "bias": (20,)},
        "Conv_1": {"kernel": (5, 5, 20, 50), "bias": (50,)},
        "Dense_0": {"kernel": (800, 500), "bias": (500,)},
        "Dense_1": {"kernel": (500, 10), "bias": (10,)},
    }
    # 520 + 25,050 + 400,500 + 5,010
    assert param_count(params) == 431_080


def test_lenet5_output_shape(param_shapes):
    model = LeNet5(num_classes=7)
    x = jnp.ones((3, 28, 28, 1))
    params, _ = param_shapes(model, x.shape)
    assert jax.eval_shape(model.apply, {"params": params}, x).shape == (3, 7)


def test_small_cnn_forward_and_count(numpy_params):
    model = SmallCNN()
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    params = numpy_params(model, x.shape)
    assert sorted(params) == ["Conv_0", "Conv_1", "Dense_0", "Dense_1"]
    assert param_count(params) == 13_706  # 160 + 4,640 + 8,256 + 650
    apply = jax.jit(model.apply)
    logits = apply({"params": params}, x)
    assert logits.shape == (2, 10)
    assert jnp.all(jnp.isfinite(logits))
    # examples are independent: one example alone gives the same logits
    single = apply({"params": params}, x[1:])
    assert jnp.allclose(single[0], logits[1], atol=1e-5)


@pytest.mark.parametrize("cls", [LeNet5, SmallCNN])
def test_rejects_non_image_input(cls):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        jax.eval_shape(lambda: init_params(cls(), jax.random.key(0), jnp.ones((2, 64))))


@pytest.mark.parametrize("cls", [LeNet5, SmallCNN])
@pytest.mark.parametrize("num_classes", [0, -1, 2.0, True])
def test_rejects_bad_num_classes(cls, num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        cls(num_classes=num_classes)
