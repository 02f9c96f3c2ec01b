"""Tests for W8A8 (int8 weights and activations on the integer path) and make_scaled_apply."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.layout import trace_layouts
from jaxzip.quant import QArray, dequantize, make_scaled_apply, w8a8


def matmul(p, x):
    return x @ p["w"]


def test_hand_worked_2x2_dynamic_per_token():
    params, x = {"w": jnp.array([[1.0, -2.0], [0.5, 4.0]])}, jnp.array([[1.0, 2.0]])
    fn, q = w8a8(matmul, params, layouts=trace_layouts(matmul, params, x))
    # x: scale 2/127 -> [64, 127] (63.5 rounds to even); w columns: scales 1/127 and
    # 4/127 -> [[127, -64], [64, 127]].
    np.testing.assert_array_equal(q["w"].values, [[127, -64], [64, 127]])
    acc = np.array([64 * 127 + 127 * 64, 64 * -64 + 127 * 127])
    want = acc * (2 / 127) * np.array([1 / 127, 4 / 127])
    np.testing.assert_allclose(fn(q, x)[0], want, rtol=1e-6)


def test_hand_worked_static_per_tensor_clips_beyond_calibrated_range():
    params, x = {"w": jnp.array([[1.0, -2.0], [0.5, 4.0]])}, jnp.array([[1.0, 2.0]])
    lay = trace_layouts(matmul, params, x)
    fn, q = w8a8(matmul, params, layouts=lay, calib_batches=[jnp.array([[4.0, -1.0]])])
    # static scale 4/127: x -> [32 (31.75), 64 (63.5)]
    acc = np.array([32 * 127 + 64 * 64, 32 * -64 + 64 * 127])
    want = acc * (4 / 127) * np.array([1 / 127, 4 / 127])
    np.testing.assert_allclose(fn(q, x)[0], want, rtol=1e-6)
    clipped = fn(q, jnp.array([[8.0, 0.0]]))  # 8 is beyond the range 4: clipped to 127
    np.testing.assert_allclose(clipped[0], 127 * np.array([127, -64]) * 4 / 127 / 127 * [1, 4])


def test_integer_path_equals_float_product_of_dequantized_operands():
    w = jax.random.normal(jax.random.key(0), (16, 8))
    x = jax.random.normal(jax.random.key(1), (5, 16))
    fn, q = w8a8(matmul, {"w": w}, layouts=trace_layouts(matmul, {"w": w}, x))
    sx = jnp.max(jnp.abs(x), axis=1, keepdims=True) / 127
    x_hat = jnp.round(x / sx) * sx
    want = jnp.matmul(x_hat, dequantize(q["w"]), precision="highest")
    np.testing.assert_allclose(fn(q, x), want, rtol=1e-5, atol=1e-5)


def test_kernel_as_lhs_operand():
    def f(p, x):  # y (out, batch) = W^T x^T with the kernel as the lhs of dot_general
        return jax.lax.dot_general(p["w"], x, (((0,), (1,)), ((), ())))

    w = jax.random.normal(jax.random.key(0), (6, 3))
    x = jax.random.normal(jax.random.key(1), (4, 6))
    fn, q = w8a8(f, {"w": w}, layouts=trace_layouts(f, {"w": w}, x))
    y = fn(q, x)
    assert y.shape == (3, 4)
    np.testing.assert_allclose(y, f({"w": w}, x), rtol=0.05, atol=0.05)


def test_conv_model():
    model = nn.Sequential([nn.Conv(4, (3, 3)), nn.relu, nn.Conv(2, (2, 2), padding="VALID")])
    x = jax.random.normal(jax.random.key(1), (2, 5, 5, 3))
    variables = model.init(jax.random.key(0), x)
    lay = trace_layouts(model.apply, variables, x)
    fn, q = w8a8(model.apply, variables, layouts=lay)
    want = model.apply(variables, x)
    np.testing.assert_allclose(fn(q, x), want, rtol=0.05, atol=0.03)


@pytest.mark.parametrize("static", [False, True])
def test_block_close_to_float_and_jit_matches_eager(static, tiny_block):
    apply_fn, params, batches = tiny_block()
    lay = trace_layouts(apply_fn, params, batches[0])
    calib = batches[:2] if static else None
    fn, q = w8a8(apply_fn, params, layouts=lay, calib_batches=calib)
    for path, layout in lay.items():  # per output channel along the true out axes
        leaf = q
        for k in path.split("/"):
            leaf = leaf[k]
        assert isinstance(leaf, QArray) and leaf.axes == layout.out_axes
    x = batches[2]
    want = apply_fn(params, x)
    got = jax.jit(fn)(q, x)
    rel = float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))
    assert rel < (0.05 if static else 0.02)  # static per-tensor ranges clip more
    np.testing.assert_allclose(fn(q, x), got, rtol=1e-5, atol=1e-5)


def test_scaled_apply_with_unit_scales_is_the_model(tiny_block):
    apply_fn, params, batches = tiny_block()
    lay = trace_layouts(apply_fn, params, batches[0])
    ones = {p: np.ones(layout.n_in) for p, layout in lay.items()}
    got = jax.jit(make_scaled_apply(apply_fn, layouts=lay, in_scales=ones))(params, batches[0])
    np.testing.assert_allclose(got, apply_fn(params, batches[0]), rtol=1e-6, atol=1e-6)


def test_bad_inputs():
    params, x = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, jnp.ones((1, 2))
    f = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    lay = trace_layouts(f, params, x)
    for bad in (1, 9, 2.5, True):
        with pytest.raises(ValueError, match="bits"):
            w8a8(f, params, layouts=lay, bits=bad)
    with pytest.raises(ValueError, match="act_bits"):
        w8a8(f, params, layouts=lay, act_bits=0)
    with pytest.raises(ValueError, match=r"'b'.*no matmul"):
        w8a8(f, params, layouts=lay, where="b")
    with pytest.raises(ValueError, match="calib_batches is empty"):
        w8a8(f, params, layouts=lay, calib_batches=[])
    with pytest.raises(TypeError, match="layouts"):
        w8a8(f, params, layouts=["w"])
    with pytest.raises(ValueError, match=r"in_scales\['w'\]"):
        make_scaled_apply(f, layouts=lay, in_scales={"w": [1.0, -1.0]})
    with pytest.raises(ValueError, match="integer path needs a QArray"):
        make_scaled_apply(f, layouts=lay, act_bits=8)(params, x)


def test_no_float_copy_of_the_kernels_is_made():
    n, d = 4, 128
    params = [jax.random.normal(k, (d, d)) for k in jax.random.split(jax.random.key(0), n)]

    def f(p, x):
        for w in p:
            x = jnp.tanh(x @ w)
        return x

    x = jnp.ones((2, d))
    lay = trace_layouts(f, params, x)
    fn, q = w8a8(f, params, layouts=lay)
    mem = jax.jit(fn).lower(q, x).compile().memory_analysis()
    if mem is None:
        pytest.skip("this backend reports no memory analysis")
    assert mem.temp_size_in_bytes < d * d * 4  # the integer path: no dequantized kernel
    weight_only = make_scaled_apply(f, layouts=lay)  # float activations: one kernel at a time
    mem = jax.jit(weight_only).lower(q, x).compile().memory_analysis()
    assert mem.temp_size_in_bytes < 2 * d * d * 4


def test_model_that_casts_to_bfloat16():
    def f(p, x):
        return x.astype(jnp.bfloat16) @ p["w"].astype(jnp.bfloat16)

    params = {"w": jax.random.normal(jax.random.key(0), (8, 4))}
    x = jax.random.normal(jax.random.key(1), (3, 8))
    lay = trace_layouts(f, params, x)
    fn, q = w8a8(f, params, layouts=lay)
    want = f(params, x).astype(jnp.float32)
    for run in (fn, make_scaled_apply(f, layouts=lay)):
        y = jax.jit(run)(q, x)
        assert y.dtype == jnp.bfloat16
        np.testing.assert_allclose(y.astype(jnp.float32), want, rtol=0.05, atol=0.1)


def _scan_model(p, x):
    """A stack of layers sliced by lax.scan, then a head."""

    def body(h, w):
        return jax.nn.gelu(h @ w["k"]), None

    return jax.lax.scan(body, x, p["stack"])[0] @ p["head"]


def _loop_model(p, x):
    """The same layers in a Python loop."""
    for w in p["layers"]:
        x = jax.nn.gelu(x @ w["k"])
    return x @ p["head"]


@pytest.mark.parametrize("static", [False, True])
def test_a_stack_runs_as_one_scan_whatever_its_depth(static):
    # the program (dynamic or static W8A8, per-layer input scales multiplied into the kernels)
    # has as many matmuls for 2 layers as for 6: the scan is traced once, not per layer;
    # it computes what the same layers in a Python loop do
    x = jax.random.normal(jax.random.key(0), (3, 8))
    sizes = []
    for layers in (2, 6):
        k = jax.random.split(jax.random.key(layers))
        s = np.linspace(0.5, 2.0, layers * 8, dtype=np.float32).reshape(layers, 8)
        kernels = jax.random.normal(k[0], (layers, 8, 8)) / 3 * s[:, :, None]
        head = jax.random.normal(k[1], (8, 2))
        stacked = {"stack": {"k": kernels}, "head": head}
        looped = {"layers": [{"k": kernels[i]} for i in range(layers)], "head": head}
        batches = [x] if static else None
        runs = []
        for f, p, scales in (
            (_scan_model, stacked, {"stack/k": s}),
            (_loop_model, looped, {f"layers/{i}/k": s[i] for i in range(layers)}),
        ):
            lay = trace_layouts(f, p, x)
            fn, q = w8a8(f, p, layouts=lay, calib_batches=batches, in_scales=scales)
            runs.append(jax.jit(fn)(q, x))
        assert q["layers"][0]["k"].values.dtype == jnp.int8
        np.testing.assert_allclose(runs[0], runs[1], rtol=1e-6, atol=1e-7)
        lay = trace_layouts(_scan_model, stacked, x)
        fn, q = w8a8(
            _scan_model, stacked, layouts=lay, calib_batches=batches, in_scales={"stack/k": s}
        )
        sizes.append(str(jax.make_jaxpr(fn)(q, x)).count("dot_general"))
    assert sizes[0] == sizes[1]
