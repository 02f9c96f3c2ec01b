"""Tests for jaxzip/calib/_stats.py: per-kernel statistics against NumPy references."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.calib import KernelStats, collect_stats, init_stats, make_stats_step, row_stats
from jaxzip.layout import matmul_where, trace_layouts
from jaxzip.paths import all_of


def _ref(rows):
    rows = np.asarray(rows, np.float64)
    return {
        "count": rows.shape[0],
        "xtx": rows.T @ rows,
        "sq_sum": (rows**2).sum(0),
        "absmax": np.abs(rows).max(0),
        "abs_sum": np.abs(rows).sum(0),
    }


def _close(stats: KernelStats, ref, rtol=1e-5):
    assert float(stats.count) == ref["count"]
    np.testing.assert_allclose(stats.xtx, ref["xtx"], rtol=rtol, atol=1e-4)
    np.testing.assert_allclose(stats.sq_sum, ref["sq_sum"], rtol=rtol, atol=1e-4)
    np.testing.assert_allclose(stats.absmax, ref["absmax"], rtol=rtol)
    np.testing.assert_allclose(stats.abs_sum, ref["abs_sum"], rtol=rtol, atol=1e-4)


def test_hand_worked_one_dense():
    model = nn.Dense(2)
    x = jnp.array([[1.0, 2.0, 0.0], [-1.0, 0.0, 3.0]])
    params = model.init(jax.random.key(0), x)
    lay = trace_layouts(model.apply, params, x)
    s = collect_stats(model.apply, params, [x], layouts=lay)["params/kernel"]
    assert float(s.count) == 2.0
    np.testing.assert_array_equal(s.xtx, [[2.0, 2.0, -3.0], [2.0, 4.0, 0.0], [-3.0, 0.0, 9.0]])
    np.testing.assert_array_equal(s.sq_sum, [2.0, 4.0, 9.0])
    np.testing.assert_array_equal(s.absmax, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.abs_sum, [2.0, 2.0, 3.0])
    s = collect_stats(model.apply, params, [x], layouts=lay, hessian=False)["params/kernel"]
    assert s.xtx.shape == (0, 0) and s.sq_sum.shape == (3,)


def _im2col_same(x, kh, kw):
    """Reference im2col for stride 1, SAME padding, HWIO kernel: rows (n, i, j), cols (dh, dw, c)."""
    n, h, w, _ = x.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    xp = np.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)))
    rows = [
        xp[b, i : i + kh, j : j + kw, :].reshape(-1)
        for b in range(n)
        for i in range(h)
        for j in range(w)
    ]
    return np.stack(rows)


def test_mlp_and_conv_against_captured_activations():
    def f(p, x):  # x: (B, 4, 4, 2)
        h = jax.lax.conv_general_dilated(
            x, p["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jnp.tanh(h).reshape(h.shape[0], -1)  # (B, 48)
        h = jnp.maximum(h @ p["w1"], 0)  # (B, 5)
        return jnp.einsum("bi,oi->bo", h, p["w2"])  # w2 stored (out, in)

    k = jax.random.split(jax.random.key(0), 4)
    params = {
        "conv": jax.random.normal(k[0], (3, 3, 2, 3)),
        "w1": jax.random.normal(k[1], (48, 5)) / 7,
        "w2": jax.random.normal(k[2], (2, 5)),
    }
    x = jax.random.normal(k[3], (3, 4, 4, 2))
    lay = trace_layouts(f, params, x)
    stats = collect_stats(f, params, [x], layouts=lay)
    xn = np.asarray(x, np.float64)
    _close(stats["conv"], _ref(_im2col_same(xn, 3, 3)))
    conv = jax.lax.conv_general_dilated(
        x, params["conv"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    h = np.tanh(np.asarray(conv, np.float64)).reshape(3, -1)
    _close(stats["w1"], _ref(h))
    h2 = np.maximum(np.asarray(jnp.tanh(conv).reshape(3, -1) @ params["w1"]), 0)
    _close(stats["w2"], _ref(h2))
    assert stats["w2"].xtx.shape == (5, 5) and lay["w2"].in_axes == (1,)


class _Attn(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.MultiHeadDotProductAttention(num_heads=2, name="att")(x, x)


def test_attention_out_kernel_rows_are_heads_by_head_dim():
    x = jax.random.normal(jax.random.key(0), (2, 8, 16))
    model = _Attn()
    params = model.init(jax.random.key(1), x)
    lay = trace_layouts(model.apply, params, x)
    stats = collect_stats(model.apply, params, [x], layouts=lay)
    q = stats["params/att/query/kernel"]
    _close(q, _ref(np.asarray(x).reshape(-1, 16)))
    o = stats["params/att/out/kernel"]
    assert float(o.count) == 16 and o.xtx.shape == (16, 16)
    # the out projection's input, recomputed: softmax(q k^T / sqrt(d)) v, rows (B*T, heads*hd)
    p = params["params"]["att"]
    qh, kh, vh = (
        jnp.einsum("btd,dhk->bthk", x, p[n]["kernel"]) + p[n]["bias"]
        for n in ("query", "key", "value")
    )
    a = jax.nn.softmax(jnp.einsum("bqhk,bthk->bhqt", qh, kh) / np.sqrt(8), axis=-1)
    ctx = np.asarray(jnp.einsum("bhqt,bthk->bqhk", a, vh)).reshape(-1, 16)
    _close(o, _ref(ctx), rtol=1e-4)


def test_streaming_equals_one_big_batch_and_does_not_retrace():
    traces = []

    def f(p, x):
        traces.append(x.shape)
        return jnp.tanh(x @ p["w1"]) @ p["w2"]

    params = {
        "w1": jax.random.normal(jax.random.key(0), (4, 6)),
        "w2": jax.random.normal(jax.random.key(1), (6, 2)),
    }
    xs = jax.random.normal(jax.random.key(2), (3, 5, 4))
    lay = trace_layouts(f, params, xs[0])
    traces.clear()
    streamed = collect_stats(f, params, iter(list(xs)), layouts=lay)
    assert traces == [(5, 4)]  # one trace for three equal batches
    whole = collect_stats(f, params, [xs.reshape(15, 4)], layouts=lay)
    for path in lay:
        a, b = streamed[path], whole[path]
        assert float(a.count) == float(b.count) == 15
        np.testing.assert_allclose(a.xtx, b.xtx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.sq_sum, b.sq_sum, rtol=1e-5)
        np.testing.assert_allclose(
            a.absmax, b.absmax, rtol=1e-6
        )  # tanh(x @ w1) may differ by 1 ulp


def test_layer_sequential_groups_and_reused_step():
    traces = []

    def f(p, x):
        traces.append(1)
        return jnp.tanh(x @ p["a"]) @ p["b"]

    params = {"a": jnp.ones((3, 3)), "b": jnp.ones((3, 1))}
    x = jnp.arange(6.0).reshape(2, 3)
    lay = trace_layouts(f, params, x)
    only_a = collect_stats(f, params, [x], layouts=lay, where="a")
    assert list(only_a) == ["a"]
    traces.clear()
    step = make_stats_step(f, layouts=lay, where="b")
    s0 = step(params, init_stats(lay, params, where="b"), x)
    s1 = step({"a": params["a"] * 0, "b": params["b"]}, init_stats(lay, params, where="b"), x)
    assert len(traces) == 1  # new params values, same shapes: no retrace
    assert float(s0["b"].absmax.max()) > 0 and float(s1["b"].absmax.max()) == 0
    with pytest.raises(ValueError, match="init_stats"):
        step(params, init_stats(lay, params, where="a"), x)


def test_jit_and_eager_row_stats_agree():
    rows = jax.random.normal(jax.random.key(0), (7, 3)).astype(jnp.bfloat16)
    a, b = row_stats(rows), jax.jit(row_stats)(rows)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-6)
    assert a.xtx.dtype == jnp.float32
    _close(a, _ref(np.asarray(rows.astype(jnp.float32))))


def test_bad_inputs():
    def f(p, x):
        return x @ p["w"] + p["b"]

    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    x = jnp.ones((4, 3))
    lay = trace_layouts(f, params, x)
    with pytest.raises(ValueError, match="layouts: empty"):
        collect_stats(f, params, [x], layouts={})
    with pytest.raises(ValueError, match="at least one calibration batch"):
        collect_stats(f, params, [], layouts=lay)
    with pytest.raises(ValueError, match=r"batches\[2\].*\(4, 5\).*first batch.*\(4, 3\)"):
        collect_stats(f, params, [x, x, jnp.ones((4, 5))], layouts=lay)
    emb = nn.Embed(5, 3)
    ids = jnp.array([[0, 1]])
    vars_ = emb.init(jax.random.key(0), ids)

    def lm(v, i):
        return emb.apply(v, i) @ v["params"]["embedding"].T  # tied output

    lay_lm = trace_layouts(lm, vars_, ids)
    with pytest.raises(ValueError, match=r"batches\[1\].*float32.*first batch.*int32"):
        collect_stats(lm, vars_, [ids, ids.astype(jnp.float32)], layouts=lay_lm)
    with pytest.raises(ValueError, match=r"selects 'b', which no matmul.*all_of"):
        collect_stats(f, params, [x], layouts=lay, where="b")
    narrowed = all_of(".*", matmul_where(lay))  # a wide pattern kept to the kernels
    assert list(collect_stats(f, params, [x], layouts=lay, where=narrowed)) == ["w"]
    with pytest.raises(ValueError, match="selects no leaf"):
        collect_stats(f, params, [x], layouts=lay, where="Dense.*")
    with pytest.raises(ValueError, match=r"'w'.*no matmul or conv of apply_fn uses it"):
        collect_stats(lambda p, x: x[:, :2] + p["b"], params, [x], layouts=lay)
    with pytest.raises(TypeError, match=r"batches\[1\]: expected arrays.*str"):
        collect_stats(f, params, [x, {"x": "text"}], layouts=lay)
    with pytest.raises(TypeError, match=r"batches\[0\]: expected numeric arrays"):
        collect_stats(f, params, [np.array(["a", "b"])], layouts=lay)
    bf16 = collect_stats(f, params, [x.astype(jnp.bfloat16)], layouts=lay)["w"]
    assert bf16.xtx.dtype == jnp.float32 and float(bf16.count) == 4
    with pytest.raises(ValueError, match=r"expected \(rows, n_in\)"):
        row_stats(jnp.ones(3))
