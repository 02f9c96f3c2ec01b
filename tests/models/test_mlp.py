"""Tests for jaxzip/models/_mlp.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.models import MLP, lenet_300_100, linen_apply_fn, param_count


def test_lenet_300_100_layers_and_count(param_shapes):
    params, shapes = param_shapes(lenet_300_100(), (1, 28, 28, 1))
    assert shapes == {
        "Dense_0": {"kernel": (784, 300), "bias": (300,)},
        "Dense_1": {"kernel": (300, 100), "bias": (100,)},
        "Dense_2": {"kernel": (100, 10), "bias": (10,)},
    }
    assert param_count(params) == 266_610


def test_hinton_teacher_and_student_counts(param_shapes):
    teacher, _ = param_shapes(MLP((1200, 1200), dropout_rate=0.5), (1, 28, 28, 1))
    student, _ = param_shapes(MLP((800, 800)), (1, 28, 28, 1))
    # 784*1200+1200 + 1200*1200+1200 + 1200*10+10 ; 784*800+800 + 800*800+800 + 800*10+10
    assert param_count(teacher) == 2_395_210
    assert param_count(student) == 1_276_810


def test_forward_shape_and_flattening(numpy_params):
    model = MLP((5, 4), num_classes=3)
    x = np.random.default_rng(1).uniform(size=(6, 2, 3, 1)).astype(np.float32)
    params = numpy_params(model, x.shape)
    logits = model.apply({"params": params}, x)
    assert logits.shape == (6, 3)
    # the same numbers as the flattened input through the hand-written MLP
    h = x.reshape(6, -1)
    for name in ("Dense_0", "Dense_1"):
        h = jax.nn.relu(h @ params[name]["kernel"] + params[name]["bias"])
    expected = h @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_empty_widths_is_a_linear_classifier():
    model = MLP((), num_classes=2)
    params = {
        "Dense_0": {"kernel": jnp.array([[1.0, -1.0], [2.0, 0.0]]), "bias": jnp.array([0.5, 0.0])}
    }
    x = jnp.array([[[[1.0], [1.0]]]])  # (1, 1, 2, 1) -> flattened [1, 1]
    np.testing.assert_array_equal(model.apply({"params": params}, x), [[3.5, -1.0]])


def test_dropout_only_when_training_with_a_key(numpy_params):
    model = MLP((64,), num_classes=4, dropout_rate=0.5)
    x = jnp.ones((2, 4, 4, 1))
    params = numpy_params(model, x.shape)
    apply_fn = linen_apply_fn(model)
    clean = apply_fn(params, x, train=False, key=None)
    np.testing.assert_array_equal(apply_fn(params, x, train=False, key=jax.random.key(1)), clean)
    noisy1 = apply_fn(params, x, train=True, key=jax.random.key(1))
    noisy1b = apply_fn(params, x, train=True, key=jax.random.key(1))
    noisy2 = apply_fn(params, x, train=True, key=jax.random.key(2))
    np.testing.assert_array_equal(noisy1, noisy1b)
    assert not np.allclose(noisy1, clean)
    assert not np.allclose(noisy1, noisy2)
    with pytest.raises(ValueError, match="dropout PRNG key"):
        apply_fn(params, x, train=True, key=None)


def test_input_dropout_zeroes_pixels_only_when_training():
    # one hidden unit that sums the input, no bias: dropped pixels show in its value
    model = MLP((1,), num_classes=1, input_dropout_rate=0.5)
    x = jnp.ones((1, 4, 4, 1))
    params = {
        "Dense_0": {"kernel": jnp.ones((16, 1)), "bias": jnp.zeros((1,))},
        "Dense_1": {"kernel": jnp.ones((1, 1)), "bias": jnp.zeros((1,))},
    }
    apply_fn = linen_apply_fn(model)
    np.testing.assert_array_equal(apply_fn(params, x, train=False, key=None), [[16.0]])
    noisy = float(apply_fn(params, x, train=True, key=jax.random.key(3))[0, 0])
    # kept pixels are scaled by 1 / (1 - 0.5): the sum is 2 * (number kept), and not all kept
    assert noisy % 2 == 0 and noisy != 16.0
    with pytest.raises(ValueError, match="dropout PRNG key"):
        apply_fn(params, x, train=True, key=None)


def test_input_dropout_adds_no_params(param_shapes):
    _, plain = param_shapes(MLP((5,)), (1, 3, 3, 1))
    _, dropped = param_shapes(MLP((5,), input_dropout_rate=0.2, dropout_rate=0.5), (1, 3, 3, 1))
    assert plain == dropped


def test_no_dropout_trains_without_a_key(numpy_params):
    model = MLP((3,), num_classes=2)
    x = jnp.ones((1, 2, 2, 1))
    params = numpy_params(model, x.shape)
    apply_fn = linen_apply_fn(model)
    np.testing.assert_array_equal(
        apply_fn(params, x, train=True, key=None), apply_fn(params, x, train=False, key=None)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": (0,)}, "widths"),
        ({"widths": 300}, "widths"),
        ({"widths": (3.5,)}, "widths"),
        ({"widths": (3,), "num_classes": 0}, "num_classes"),
        ({"widths": (3,), "dropout_rate": 1.0}, "dropout_rate"),
        ({"widths": (3,), "dropout_rate": -0.1}, "dropout_rate"),
        ({"widths": (3,), "dropout_rate": float("nan")}, "dropout_rate"),
        ({"widths": (3,), "input_dropout_rate": 1.0}, "input_dropout_rate"),
        ({"widths": (3,), "input_dropout_rate": True}, "input_dropout_rate"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_list_widths_become_a_tuple():
    assert MLP([3, 2]).widths == (3, 2)


def test_lenet_300_100_num_classes():
    assert lenet_300_100(num_classes=7) == MLP((300, 100), num_classes=7)
