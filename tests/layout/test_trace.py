"""Tests for jaxzip/layout/_trace.py (and the walker and provenance rules behind it)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxzip.layout import KernelLayout, trace_layouts

from ._models import Decoder


def _axes(lay):
    return {p: (v.in_axes, v.out_axes) for p, v in lay.items()}


def test_dense_excludes_bias_and_norm_and_keeps_use_order():
    model = nn.Sequential([nn.Dense(8), nn.LayerNorm(), nn.Dense(3)])
    x = jnp.ones((2, 4))
    params = model.init(jax.random.key(0), x)["params"]
    lay = trace_layouts(lambda p, x: model.apply({"params": p}, x), params, x)
    assert list(lay) == ["layers_0/kernel", "layers_2/kernel"]
    assert lay["layers_0/kernel"] == KernelLayout(shape=(4, 8), in_axes=(0,), out_axes=(1,))
    assert lay["layers_2/kernel"].n_in == 8
    jitted = jax.jit(lambda p, x: model.apply({"params": p}, x))
    assert trace_layouts(jitted, params, x) == lay  # the same through an outer jit


def test_dense_general_multi_axis():
    class M(nn.Module):
        @nn.compact
        def __call__(self, x):  # x: (B, T, 6)
            x = nn.DenseGeneral((2, 3), name="split")(x)  # (6, 2, 3)
            x = nn.DenseGeneral(4, axis=(-2, -1), name="merge")(x)  # (2, 3, 4)
            return nn.DenseGeneral(5, axis=(-3, -1), name="skip")(x.reshape(2, 3, 4, 1)[..., 0])

    x = jnp.ones((2, 3, 6))
    params = jax.eval_shape(M().init, jax.random.key(0), x)  # shapes are enough
    lay = trace_layouts(M().apply, params, x)
    assert _axes(lay) == {
        "params/split/kernel": ((0,), (1, 2)),
        "params/merge/kernel": ((0, 1), (2,)),
        "params/skip/kernel": ((0, 1), (2,)),
    }


@pytest.mark.parametrize("batch", [2, 1])  # batch 1: `x + bias` must not tag the bias
def test_decoder_with_flax_attention_every_kernel(batch):
    model = Decoder()
    ids = jnp.zeros((batch, 8), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.key(0), ids)["params"]
    abstract_ids = jax.ShapeDtypeStruct(ids.shape, ids.dtype)  # nothing is allocated
    lay = trace_layouts(lambda p, i: model.apply({"params": p}, i), params, abstract_ids)
    expected = {}
    for i in range(4):
        att = f"Block_{i}/MultiHeadDotProductAttention_0"
        for name in ("query", "key", "value"):
            expected[f"{att}/{name}/kernel"] = ((0,), (1, 2))  # (16, heads, head_dim)
        expected[f"{att}/out/kernel"] = ((0, 1), (2,))  # (heads, head_dim, 16)
        expected[f"Block_{i}/Dense_0/kernel"] = ((0,), (1,))
        expected[f"Block_{i}/Dense_1/kernel"] = ((0,), (1,))
    expected["head/kernel"] = ((0,), (1,))
    assert _axes(lay) == expected
    assert list(lay)[:4] == [
        f"Block_0/MultiHeadDotProductAttention_0/{n}/kernel"
        for n in ("query", "key", "value", "out")
    ]
    assert lay["Block_0/MultiHeadDotProductAttention_0/out/kernel"].shape == (2, 8, 16)


def test_conv_hwio_and_strided_dilated():
    class M(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), strides=2, kernel_dilation=1, name="c1")(x)
            x = nn.Conv(5, (1, 2), kernel_dilation=(1, 2), padding="VALID", name="c2")(x)
            return nn.Conv(2, (1,), name="c1d")(x.reshape(x.shape[0], -1, 5))

    x = jnp.ones((1, 8, 8, 3))
    params = jax.eval_shape(M().init, jax.random.key(0), x)
    lay = trace_layouts(M().apply, params, x)
    assert lay["params/c1/kernel"] == KernelLayout(
        shape=(3, 3, 3, 4), in_axes=(0, 1, 2), out_axes=(3,), op="conv"
    )
    assert lay["params/c2/kernel"].in_axes == (0, 1, 2)
    assert lay["params/c1d/kernel"].in_axes == (0, 1)


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 3, (3, 3), rngs=rngs)
        self.norm = nnx.LayerNorm(3, rngs=rngs)
        self.emb = nnx.Embed(5, 3, rngs=rngs)
        self.out = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x, ids):
        h = self.norm(self.conv(x)).mean(axis=(1, 2)) + self.emb(ids)
        return self.out(h)


def test_nnx_state_and_pure_dict():
    graphdef, state = nnx.split(_Net(nnx.Rngs(0)))
    x, ids = jnp.ones((2, 4, 4, 1)), jnp.zeros(2, jnp.int32)

    def apply(s, x, ids):
        return nnx.merge(graphdef, s)(x, ids)

    expected = {"conv/kernel": ((0, 1, 2), (3,)), "out/kernel": ((0,), (1,))}
    assert _axes(trace_layouts(apply, state, x, ids)) == expected
    pure = nnx.to_pure_dict(state)

    def apply_pure(p, x, ids):
        s = nnx.state(nnx.merge(graphdef, state))
        nnx.replace_by_pure_dict(s, p)
        return nnx.merge(graphdef, s)(x, ids)

    assert _axes(trace_layouts(apply_pure, pure, x, ids)) == expected


def test_plain_function_through_reshape_transpose_astype_jit_remat_custom_jvp():
    @jax.custom_jvp
    def act(x):
        return jnp.tanh(x)

    act.defjvp(lambda p, t: (act(p[0]), t[0] * (1 - jnp.tanh(p[0]) ** 2)))

    @jax.jit
    def inner(w, x):  # w stored (out=6, in=4) and used transposed
        return x @ w.T.astype(jnp.bfloat16).astype(jnp.float32)

    def f(p, x, *, scale):
        h = act(inner(p["a"], x)) * scale  # (B, 6)
        w = p["b"].reshape(2, 3, 5)  # stored (6, 5): in axis split into (2, 3)
        h = jax.checkpoint(lambda h, w: jnp.einsum("bij,ijo->bo", h.reshape(-1, 2, 3), w))(h, w)
        c = jnp.expand_dims(p["c"], 0)[0]  # (5, 1, 7) -> squeeze chain
        return jnp.einsum("bi,ij->bj", h, jnp.squeeze(c, 1)) + p["bias"]

    params = {
        "a": jnp.ones((6, 4)),
        "b": jnp.ones((6, 5)),
        "c": jnp.ones((5, 1, 7)),
        "bias": jnp.ones(7),
    }
    lay = trace_layouts(f, params, jnp.ones((3, 4)), scale=2.0)
    assert _axes(lay) == {"a": ((1,), (0,)), "b": ((0,), (1,)), "c": ((0,), (1, 2))}


def test_loops_consts_and_batched_operands():
    def f(p, x):
        x = jax.lax.fori_loop(0, 3, lambda i, h: jnp.tanh(h @ p["loop"]), x)
        x = jax.lax.cond(x.sum() > 0, lambda h: h @ p["cond"], lambda h: -h @ p["cond"], x)
        heads = jnp.einsum("hi,hio->ho", x.reshape(2, 2), p["per_head"])  # batched
        return heads.sum() + (x @ p["scan"]).sum()

    params = {
        "loop": jnp.eye(4),
        "cond": jnp.ones((4, 4)),
        "per_head": jnp.ones((2, 2, 3)),
        "scan": jnp.ones((4, 2)),
    }
    lay = trace_layouts(f, params, jnp.ones(4))
    assert _axes(lay) == {"loop": ((0,), (1,)), "cond": ((0,), (1,)), "scan": ((0,), (1,))}


def test_stacked_layers_under_scan_keep_the_layer_axis_as_output():
    def f(p, x):
        return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, p["layers"])[0]

    lay = trace_layouts(f, {"layers": jnp.ones((3, 4, 4))}, jnp.ones(4))
    assert lay["layers"] == KernelLayout(
        shape=(3, 4, 4), in_axes=(1,), out_axes=(0, 2), layer_axis=0
    )

    class Layer(nn.Module):
        @nn.compact
        def __call__(self, h, _):
            return nn.Dense(4)(h), None

    stack = nn.scan(Layer, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            return stack(name="stack")(x, None)[0]

    x = jnp.ones((2, 4))
    params = jax.eval_shape(Model().init, jax.random.key(0), x)
    lay = trace_layouts(Model().apply, params, x)
    assert _axes(lay) == {"params/stack/Dense_0/kernel": ((1,), (0, 2))}


def test_conflicting_layouts_name_the_path():
    def f(p, x):
        return x @ p["w"] + p["w"] @ x

    with pytest.raises(ValueError, match=r"'w'.*different layouts"):
        trace_layouts(f, {"w": jnp.ones((4, 4))}, jnp.ones(4))


def test_axis_split_between_in_and_out_is_an_error():
    def f(p, x):
        return jnp.einsum("bi,ij->bj", x, p["w"].reshape(4, 2).T.reshape(2, 4)[:, :2].T)

    # w.reshape(4,2) splits nothing; the slice ends the provenance: w is absent
    assert trace_layouts(f, {"w": jnp.ones(8)}, jnp.ones((1, 2))) == {}

    def g(p, x):  # one stored axis of 8 split into (2, 4): 2 contracted, 4 not
        return x @ p["w"].reshape(2, 4)

    with pytest.raises(ValueError, match=r"'w'.*both contracted"):
        trace_layouts(g, {"w": jnp.ones(8)}, jnp.ones((1, 2)))


def test_absent_kernels_and_same_dense_twice():
    dense = nn.Dense(4)
    params = dense.init(jax.random.key(0), jnp.ones((1, 4)))

    def f(v, x):
        return dense.apply(v, dense.apply(v, x))

    lay = trace_layouts(f, params, jnp.ones((2, 4)))
    assert list(lay) == ["params/kernel"]


def test_bad_inputs():
    with pytest.raises(TypeError, match="apply_fn"):
        trace_layouts("not a function", {"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="no leaves"):
        trace_layouts(lambda p, x: x, {}, jnp.ones(2))
    np.testing.assert_equal(trace_layouts(lambda p, x: x * p["w"], {"w": jnp.ones(2)}, 1.0), {})


def test_custom_vjp_tied_embedding_and_depthwise_conv():
    @jax.custom_vjp
    def mm(x, w):
        return x @ w

    mm.defvjp(lambda x, w: (mm(x, w), (x, w)), lambda r, g: (g @ r[1].T, r[0].T @ g))

    def f(p, x):
        return mm(x, p["w"].astype(jnp.float32))

    lay = trace_layouts(f, {"w": jnp.ones((3, 2), jnp.bfloat16)}, jnp.ones((4, 3)))
    assert _axes(lay) == {"w": ((0,), (1,))}

    class Tied(nn.Module):
        @nn.compact
        def __call__(self, ids):
            emb = nn.Embed(7, 4)
            return emb.attend(nn.Dense(4)(emb(ids)))

    ids = jnp.zeros(3, jnp.int32)
    lay = trace_layouts(Tied().apply, jax.eval_shape(Tied().init, jax.random.key(0), ids), ids)
    # a tied output projection makes the embedding a matmul kernel too: x @ embedding.T
    assert _axes(lay)["params/Embed_0/embedding"] == ((1,), (0,))

    conv = nn.Conv(4, (3, 3), feature_group_count=4)
    x = jnp.ones((1, 5, 5, 4))
    lay = trace_layouts(conv.apply, jax.eval_shape(conv.init, jax.random.key(0), x), x)
    assert lay["params/kernel"] == KernelLayout(
        shape=(3, 3, 1, 4), in_axes=(0, 1, 2), out_axes=(3,), op="conv"
    )


def test_kernels_transformed_elementwise_keep_their_layout():
    def f(p, x, mask):
        s = jnp.abs(p["q"]).max() / 7
        q = jnp.clip(jnp.round(p["q"] / s), -7, 7) * s  # fake quantization inside apply
        h = x @ (p["m"] * mask) + x @ q  # mixed with an input: m is no kernel here
        h = h + x @ (p["c"] * const)  # a constant mask keeps the layout
        lora = p["w"] + p["a"] @ p["b"]
        mixed = x @ (p["q"] + p["m"])  # two kernels mixed: no layout from this use
        return h @ lora + mixed.sum() + (x @ (p["z"] * p["z2"])).sum()

    params = {
        "q": jnp.ones((3, 4)),
        "m": jnp.ones((3, 4)),
        "w": jnp.ones((4, 2)),
        "a": jnp.ones((4, 1)),
        "b": jnp.ones((1, 2)),
        "z": jnp.ones((3, 1)),
        "z2": jnp.ones((3, 1)),
        "c": jnp.ones((3, 4)),
    }
    const = np.ones((3, 4), np.float32)
    lay = trace_layouts(f, params, jnp.ones((5, 3)), jnp.ones((3, 4)))
    assert _axes(lay) == {
        "q": ((0,), (1,)),
        "c": ((0,), (1,)),
        "a": ((1,), (0,)),
        "b": ((0,), (1,)),
        "w": ((0,), (1,)),
    }
