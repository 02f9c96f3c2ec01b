"""Tests for make_quantized_apply: running a model on QArray / KMeansArray params."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.quant import QuantSpec, make_quantized_apply

SPEC = QuantSpec(bits=4, axes=(-1,))


class Block(nn.Module):
    """A tiny pre-LN block: attention and an MLP (d=16)."""

    @nn.compact
    def __call__(self, x, *, train=False):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, deterministic=not train)(h)
        h = nn.LayerNorm()(x)
        return x + nn.Dense(16)(nn.gelu(nn.Dense(32)(h)))


def _block():
    model = Block()
    x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    params = model.init(jax.random.key(0), x)["params"]
    return model, params, x


def test_hand_worked_plain_function():
    # w = [[0.5, -1], [0.25, 2]] per-tensor 8-bit: scale 2/127; 0.25 -> 16 * 2/127.
    params = {"w": jnp.array([[0.5, -1.0], [0.25, 2.0]])}
    q = jz.quant.quantize_params(params, [("w", QuantSpec(bits=8))])
    out = jax.jit(make_quantized_apply(lambda p, x: x @ p["w"]))(q, jnp.array([[1.0, 1.0]]))
    s = 2.0 / 127
    np.testing.assert_allclose(out, [[(32 + 16) * s, (-64 + 127) * s]], rtol=1e-6)


def test_linen_block_matches_dequantized_params_exactly():
    model, params, x = _block()
    q = jz.quant.quantize_params(params, [(r".*/kernel", SPEC)])

    def apply_fn(p, x, *, train):
        return model.apply({"params": p}, x, train=train)

    want = jax.jit(apply_fn, static_argnames="train")(jz.quant.dequantize_params(q), x, train=False)
    run = make_quantized_apply(apply_fn)
    got = jax.jit(run, static_argnames="train")(q, x, train=False)
    np.testing.assert_array_equal(got, want)
    # jit and eager agree
    np.testing.assert_allclose(run(q, x, train=False), got, rtol=1e-5, atol=1e-6)


def test_kmeans_leaves_and_untouched_float_leaves():
    model, params, x = _block()
    books = jz.quant.kmeans_params(params, bits=3, where=r".*Dense_.*/kernel")
    apply_fn = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    want = apply_fn(jz.quant.dequantize_params(books), x)
    got = jax.jit(make_quantized_apply(apply_fn))(books, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_float_params_pass_straight_through():
    calls = []

    def apply_fn(p, x):
        calls.append(type(p["w"]).__name__)
        return x * p["w"]

    out = make_quantized_apply(apply_fn)({"w": jnp.float32(2.0)}, jnp.ones(3))
    np.testing.assert_array_equal(out, 2 * np.ones(3))
    assert calls == ["ArrayImpl"]


def test_inner_jit_is_inlined_and_outputs_may_be_params():
    params = {"a": jnp.arange(6.0).reshape(2, 3) / 7, "b": jnp.ones((3,))}
    q = jz.quant.quantize_params(params, [("a", QuantSpec(bits=8))])

    @jax.jit
    def inner(p, x):
        return x @ p["a"] + p["b"], p["a"]

    y, a = jax.jit(make_quantized_apply(inner))(q, jnp.ones((4, 2)))
    want_y, want_a = inner(jz.quant.dequantize_params(q), jnp.ones((4, 2)))
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(a, want_a)


def test_dequantized_weights_are_not_all_live_at_once():
    n, d = 6, 128
    keys = jax.random.split(jax.random.key(0), n)
    params = [jax.random.normal(k, (d, d)) for k in keys]
    q = jz.quant.quantize_params(params, [(r"\d+", QuantSpec(bits=8, axes=(-1,)))])

    def apply_fn(p, x):
        for w in p:
            x = jnp.tanh(x @ w)
        return x

    x = jnp.ones((2, d))
    mem = jax.jit(make_quantized_apply(apply_fn)).lower(q, x).compile().memory_analysis()
    if mem is None:
        pytest.skip("this backend reports no memory analysis")
    kernel_bytes = d * d * 4
    assert mem.temp_size_in_bytes < 2 * kernel_bytes
    np.testing.assert_array_equal(
        jax.jit(make_quantized_apply(apply_fn))(q, x),
        jax.jit(apply_fn)(jz.quant.dequantize_params(q), x),
    )


@pytest.mark.parametrize(
    "spec",
    [
        QuantSpec(bits=4, axes=(0, 2)),  # scales per layer and output (GPTQ on a stack)
        QuantSpec(bits=4, axes=(2,)),  # scales shared by the layers
        QuantSpec(bits=4, axes=(0, 2), group_size=8, group_axis=1),
        None,  # k-means codebook, shared
    ],
    ids=["per-layer", "shared", "groups", "kmeans"],
)
def test_a_scanned_stack_is_dequantized_one_layer_at_a_time(spec):
    layers, d = 6, 64
    keys = jax.random.split(jax.random.key(0), 2)
    params = {"stack": {"w": jax.random.normal(keys[0], (layers, d, d)) / 8}, "b": jnp.ones(d)}

    def apply_fn(p, x, reverse):
        h, ys = jax.lax.scan(
            lambda h, w: (jnp.tanh(h @ w["w"]), h.sum()), x, p["stack"], reverse=reverse
        )
        return h + p["b"], ys

    if spec is None:
        q = jz.quant.kmeans_params(params, bits=3, where="stack/w")
    else:
        q = jz.quant.quantize_params(params, [("stack/w", spec)])
    x = jax.random.normal(keys[1], (4, d))
    for reverse in (False, True):
        run = jax.jit(make_quantized_apply(apply_fn), static_argnums=2)
        got = run(q, x, reverse)
        want = jax.jit(apply_fn, static_argnums=2)(jz.quant.dequantize_params(q), x, reverse)
        jax.tree.map(np.testing.assert_array_equal, got, want)
    mem = jax.jit(make_quantized_apply(lambda p, x: apply_fn(p, x, False))).lower(q, x)
    mem = mem.compile().memory_analysis()
    if mem is not None:  # one layer's float kernel live, not the stack's six
        assert mem.temp_size_in_bytes < 2 * d * d * 4


def test_no_retrace_on_second_call():
    model, params, x = _block()
    q = jz.quant.quantize_params(params, [(r".*/kernel", SPEC)])
    traces = []

    def apply_fn(p, x):
        traces.append(1)
        return model.apply({"params": p}, x)

    run = jax.jit(make_quantized_apply(apply_fn))
    run(q, x)
    n = len(traces)
    run(q, x + 1)
    assert len(traces) == n


def test_not_callable():
    with pytest.raises(TypeError, match="apply_fn must be callable"):
        make_quantized_apply("model")
