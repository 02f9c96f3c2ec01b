"""Tests for AWQ: the scale search, its error bound against RTN, and running the result."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.layout import to_matrix, trace_layouts
from jaxzip.quant import (
    awq,
    awq_scales,
    dequantize,
    make_scaled_apply,
    quantize,
    quantize_params,
)


def matmul(p, x):
    return x @ p["w"]


def test_hand_worked_scales():
    np.testing.assert_allclose(awq_scales(jnp.array([4.0, 1.0]), 0.5), [2**0.5, 2**-0.5])
    np.testing.assert_allclose(awq_scales(jnp.array([4.0, 1.0, 0.0]), 0.0), [1.0, 1.0, 1.0])
    # alpha 1: s = [4, 1, 1] / sqrt(4 * 1)
    np.testing.assert_allclose(awq_scales(jnp.array([4.0, 1.0, 0.0]), 1.0), [2.0, 0.5, 0.5])


def test_uniform_activations_pick_alpha_zero():
    w = jax.random.normal(jax.random.key(0), (8, 4))
    signs = jnp.sign(jax.random.normal(jax.random.key(1), (32, 8)))
    x = 0.7 * signs  # every channel has mean |x| = 0.7
    r = awq(matmul, {"w": w}, [x], layouts=trace_layouts(matmul, {"w": w}, x), bits=3)
    assert r.alpha == {"w": 0.0}
    np.testing.assert_array_equal(r.in_scales["w"], np.ones(8))
    np.testing.assert_allclose(r.params["w"], w)
    assert r.error["w"] == pytest.approx(r.rtn_error["w"])


def test_error_is_the_layer_output_error_and_beats_rtn_with_salient_channels():
    w = jax.random.normal(jax.random.key(0), (16, 8))
    xs = [jax.random.normal(k, (64, 16)) for k in jax.random.split(jax.random.key(1), 2)]
    xs = [x.at[:, :2].multiply(20.0) for x in xs]  # two salient input channels
    r = awq(matmul, {"w": w}, xs, layouts=trace_layouts(matmul, {"w": w}, xs[0]), bits=3)
    assert r.alpha["w"] > 0
    assert r.error["w"] < 0.9 * r.rtn_error["w"]
    # the reported error is mean_rows ||x (Q(W diag(s)) / s - W)||^2, checked directly
    s = r.scales["w"]
    spec = r.spec["w"]
    w_hat = dequantize(quantize(w * s[:, None], spec)) / s[:, None]
    x = jnp.concatenate(xs)
    direct = float(jnp.mean(jnp.sum((x @ (w_hat - w)) ** 2, axis=1)))
    assert r.error["w"] == pytest.approx(direct, rel=1e-3)
    rtn = dequantize(quantize(w, spec))
    direct_rtn = float(jnp.mean(jnp.sum((x @ (rtn - w)) ** 2, axis=1)))
    assert r.rtn_error["w"] == pytest.approx(direct_rtn, rel=1e-3)


def test_block_errors_never_exceed_rtn_and_result_runs(tiny_block):
    apply_fn, params, batches = tiny_block(outlier=10.0)
    lay = trace_layouts(apply_fn, params, batches[0])
    r = awq(
        apply_fn,
        params,
        batches[:2],
        layouts=lay,
        bits=4,
        group_size=8,
        alphas=(0.0, 0.25, 0.5, 0.75, 1.0),
    )
    for p in lay:
        assert r.spec[p].group_size == 8
    groups = {}
    for p in lay:
        groups.setdefault(tuple(np.asarray(r.scales[p]).tolist()), []).append(p)
    for g in groups.values():  # the shared scale is chosen on the group's summed error
        assert sum(r.error[p] for p in g) <= sum(r.rtn_error[p] for p in g) * (1 + 1e-6)
    attn = "MultiHeadDotProductAttention_0"
    assert r.folded[f"{attn}/query/kernel"] == ("LayerNorm_0/bias", "LayerNorm_0/scale")
    assert set(r.in_scales) == {f"{attn}/out/kernel", "Dense_0/kernel"}
    run = make_scaled_apply(apply_fn, layouts=lay, in_scales=r.in_scales)
    x = batches[2]
    want = apply_fn(params, x)
    np.testing.assert_allclose(jax.jit(run)(r.params, x), want, rtol=1e-4, atol=1e-4)
    rules = [(re.escape(p), spec) for p, spec in r.spec.items()]
    q = quantize_params(r.params, rules)
    got = jax.jit(run)(q, x)  # QArray kernels, dequantized at their matmul
    rel = float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want))
    assert rel < 0.1
    np.testing.assert_allclose(run(q, x), got, rtol=1e-5, atol=1e-5)  # eager = jit
    m = to_matrix(
        r.params["MultiHeadDotProductAttention_0"]["query"]["kernel"],
        lay["MultiHeadDotProductAttention_0/query/kernel"],
    )
    assert m.shape == (16, 16)


def test_bad_inputs():
    f = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    params, x = {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}, jnp.ones((1, 4))
    lay = trace_layouts(f, params, x)
    for bits in (1, 9, 4.0):
        with pytest.raises(ValueError, match="bits"):
            awq(f, params, [x], layouts=lay, bits=bits)
    for alphas in ((0.0, 1.5), (), "0.5", (-1.0,)):
        with pytest.raises(ValueError, match="alpha"):
            awq(f, params, [x], layouts=lay, alphas=alphas)
    with pytest.raises(ValueError, match=r"'w'.*group_size=3 does not divide"):
        awq(f, params, [x], layouts=lay, group_size=3)
    with pytest.raises(ValueError, match=r"'b'.*no matmul"):
        awq(f, params, [x], layouts=lay, where="b")
    with pytest.raises(ValueError, match="calib_batches is empty"):
        awq(f, params, [], layouts=lay)
    with pytest.raises(ValueError, match="alpha"):
        awq_scales(jnp.ones(2), 1.2)
    with pytest.raises(TypeError, match="fold"):
        awq(f, params, [x], layouts=lay, fold=1)
