"""Activation fake-quantization inside the reference models (activation QAT)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxzip as jz
from jaxzip.quant import QuantSpec, fake_quant

SPEC = QuantSpec(bits=4, signed=False, symmetric=False)


def _fq(x):
    return fake_quant(x, SPEC)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda aq: jz.models.lenet_300_100(act_quant=aq), (3, 28, 28, 1)),
        (lambda aq: jz.models.LeNet5(act_quant=aq), (3, 28, 28, 1)),
        (lambda aq: jz.models.SmallCNN(act_quant=aq), (3, 8, 8, 1)),
    ],
    ids=["lenet_300_100", "lenet5", "small_cnn"],
)
def test_quantizer_sees_every_weighted_layer_input(make, shape):
    seen = []

    def record(x):
        seen.append(x.shape)
        return x

    x = jnp.asarray(np.random.default_rng(0).uniform(size=shape), jnp.float32)
    float_model, recorded = make(None), make(record)
    params = jz.models.init_params(float_model, jax.random.key(0), x)
    out_float = float_model.apply({"params": params}, x)
    out_recorded = recorded.apply({"params": params}, x)
    np.testing.assert_array_equal(out_float, out_recorded)  # identity quantizer: same output
    assert len(seen) == len(params)  # one quantized input per Dense/Conv layer
    assert np.prod(seen[0]) == np.prod(shape)  # the network input itself is quantized too

    quantized = make(_fq).apply({"params": params}, x)
    assert not np.array_equal(quantized, out_float)  # 4-bit activations change the logits


def test_activation_qat_trains_with_straight_through_gradients():
    model = jz.models.MLP((16,), num_classes=2, act_quant=_fq)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(64, 2, 2, 1)).astype(np.float32)
    y = (x.reshape(64, -1).sum(1) > 2.0).astype(np.int32)
    params = jz.models.init_params(model, jax.random.key(0), jnp.asarray(x[:1]))
    apply_fn = jz.models.linen_apply_fn(model)
    tx = optax.adam(0.05)
    step = jz.train.make_train_step(apply_fn, tx)
    state = jz.train.init_state(params, tx)
    batch = {"x": x, "y": y}
    first = None
    for _ in range(60):
        state, metrics = step(state, batch, jax.random.key(0))
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < 0.7 * first
    grads = jax.grad(lambda p: apply_fn(p, jnp.asarray(x), train=False, key=None).sum())(params)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


def test_bad_act_quant():
    with pytest.raises(ValueError, match="act_quant must be None or a callable"):
        jz.models.MLP((4,), act_quant=3)
    with pytest.raises(ValueError, match="act_quant must be None or a callable"):
        jz.models.LeNet5(act_quant="int8")
