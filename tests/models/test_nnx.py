"""Tests for jaxzip/models/_nnx.py: nnx models train through the same loop as linen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxzip.models import MLP, NnxMLP, init_params, nnx_apply_fn
from jaxzip.paths import leaves_with_paths
from jaxzip.train import evaluate, fit, init_state, make_train_step


def _split_with_numpy_params(seed=0, **kwargs):
    """``nnx.split`` of an NnxMLP whose params are drawn with numpy (no init compiles)."""
    abstract = nnx.eval_shape(lambda: NnxMLP(rngs=nnx.Rngs(0), **kwargs))
    graphdef, shapes = nnx.split(abstract, nnx.Param)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    return graphdef, params


def test_paths_and_shapes_match_the_linen_mlp():
    _, nnx_params = _split_with_numpy_params(widths=(5, 3), num_classes=4, in_features=12)
    linen = jax.eval_shape(
        lambda: init_params(MLP((5, 3), num_classes=4), jax.random.key(0), jnp.ones((1, 3, 4, 1)))
    )
    as_shapes = lambda tree: [(p, tuple(np.shape(v))) for p, v in leaves_with_paths(tree)]  # noqa: E731
    assert as_shapes(nnx_params) == as_shapes(linen)
    assert [p for p, _ in as_shapes(nnx_params)][-1] == "Dense_2/kernel"


def test_apply_fn_agrees_with_the_merged_module():
    graphdef, params = _split_with_numpy_params(widths=(4,), num_classes=3, in_features=6)
    model = nnx.merge(graphdef, params)
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 6, 1, 1)), jnp.float32)
    out = nnx_apply_fn(graphdef)(params, x, train=False, key=None)
    np.testing.assert_array_equal(out, model(x))
    # hand-worked: the same numbers as the explicit formula
    h = jax.nn.relu(x.reshape(2, 6) @ model.Dense_0.kernel[...] + model.Dense_0.bias[...])
    np.testing.assert_allclose(
        out, h @ model.Dense_1.kernel[...] + model.Dense_1.bias[...], rtol=1e-5
    )


def test_trains_through_make_train_step_and_evaluate(toy):
    ds = toy
    graphdef, params = _split_with_numpy_params(widths=(8,), num_classes=2, in_features=4)
    apply_fn = nnx_apply_fn(graphdef)
    tx = optax.sgd(0.5)
    step = make_train_step(apply_fn, tx)
    before = evaluate(apply_fn, params, ds)
    state = init_state(params, tx)
    batch = {"x": ds.x, "y": ds.y}
    for _ in range(30):
        state, metrics = step(state, batch, jax.random.key(0))
    after = evaluate(apply_fn, state.params, ds)
    assert isinstance(state.params, nnx.State)
    assert after["loss"] < before["loss"] / 2
    assert after["accuracy"] == 1.0
    assert float(metrics["accuracy"]) == 1.0


def test_fits_with_dropout_through_fit(toy):
    ds = toy
    graphdef, params = _split_with_numpy_params(
        widths=(16,), num_classes=2, in_features=4, dropout_rate=0.2
    )
    apply_fn = nnx_apply_fn(graphdef)
    state, history = fit(
        apply_fn,
        params,
        optax.adam(0.05),
        ds,
        epochs=3,
        batch_size=8,
        key=jax.random.key(0),
        progress=False,
    )
    assert int(state.step) == 12
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_dropout_needs_a_key():
    graphdef, params = _split_with_numpy_params(
        widths=(4,), num_classes=2, in_features=4, dropout_rate=0.5
    )
    apply_fn = nnx_apply_fn(graphdef)
    x = jnp.ones((2, 2, 2, 1))
    with pytest.raises(ValueError, match="needs key="):
        apply_fn(params, x, train=True, key=None)
    a = apply_fn(params, x, train=True, key=jax.random.key(0))
    b = apply_fn(params, x, train=True, key=jax.random.key(1))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(
        apply_fn(params, x, train=False, key=jax.random.key(0)),
        apply_fn(params, x, train=False, key=None),
    )


def test_input_dropout_zeroes_pixels_only_when_training():
    # one hidden unit that sums 15 pixels, no bias: dropped pixels show in its value
    graphdef, params = _split_with_numpy_params(
        widths=(1,), num_classes=1, in_features=15, input_dropout_rate=0.5
    )
    params = jax.tree.map(lambda p: jnp.full_like(p, 1.0 if p.ndim == 2 else 0.0), params)
    apply_fn = nnx_apply_fn(graphdef)
    x = jnp.ones((1, 3, 5, 1))
    np.testing.assert_array_equal(apply_fn(params, x, train=False, key=None), [[15.0]])
    # kept pixels are scaled by 1 / (1 - 0.5): the sum is 2 * (number kept), so even,
    # never the odd 15 of no dropout
    noisy = float(apply_fn(params, x, train=True, key=jax.random.key(3))[0, 0])
    assert noisy % 2 == 0
    with pytest.raises(ValueError, match=r"input_dropout_rate=0\.5 needs key="):
        apply_fn(params, x, train=True, key=None)
    # input dropout adds no params: the same tree as without it
    _, plain = _split_with_numpy_params(widths=(1,), num_classes=1, in_features=15)
    assert jax.tree.structure(params) == jax.tree.structure(plain)


def test_wrong_input_size():
    graphdef, params = _split_with_numpy_params(widths=(4,), num_classes=2, in_features=4)
    with pytest.raises(ValueError, match="in_features=4"):
        nnx_apply_fn(graphdef)(params, jnp.ones((1, 3, 3, 1)), train=False, key=None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"widths": (0,)},
        {"widths": 3},
        {"widths": (3,), "num_classes": 0},
        {"widths": (3,), "in_features": -1},
        {"widths": (3,), "dropout_rate": 1.0},
        {"widths": (3,), "dropout_rate": float("nan")},
        {"widths": (3,), "input_dropout_rate": 1.0},
        {"widths": (3,), "input_dropout_rate": True},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="NnxMLP"):
        NnxMLP(rngs=nnx.Rngs(0), **kwargs)


def test_nnx_apply_fn_rejects_non_graphdef():
    with pytest.raises(TypeError, match="GraphDef"):
        nnx_apply_fn(MLP((3,)))
