"""Tests for jaxzip/train/_step.py."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip.train import TrainState, init_state, make_train_step


def _batch(ds):
    return {"x": ds.x, "y": ds.y}


def test_loss_decreases_on_a_separable_problem(toy, linear, linear_params):
    tx = optax.sgd(1.0)
    step = make_train_step(linear, tx)
    state = init_state(linear_params, tx)
    losses = []
    for _ in range(10):
        state, metrics = step(state, _batch(toy), jax.random.key(0))
        losses.append(float(metrics["loss"]))
    assert losses[0] == pytest.approx(np.log(2.0), rel=1e-6)  # zero weights: uniform softmax
    assert losses[-1] < 0.5 * losses[0]
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert float(metrics["accuracy"]) == 1.0
    assert int(state.step) == 10 and state.step.dtype == jnp.int32


def test_hand_worked_single_sgd_step():
    # logits = x @ w with w = 0: loss log 2, grad = x^T (softmax - onehot) / N
    apply_fn = lambda p, x, *, train, key: x.reshape(len(x), -1) @ p  # noqa: E731
    tx = optax.sgd(1.0)
    state = init_state(jnp.zeros((2, 2)), tx)
    batch = {"x": jnp.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]), "y": jnp.array([0, 1])}
    state, metrics = make_train_step(apply_fn, tx)(state, batch, jax.random.key(0))
    np.testing.assert_allclose(state.params, [[0.25, -0.25], [-0.25, 0.25]], rtol=1e-6)
    assert float(metrics["loss"]) == pytest.approx(np.log(2.0))
    assert float(metrics["accuracy"]) == 0.5  # ties: argmax picks class 0 for both


@pytest.mark.parametrize("check_finite", [False, True])
def test_does_not_retrace_on_the_second_call(toy, linear_params, check_finite):
    traces = []

    def counting_apply(params, x, *, train, key):
        traces.append(1)  # runs only while tracing
        return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]

    tx = optax.adam(0.1)
    step = make_train_step(counting_apply, tx, check_finite=check_finite)
    state = init_state(linear_params, tx)
    for i in range(3):
        batch = {"x": toy.x[8 * i : 8 * i + 8], "y": toy.y[8 * i : 8 * i + 8]}
        state, _ = step(state, batch, jax.random.key(i))
    assert len(traces) == 1


def test_jit_and_eager_agree(toy, linear):
    params = {
        "w": jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)), jnp.float32),
        "b": jnp.array([0.1, -0.1]),
    }
    tx = optax.sgd(0.5)
    batch = _batch(toy)
    jitted_state, jitted_metrics = make_train_step(linear, tx)(
        init_state(params, tx), batch, jax.random.key(3)
    )
    with jax.disable_jit():
        eager_state, eager_metrics = make_train_step(linear, tx)(
            init_state(params, tx), batch, jax.random.key(3)
        )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        jitted_state,
        eager_state,
    )
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(jitted_metrics[name], eager_metrics[name], rtol=1e-5)


def test_key_is_folded_with_the_step(toy, linear_params):
    def noisy_apply(params, x, *, train, key):
        return x.reshape(x.shape[0], -1) @ params["w"] + jax.random.normal(key, (x.shape[0], 2))

    tx = optax.sgd(0.0)  # params never change: only the key can change the loss
    step = make_train_step(noisy_apply, tx)
    batch, key = _batch(toy), jax.random.key(0)
    state0 = init_state(linear_params, tx)
    _, m0 = step(state0, batch, key)
    _, m0_again = step(init_state(linear_params, tx), batch, key)
    _, m5 = step(init_state(linear_params, tx)._replace(step=jnp.int32(5)), batch, key)
    assert float(m0["loss"]) == float(m0_again["loss"])
    assert float(m0["loss"]) != float(m5["loss"])


def test_callers_params_survive_donation(toy, linear, linear_params):
    tx = optax.sgd(1.0)
    state = init_state(linear_params, tx)
    make_train_step(linear, tx)(state, _batch(toy), jax.random.key(0))
    np.testing.assert_array_equal(linear_params["w"], np.zeros((4, 2)))  # still readable


def test_extra_batch_keys_are_ignored(toy, linear, linear_params):
    tx = optax.sgd(1.0)
    step = make_train_step(linear, tx)
    batch = {**_batch(toy), "index": np.arange(len(toy))}
    state, _ = step(init_state(linear_params, tx), batch, jax.random.key(0))
    assert int(state.step) == 1


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ((np.zeros((2, 4)), np.zeros(2, np.int32)), TypeError, "mapping with keys 'x' and 'y'"),
        ({"x": np.zeros((2, 4))}, ValueError, r"missing key\(s\) \['y'\]"),
        ({"inputs": np.zeros((2, 4)), "labels": np.zeros(2)}, ValueError, "'x'.*'y'"),
        ({"x": np.zeros((2, 4)), "y": np.zeros(2, np.float32)}, ValueError, "integer labels"),
        ({"x": np.zeros((3, 4)), "y": np.zeros(2, np.int32)}, ValueError, "leading axis"),
        ({"x": np.zeros((2, 4)), "y": np.zeros((2, 1, 1), np.int32)}, ValueError, r"shape \(N,\)"),
        (
            {"x": np.zeros((2, 4)), "y": np.zeros((2, 1), np.int32)},
            ValueError,
            r"per-token labels batch\['y'\] of shape \(2, 1\), batch\['x'\] must start with",
        ),
    ],
)
def test_bad_batches_fail_before_tracing(batch, error, match, linear_params):
    traces = []

    def apply_fn(params, x, *, train, key):
        traces.append(1)
        return x @ params["w"]

    tx = optax.sgd(1.0)
    step = make_train_step(apply_fn, tx)
    with pytest.raises(error, match=match):
        step(init_state(linear_params, tx), batch, jax.random.key(0))
    assert traces == []


def test_key_must_be_a_key(toy, linear, linear_params):
    tx = optax.sgd(1.0)
    with pytest.raises(TypeError, match=r"key must be a PRNG key such as jax\.random\.key"):
        make_train_step(linear, tx)(init_state(linear_params, tx), _batch(toy), None)


def test_bad_factory_arguments():
    with pytest.raises(TypeError, match="apply_fn"):
        make_train_step(None, optax.sgd(1.0))
    with pytest.raises(TypeError, match="tx"):
        make_train_step(lambda *a, **k: 0, "adam")
    with pytest.raises(TypeError, match="TrainState"):
        make_train_step(lambda *a, **k: 0, optax.sgd(1.0))({"w": 0}, {"x": 0, "y": 0}, None)


def test_init_state(linear_params):
    tx = optax.adam(0.1)
    state = init_state(linear_params, tx)
    assert isinstance(state, TrainState)
    assert state.step.shape == () and state.step.dtype == jnp.int32 and int(state.step) == 0
    assert state.params["w"] is not linear_params["w"]
    jax.tree.map(np.testing.assert_array_equal, state.params, linear_params)
    with pytest.raises(TypeError, match="GradientTransformation"):
        init_state(linear_params, "sgd")


# Sequence batches: tokens (N, T), per-token labels (N, T), logits (N, T, C).


def bigram_apply(params, x, *, train, key):
    """A bigram model as an ApplyFn: the logits of each token are a row of a table."""
    return params[x]


def _tokens(n=4, t=5, vocab=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, (n, t)).astype(np.int32)
    return {"x": x, "y": ((x + 1) % vocab).astype(np.int32)}


def test_sequence_batch_hand_worked_loss():
    # zero table: uniform over 6 tokens, log 6 per token; after one SGD step of 1.0 on
    # a single token pair (x=2 -> y=3), the row of 2 is (1/6 - onehot(3)) * -1.
    tx = optax.sgd(1.0)
    state = init_state(jnp.zeros((6, 6)), tx)
    batch = {"x": np.array([[2]], np.int32), "y": np.array([[3]], np.int32)}
    state, metrics = make_train_step(bigram_apply, tx)(state, batch, jax.random.key(0))
    assert float(metrics["loss"]) == pytest.approx(np.log(6.0))
    expected = np.zeros((6, 6))
    expected[2] = -1 / 6
    expected[2, 3] += 1.0
    np.testing.assert_allclose(state.params, expected, rtol=1e-6)


def test_sequence_batch_equals_the_flattened_classifier_batch():
    """Per-token loss averaged over tokens: (N, T) gives the same step as (N*T,) examples."""
    tx = optax.adam(0.1)
    table = jnp.asarray(np.random.default_rng(1).normal(size=(6, 6)), jnp.float32)
    seq = _tokens()
    flat = {"x": seq["x"].reshape(-1), "y": seq["y"].reshape(-1)}
    s1, m1 = make_train_step(bigram_apply, tx)(init_state(table, tx), seq, jax.random.key(0))
    s2, m2 = make_train_step(bigram_apply, tx)(init_state(table, tx), flat, jax.random.key(0))
    np.testing.assert_allclose(s1.params, s2.params, rtol=1e-6, atol=1e-7)
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-6)
    assert float(m1["accuracy"]) == pytest.approx(float(m2["accuracy"]))
    # jit and eager agree: the loss of the jitted step is the numpy mean over tokens
    logits = np.asarray(table)[seq["x"]].astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ref = -np.take_along_axis(logp, seq["y"][..., None], -1).mean()
    assert float(m1["loss"]) == pytest.approx(ref, rel=1e-5)


def test_sequence_shapes_that_do_not_fit_are_refused():
    tx = optax.sgd(1.0)
    step = make_train_step(bigram_apply, tx)
    seq = _tokens()
    with pytest.raises(ValueError, match=r"batch\['x'\] must start with the same \(N, T\)"):
        step(init_state(jnp.zeros((6, 6)), tx), {**seq, "x": seq["x"][:, :3]}, jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(N,\) .* or \(N, T\)"):
        step(
            init_state(jnp.zeros((6, 6)), tx), {**seq, "y": seq["y"][..., None]}, jax.random.key(0)
        )
    pooled = lambda params, x, *, train, key: params[x].mean(axis=1)  # noqa: E731
    with pytest.raises(
        ValueError, match=r"logits must have shape \(N, T, C\) .* got logits of shape \(4, 6\)"
    ):
        make_train_step(pooled, tx)(init_state(jnp.zeros((6, 6)), tx), seq, jax.random.key(0))


_SHARDED_LM = r"""
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P
import jaxzip as jz
assert len(jax.devices()) == 4, jax.devices()
model = jz.models.Transformer(num_layers=1, d_model=8, num_heads=2, max_len=6, vocab_size=10)
apply = jz.models.linen_apply_fn(model)
rng = np.random.default_rng(0)
x = rng.integers(0, 10, (8, 6)).astype(np.int32)
batch = {"x": x, "y": np.roll(x, -1, axis=1)}
params = jz.models.init_params(model, jax.random.key(0), x)
mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
def place(leaf):  # the last axis of every matrix split over "model", the rest replicated
    spec = P(*[None] * (leaf.ndim - 1), "model") if leaf.ndim >= 2 else P()
    return jax.device_put(leaf, NamedSharding(mesh, spec))
tx = optax.sgd(0.5)  # not Adam: it would turn the rounding noise of the attention key
out = {}                # bias's zero gradient (softmax ignores it) into full-size steps
for name in ("single", "sharded"):
    step = jz.train.make_train_step(apply, tx)
    p = jax.tree.map(place, params) if name == "sharded" else params
    b = ({k: jax.device_put(v, NamedSharding(mesh, P("data"))) for k, v in batch.items()}
         if name == "sharded" else batch)
    state = jz.train.init_state(p, tx)
    for i in range(3):
        state, metrics = step(state, b, jax.random.key(i))
    out[name] = {"params": [np.asarray(a).ravel().tolist() for a in jax.tree.leaves(state.params)],
                 "loss": float(metrics["loss"]),
                 "split": sum(not a.sharding.is_fully_replicated
                              for a in jax.tree.leaves(p))}
RESULT = out
"""


def test_sequence_step_with_params_sharded_over_a_mesh_matches_one_device(four_devices):
    out = four_devices(_SHARDED_LM)
    assert out["sharded"]["split"] > 0 and out["single"]["split"] == 0
    assert out["sharded"]["loss"] == pytest.approx(out["single"]["loss"], rel=1e-5)
    for a, b in zip(out["sharded"]["params"], out["single"]["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
