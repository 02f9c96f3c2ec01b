"""Tests for jaxzip/config/_names.py: the one name -> object table, make_optimizer, make_model."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxzip as jz
from jaxzip import ConfigError
from jaxzip.config import NAMES, lookup, make_model, make_optimizer, names
from jaxzip.quant import QuantSpec, dequantize_params, quantize_params

PARAMS = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
ZERO_GRADS = {"Dense_0": {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}}


def _opt(**kwargs):
    args = {"name": "sgd", "learning_rate": 0.1, "schedule": "constant", "total_steps": 10}
    return make_optimizer(**{**args, **kwargs})


def _lr_at(tx, step, grad=1.0):
    """The learning rate at ``step`` of a momentum-free SGD, read off its update."""
    params = {"w": jnp.zeros(1)}
    state = tx.init(params)
    for _ in range(step):
        _, state = tx.update({"w": jnp.zeros(1)}, state, params)
    updates, _ = tx.update({"w": jnp.full(1, grad)}, state, params)
    return -float(updates["w"][0]) / grad


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_weight_decay_touches_kernels_only(name):
    tx = _opt(name=name, weight_decay=0.5, momentum=0.0)
    updates, _ = tx.update(ZERO_GRADS, tx.init(PARAMS), PARAMS)
    assert np.all(np.asarray(updates["Dense_0"]["kernel"]) < 0)
    np.testing.assert_array_equal(updates["Dense_0"]["bias"], 0.0)


def test_sgd_l2_decay_hand_worked():
    tx = _opt(weight_decay=0.5, momentum=0.0)  # update = -lr * (grad + wd * w) = -0.1 * 0.5
    updates, _ = tx.update(ZERO_GRADS, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["Dense_0"]["kernel"], -0.05, rtol=1e-6)


def test_no_decay_means_zero_update_for_zero_grads():
    for name in ("sgd", "adam", "adamw"):
        tx = _opt(name=name)
        updates, _ = tx.update(ZERO_GRADS, tx.init(PARAMS), PARAMS)
        np.testing.assert_array_equal(updates["Dense_0"]["kernel"], 0.0)


def test_sgd_nesterov_momentum_accumulates():
    # Nesterov: t_k = g + m t_{k-1}; update = -lr (g + m t_k). With g = 1, m = 0.5, lr = 0.1:
    # t_1 = 1, u_1 = -0.1 * 1.5; t_2 = 1.5, u_2 = -0.1 * 1.75.
    tx = _opt(momentum=0.5)
    params = {"w": jnp.zeros(1)}
    state = tx.init(params)
    u1, state = tx.update({"w": jnp.ones(1)}, state, params)
    u2, _ = tx.update({"w": jnp.ones(1)}, state, params)
    np.testing.assert_allclose([u1["w"][0], u2["w"][0]], [-0.15, -0.175], rtol=1e-6)


def test_schedules():
    assert _lr_at(_opt(schedule="constant", momentum=0.0), 7) == pytest.approx(0.1)
    cosine = _opt(schedule="cosine", momentum=0.0, total_steps=10)
    assert _lr_at(cosine, 0) == pytest.approx(0.1)
    assert _lr_at(cosine, 5) == pytest.approx(0.05, rel=1e-5)
    assert _lr_at(cosine, 10) == pytest.approx(0.0, abs=1e-8)
    warm = _opt(schedule="warmup_cosine", momentum=0.0, total_steps=10, warmup_steps=4)
    assert _lr_at(warm, 0) == pytest.approx(0.0, abs=1e-8)
    assert _lr_at(warm, 2) == pytest.approx(0.05, rel=1e-5)
    assert _lr_at(warm, 4) == pytest.approx(0.1, rel=1e-5)
    assert _lr_at(warm, 10) == pytest.approx(0.0, abs=1e-8)


def test_returns_a_gradient_transformation():
    assert isinstance(_opt(name="adamw", weight_decay=1e-4), optax.GradientTransformation)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "rmsprop"}, r"name must be one of \['sgd', 'adam', 'adamw'\], got 'rmsprop'"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"learning_rate": float("inf")}, "learning_rate must be finite"),
        ({"learning_rate": "0.1"}, "learning_rate must be a number"),
        ({"total_steps": 0}, "total_steps must be at least 1"),
        ({"total_steps": 10.0}, "total_steps must be an int"),
        ({"warmup_steps": -1}, "warmup_steps must be at least 0"),
        ({"schedule": "warmup_cosine"}, "1 <= warmup_steps < total_steps"),
        ({"schedule": "warmup_cosine", "warmup_steps": 10}, "1 <= warmup_steps < total_steps"),
        ({"warmup_steps": 3}, "warmup_steps=3 needs schedule='warmup_cosine'"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"momentum": True}, "momentum must be a number"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        _opt(**kwargs)


def test_the_table_lists_every_config_name():
    assert names("optimizer") == ("sgd", "adam", "adamw")
    assert names("schedule") == ("constant", "cosine", "warmup_cosine")
    assert names("model") == ("mlp", "lenet_300_100", "lenet5", "small_cnn", "transformer")
    assert names("allocation") == ("global", "uniform", "erk")
    assert names("strategy") == ("greedy", "optuna")
    assert lookup("strategy", "optuna", where="s") == jz.auto.Optuna()
    assert lookup("allocation", "global", where="a") == jz.prune.Global()
    with pytest.raises(TypeError):
        NAMES["model"]["resnet"] = None  # read-only: no registry to patch


@pytest.mark.parametrize(
    ("kind", "name", "match"),
    [
        ("strategy", "sa", r"strategy must be one of \['greedy', 'optuna'\], got 'sa'"),
        ("model", None, r"must be one of \['mlp', .*got None"),
        ("allocation", "ERK", "got 'ERK'"),
    ],
)
def test_lookup_unknown_names(kind, name, match):
    with pytest.raises(ConfigError, match=match):
        lookup(kind, name, where=kind)


def test_make_model():
    assert make_model("mlp", widths=(4,)) == jz.models.MLP((4,))
    assert make_model("lenet_300_100", num_classes=5) == jz.models.MLP((300, 100), num_classes=5)
    assert make_model("lenet5") == jz.models.LeNet5()
    assert make_model("small_cnn", num_classes=3) == jz.models.SmallCNN(num_classes=3)
    assert make_model("transformer", d_model=8, num_heads=2) == jz.models.Transformer(
        d_model=8, num_heads=2
    )


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("vgg", {}, r"make_model: name must be one of \['mlp'"),
        ("lenet5", {"widths": (3,)}, r"unexpected argument\(s\) \['widths'\]"),
        ("mlp", {}, r"needs widths=\(\.\.\.\)"),
        ("mlp", {"widths": (3,), "dropout_rate": 2.0}, "bad argument for model 'mlp'"),
        ("transformer", {"d_model": 10, "num_heads": 3}, "model 'transformer': .*divisible"),
        ("transformer", {"num_classes": 10}, r"unexpected argument\(s\) \['num_classes'\]"),
    ],
)
def test_make_model_bad_input(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_model(name, **kwargs)


def test_quantizers_take_specs_in_kernel_axes_and_say_whether_they_calibrate():
    """The "rtn" quantizer is quantize_params with the given specs (it reads no batches);
    "gptq" reads them."""
    w = jax.random.normal(jax.random.key(0), (8, 4))
    params = {"w": w}
    fwd = lambda p, x: x @ p["w"]  # noqa: E731
    batches = [jax.random.normal(jax.random.key(1), (16, 8))]
    layouts = jz.layout.trace_layouts(fwd, params, batches[0])
    specs = {"w": QuantSpec(bits=4, axes=(1,), group_axis=0)}
    rtn, gptq = lookup("quantizer", "rtn", where="m"), lookup("quantizer", "gptq", where="m")
    assert (rtn.calibrated, gptq.calibrated) == (False, True)
    options = {"layouts": layouts, "damp": 0.01, "act_order": False}
    got = rtn.quantize(fwd, params, None, specs, **options)  # batches never read
    want = quantize_params(params, [(re.escape("w"), specs["w"])])
    np.testing.assert_array_equal(got["w"].values, want["w"].values)
    q = gptq.quantize(fwd, params, batches, specs, **options)
    assert q["w"].bits == 4 and q["w"].scale.shape == want["w"].scale.shape
    # GPTQ lowers the calibration outputs' error below round to nearest's
    x = batches[0]
    err = lambda p: float(jnp.sum((fwd(dequantize_params(p), x) - fwd(params, x)) ** 2))  # noqa: E731
    assert err(q) < err(want)
    assert names("quantizer") == ("gptq", "rtn")
