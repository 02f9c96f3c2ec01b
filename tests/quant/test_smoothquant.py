"""Tests for SmoothQuant: scales, exact identity without quantization, outlier migration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.layout import to_matrix, trace_layouts
from jaxzip.quant import make_scaled_apply, smooth_quant, smooth_scales, w8a8


def test_hand_worked_scales():
    act, w = jnp.array([16.0, 1.0, 0.0]), jnp.array([1.0, 4.0, 2.0])
    np.testing.assert_allclose(smooth_scales(act, w, alpha=0.5), [4.0, 0.5, 1.0])
    np.testing.assert_allclose(smooth_scales(act, w, alpha=1.0), [16.0, 1.0, 1.0])
    np.testing.assert_allclose(smooth_scales(act, w, alpha=0.0), [1.0, 0.25, 1.0])


def test_hand_worked_smooth_quant_on_a_matmul():
    f = lambda p, x: x @ p["w"]  # noqa: E731
    params = {"w": jnp.array([[1.0, -1.0], [4.0, 2.0]])}
    calib = [jnp.array([[16.0, 1.0]]), jnp.array([[-8.0, -0.5]])]
    r = smooth_quant(f, params, calib, layouts=trace_layouts(f, params, calib[0]))
    # max|X| = [16, 1], max|W| rows = [1, 4] -> s = [4, 0.5]; no norm to fold into
    np.testing.assert_allclose(r.in_scales["w"], [4.0, 0.5])
    np.testing.assert_allclose(r.params["w"], [[4.0, -4.0], [2.0, 1.0]])
    assert r.folded == {}


@pytest.mark.parametrize("fold", [True, False])
def test_without_quantization_outputs_are_unchanged(tiny_block, fold):
    apply_fn, params, batches = tiny_block(outlier=30.0)
    lay = trace_layouts(apply_fn, params, batches[0])
    r = smooth_quant(apply_fn, params, batches[:2], layouts=lay, alpha=0.8, fold=fold)
    assert any(float(jnp.max(jnp.abs(v - 1))) > 0.1 for v in r.scales.values())  # not trivial
    attn = "MultiHeadDotProductAttention_0"
    if fold:  # q, k, v read LayerNorm_0, the MLP's first Dense (Dense_1) LayerNorm_1
        ln0, ln1 = (
            ("LayerNorm_0/bias", "LayerNorm_0/scale"),
            ("LayerNorm_1/bias", "LayerNorm_1/scale"),
        )
        want_folded = {f"{attn}/{k}/kernel": ln0 for k in ("query", "key", "value")}
        assert r.folded == {**want_folded, "Dense_1/kernel": ln1}
        assert set(r.in_scales) == {f"{attn}/out/kernel", "Dense_0/kernel"}
        q, k = r.scales[f"{attn}/query/kernel"], r.scales[f"{attn}/key/kernel"]
        np.testing.assert_array_equal(q, k)  # one s per shared input
    else:
        assert r.folded == {} and set(r.in_scales) == set(lay)
    run = make_scaled_apply(apply_fn, layouts=lay, in_scales=r.in_scales)
    want = apply_fn(params, batches[2])
    got = jax.jit(run)(r.params, batches[2])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(run(r.params, batches[2]), got, rtol=1e-5, atol=1e-5)  # eager


def _ln(p, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-6) * p["scale"] + p["bias"]


def test_folds_only_where_the_norm_output_feeds_nothing_else():
    pre = lambda p, x: x + _ln(p["ln"], x) @ p["w"]  # noqa: E731
    post = lambda p, x: _ln(p["ln"], x) + _ln(p["ln"], x) @ p["w"]  # noqa: E731
    params = {
        "ln": {"scale": jnp.linspace(0.5, 1.5, 8), "bias": jnp.linspace(-1, 1, 8)},
        "w": jax.random.normal(jax.random.key(0), (8, 8)),
    }
    xs = [jax.random.normal(k, (16, 8)) for k in jax.random.split(jax.random.key(1), 2)]
    for f, foldable in ((pre, True), (post, False)):
        lay = trace_layouts(f, params, xs[0])
        r = smooth_quant(f, params, xs[:1], layouts=lay)
        assert (r.folded == {"w": ("ln/bias", "ln/scale")}) is foldable
        assert ("w" in r.in_scales) is not foldable
        got = make_scaled_apply(f, layouts=lay, in_scales=r.in_scales)(r.params, xs[1])
        np.testing.assert_allclose(got, f(params, xs[1]), rtol=1e-4, atol=1e-4)


def test_migration_helps_static_w8a8_with_an_outlier_channel():
    w = jax.random.normal(jax.random.key(0), (16, 8)) * 0.1
    w = w.at[3].multiply(0.01)  # the outlier channel does not dominate the output
    xs = [jax.random.normal(k, (64, 16)) for k in jax.random.split(jax.random.key(1), 3)]
    xs = [x.at[:, 3].multiply(100.0) for x in xs]
    f = lambda p, x: x @ p["w"]  # noqa: E731
    params = {"w": w}
    lay = trace_layouts(f, params, xs[0])
    want = f(params, xs[2])

    def err(fn, q):
        return float(jnp.linalg.norm(fn(q, xs[2]) - want) / jnp.linalg.norm(want))

    plain = err(*w8a8(f, params, layouts=lay, calib_batches=xs[:2], act_bits=6))
    r = smooth_quant(f, params, xs[:2], layouts=lay, alpha=0.5)
    s = r.in_scales
    assert float(s["w"][3]) > 3 * float(jnp.median(s["w"]))  # the outlier channel
    np.testing.assert_allclose(to_matrix(r.params["w"], lay["w"]), w * s["w"][:, None], rtol=1e-6)
    smooth = err(*w8a8(f, r.params, layouts=lay, calib_batches=xs[:2], act_bits=6, in_scales=s))
    assert smooth < 0.5 * plain


def test_bad_inputs():
    f = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    params, x = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, jnp.ones((1, 2))
    lay = trace_layouts(f, params, x)
    for alpha in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="alpha"):
            smooth_quant(f, params, [x], layouts=lay, alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        smooth_scales(jnp.ones(2), jnp.ones(2), alpha=2.0)
    with pytest.raises(ValueError, match="one shape"):
        smooth_scales(jnp.ones(2), jnp.ones(3))
    with pytest.raises(ValueError, match=r"'b'.*no matmul"):
        smooth_quant(f, params, [x], layouts=lay, where="b")
    with pytest.raises(ValueError, match="calib_batches is empty"):
        smooth_quant(f, params, [], layouts=lay)
    with pytest.raises(TypeError, match="fold"):
        smooth_quant(f, params, [x], layouts=lay, fold="yes")
