"""Tests for jaxzip/layout/_intercept.py and _rows.py: hooks at matmuls and convs."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxzip.layout import intercept_matmuls, to_matrix, trace_layouts

from ._models import Decoder


def _identity(path, x, x_rows, w, compute):
    return compute(x, w), None


def _check_rows(path, x, x_rows, w, compute):
    """The hook that checks rows @ to_matrix(w) == the equation, and rows=True recomputes it."""
    y = compute(x, w)
    leaf = jnp.asarray(w)
    lay = compute.layout
    if compute.w_layout != lay:  # the model rearranged the stored kernel: undo via the test's map
        leaf = None
    return y, {
        "direct": (x_rows @ to_matrix(leaf, lay)) if leaf is not None else None,
        "y": y,
        "rows": compute(x_rows, w, rows=True),
        "n_rows": compute.n_rows,
        "back": compute.y_from_rows(x_rows @ compute.w_matrix(w)),
    }


def test_identity_is_bit_exact_under_jit_on_the_decoder():
    model = Decoder(layers=1)
    ids = jax.random.randint(jax.random.key(1), (2, 8), 0, 11)
    params = jax.jit(model.init)(jax.random.key(0), ids)
    lay = trace_layouts(model.apply, params, ids)
    out, aux = jax.jit(intercept_matmuls(model.apply, lay, _identity))(params, ids)
    ref = jax.jit(model.apply)(params, ids)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    assert set(aux) == set(lay) and all(v is None for v in aux.values())


class _Convs(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (3, 3), strides=2, padding="SAME", name="a")(x)
        x = nn.Conv(3, (2, 3), kernel_dilation=(2, 1), padding=((1, 0), (2, 1)), name="b")(x)
        return nn.Conv(2, (3,), padding="VALID", name="c")(x.reshape(x.shape[0], -1, 3))


@pytest.mark.parametrize("model", ["convs", "nchw"])
def test_conv_patches_follow_to_matrix_order(model):
    x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))
    if model == "convs":
        apply = _Convs().apply
        params = _Convs().init(jax.random.key(1), x)
    else:  # explicit NCHW / OIHW dimension numbers, kernel stored OIHW
        params = {"k": jax.random.normal(jax.random.key(1), (5, 3, 2, 3))}

        def apply(p, x):
            x = jnp.transpose(x, (0, 3, 1, 2))
            return jax.lax.conv_general_dilated(
                x,
                p["k"],
                (1, 2),
                ((1, 1), (0, 2)),
                rhs_dilation=(2, 1),
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
            )

    lay = trace_layouts(apply, params, x)
    if model == "nchw":
        assert lay["k"].in_axes == (1, 2, 3) and lay["k"].out_axes == (0,)
    out, aux = jax.jit(intercept_matmuls(apply, lay, _check_rows))(params, x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(apply)(params, x)))
    for path, a in aux.items():
        spec_y = np.asarray(a["y"])
        o_axis = 1 if model == "nchw" else spec_y.ndim - 1
        y_rows = np.moveaxis(spec_y, o_axis, -1).reshape(-1, spec_y.shape[o_axis])
        assert a["direct"].shape[0] == a["n_rows"] == y_rows.shape[0], path
        np.testing.assert_allclose(np.asarray(a["direct"]), y_rows, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(a["rows"]), spec_y, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(a["back"]), spec_y, rtol=1e-5, atol=1e-5)


def test_rearranged_kernels_rows_in_stored_order():
    """x_rows use the STORED kernel's to_matrix order even when the model transposes/reshapes."""

    def f(p, x):
        h = jnp.einsum("bi,oi->bo", x, p["t"])  # stored (out=5, in=4)
        h = jnp.einsum("bji,oji->bo", h.reshape(-1, 1, 5), p["r"].reshape(3, 1, 5))  # (out, in)
        w = p["lhs"].transpose(1, 0, 2).reshape(4, 3)  # stored (2, 2, 3): rows permuted
        y = jax.lax.dot_general(w, x, (((0,), (1,)), ((), ())))  # the kernel is the lhs
        return h.sum() + y

    params = {
        "t": jax.random.normal(jax.random.key(0), (5, 4)),
        "r": jax.random.normal(jax.random.key(1), (3, 5)),
        "lhs": jax.random.normal(jax.random.key(2), (2, 2, 3)),
    }
    x = jax.random.normal(jax.random.key(3), (2, 4))
    lay = trace_layouts(f, params, x)
    assert {p: v.in_axes for p, v in lay.items()} == {"t": (1,), "r": (1,), "lhs": (0, 1)}

    def hook(path, x, x_rows, w, compute):
        y = compute(x, w)
        back = compute.y_from_rows(compute.rows_of(x) @ compute.w_matrix(w))
        checks = (compute.x_from_rows(x_rows), x, back)
        return y, (x_rows, y, compute(x_rows, w, rows=True), checks)

    out, aux = jax.jit(intercept_matmuls(f, lay, hook))(params, x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(f)(params, x)))
    for path in ("t", "r", "lhs"):
        x_back, x_orig, y_back = aux[path][3]
        np.testing.assert_array_equal(x_back, x_orig)  # x_from_rows inverts rows_of exactly
        np.testing.assert_allclose(y_back, aux[path][1], rtol=1e-5, atol=1e-6)
    for path in ("t", "r"):
        x_rows, y, y_rows, _ = aux[path]
        direct = x_rows @ to_matrix(params[path], lay[path])
        np.testing.assert_allclose(direct, np.asarray(y).reshape(direct.shape), rtol=1e-5)
        np.testing.assert_allclose(y_rows, y, rtol=1e-5, atol=1e-6)
    x_rows, y, y_rows, _ = aux["lhs"]  # the kernel is the lhs: y is (out, rows)
    direct = x_rows @ to_matrix(params["lhs"], lay["lhs"])
    np.testing.assert_allclose(direct.T, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_rows, y, rtol=1e-5, atol=1e-6)


def test_hook_can_change_x_and_w_and_static_kwargs_pass_through():
    dense = nn.Dense(3)
    x = jnp.ones((2, 4))
    params = dense.init(jax.random.key(0), x)

    def apply(v, x, *, double):
        return dense.apply(v, x * (2.0 if double else 1.0))

    lay = trace_layouts(apply, params, x, double=True)

    def zero_w(path, x, x_rows, w, compute):
        return compute(x, jnp.zeros_like(w)), jnp.abs(x_rows).max()

    out, aux = jax.jit(intercept_matmuls(apply, lay, zero_w), static_argnames="double")(
        params, x, double=True
    )
    np.testing.assert_array_equal(out, jnp.broadcast_to(params["params"]["bias"], (2, 3)))
    assert float(aux["params/kernel"]) == 2.0


def test_kernel_used_twice_needs_combine():
    def f(p, x):
        return (x @ p["w"]) @ p["w"]

    params, x = {"w": jnp.eye(3) * 2}, jnp.ones((1, 3))
    lay = trace_layouts(f, params, x)

    def hook(path, x, x_rows, w, compute):
        return compute(x, w), x_rows.sum()

    with pytest.raises(ValueError, match=r"'w' is used by more than one matmul.*combine"):
        intercept_matmuls(f, lay, hook)(params, x)
    _, aux = intercept_matmuls(f, lay, hook, combine=jnp.add)(params, x)
    assert float(aux["w"]) == 3.0 + 6.0


def test_loops_where_and_bad_inputs():
    def f(p, x):
        x = jax.lax.fori_loop(0, 2, lambda i, h: h @ p["loop"], x)
        return x @ p["w"] + p["b"]

    params = {"loop": jnp.eye(3), "w": jnp.ones((3, 2)), "b": jnp.ones(2)}
    x = jnp.ones((1, 3))
    lay = trace_layouts(f, params, x)
    with pytest.raises(ValueError, match=r"'loop'.*inside a (scan|while) body"):
        intercept_matmuls(f, lay, _identity)(params, x)
    stacked = {"layers": jnp.ones((2, 3, 3))}

    def g(p, x):
        return jax.lax.scan(lambda h, w: (h @ w, None), x, p["layers"])[0]

    lay_g = trace_layouts(g, stacked, x)
    with pytest.raises(ValueError, match=r"'layers'.*inside a scan body") as info:
        intercept_matmuls(g, lay_g, _identity)(stacked, x)
    assert "stack of layers scanned over its first axis" in str(info.value)
    assert "jaxzip.quant.layout_spec (one scale per layer and output)" in str(info.value)
    out, aux = intercept_matmuls(f, lay, _identity, where="w")(params, x)
    np.testing.assert_array_equal(out, f(params, x))
    assert list(aux) == ["w"]
    with pytest.raises(ValueError, match=r"selects 'b', which no matmul"):
        intercept_matmuls(f, lay, _identity, where="w|b")(params, x)
    with pytest.raises(ValueError, match="selects no leaf"):
        intercept_matmuls(f, lay, _identity, where="nothing")(params, x)
    with pytest.raises(ValueError, match=r"'w'.*no matmul or conv of apply_fn uses it"):
        intercept_matmuls(lambda p, x: x[:, :2] + p["b"], lay, _identity, where="w")(params, x)
    with pytest.raises(ValueError, match=r"hook at 'w': expected y of shape \(1, 2\)"):
        intercept_matmuls(f, lay, lambda p, x, xr, w, c: (xr, None), where="w")(params, x)
    with pytest.raises(TypeError, match="tuple"):
        intercept_matmuls(f, lay, lambda p, x, xr, w, c: c(x, w), where="w")(params, x)
    with pytest.raises(ValueError, match=r"layouts\['w'\]: expected shape|expected shape"):
        intercept_matmuls(f, lay, _identity)({**params, "w": jnp.ones((2, 3))}, x)
    with pytest.raises(TypeError, match="hook"):
        intercept_matmuls(f, lay, None)
    with pytest.raises(TypeError, match="layouts"):
        intercept_matmuls(f, list(lay), _identity)(params, x)
    with pytest.raises(ValueError, match=r"'w': apply_fn contracts axes \(1,\)"):
        intercept_matmuls(lambda p, x: p["w"] @ x[0, :2], lay, _identity, where="w")(params, x)


def test_eager_and_jit_agree():
    model = nn.Sequential([nn.Dense(5), nn.relu, nn.Dense(2)])
    x = jax.random.normal(jax.random.key(0), (3, 4))
    params = model.init(jax.random.key(1), x)
    lay = trace_layouts(model.apply, params, x)
    fn = intercept_matmuls(model.apply, lay, lambda p, x, xr, w, c: (c(x, w), (xr**2).sum(0)))
    (o1, a1), (o2, a2) = fn(params, x), jax.jit(fn)(params, x)
    np.testing.assert_allclose(o1, o2, rtol=1e-6)
    for p in a1:
        np.testing.assert_allclose(a1[p], a2[p], rtol=1e-6)


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(3, 4, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, rngs=rngs)
        self.b = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.b(nnx.relu(self.a(x)).astype(jnp.float32))


def test_nnx_bfloat16_and_grouped_conv():
    graphdef, state = nnx.split(_Net(nnx.Rngs(0)))

    def apply(s, x):
        return nnx.merge(graphdef, s)(x)

    x = jax.random.normal(jax.random.key(0), (2, 3)).astype(jnp.bfloat16)
    lay = trace_layouts(apply, state, x)
    assert list(lay) == ["a/kernel", "b/kernel"]

    def hook(path, x, x_rows, w, compute):
        return compute(x, w), x_rows

    out, aux = jax.jit(intercept_matmuls(apply, lay, hook))(state, x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(jax.jit(apply)(state, x)))
    assert aux["a/kernel"].dtype == jnp.bfloat16 and aux["a/kernel"].shape == (2, 3)
    np.testing.assert_array_equal(np.asarray(aux["a/kernel"]), np.asarray(x))

    conv = nn.Conv(4, (3, 3), feature_group_count=2)
    x = jnp.ones((1, 5, 5, 4))
    params = conv.init(jax.random.key(0), x)
    lay = trace_layouts(conv.apply, params, x)
    with pytest.raises(ValueError, match=r"'params/kernel'.*grouped or depthwise.*where="):
        intercept_matmuls(conv.apply, lay, _identity)(params, x)
    conv = nn.Conv(4, (3, 3))
    params = conv.init(jax.random.key(0), x)
    lay = trace_layouts(conv.apply, params, x)

    def inverse(path, x, x_rows, w, compute):
        return compute(compute.x_from_rows(x_rows), w), None

    with pytest.raises(ValueError, match="patches overlap"):
        intercept_matmuls(conv.apply, lay, inverse)(params, x)


def test_two_selected_kernels_multiplied_together_is_an_error():
    def f(p, x):
        return x @ (p["a"] @ p["b"])

    params = {"a": jnp.ones((3, 2)), "b": jnp.ones((2, 3))}
    x = jnp.ones((1, 3))
    lay = trace_layouts(f, params, x)
    assert set(lay) == {"a", "b"}  # each is the other's "activation"
    with pytest.raises(ValueError, match="two selected kernels"):
        intercept_matmuls(f, lay, _identity)(params, x)
    out, aux = intercept_matmuls(f, lay, _identity, where="a")(params, x)
    np.testing.assert_array_equal(out, f(params, x))
    assert list(aux) == ["a"]


def test_kernel_fake_quantized_inside_apply():
    def f(p, x):
        s = jnp.abs(p["w"]).max() / 7
        return x @ (jnp.round(p["w"].T / s) * s).T

    params = {"w": jax.random.normal(jax.random.key(0), (3, 2))}
    x = jax.random.normal(jax.random.key(1), (4, 3))
    lay = trace_layouts(f, params, x)
    out, aux = jax.jit(intercept_matmuls(f, lay, _check_rows))(params, x)
    np.testing.assert_array_equal(out, jax.jit(f)(params, x))
    np.testing.assert_allclose(aux["w"]["rows"], aux["w"]["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("transpose_kernel", [False, True])
def test_conv_transpose_rows_in_stored_order(transpose_kernel):
    """ConvTranspose: lhs dilation, and with transpose_kernel a reversed, swapped kernel."""
    model = nn.ConvTranspose(3, (3, 2), strides=(2, 1), transpose_kernel=transpose_kernel)
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 2))
    params = model.init(jax.random.key(1), x)
    lay = trace_layouts(model.apply, params, x)
    kernel = params["params"]["kernel"]
    assert lay["params/kernel"].in_axes == ((0, 1, 3) if transpose_kernel else (0, 1, 2))

    def hook(path, x, x_rows, w, compute):
        y = compute(x, w)
        return y, (x_rows @ to_matrix(kernel, lay[path]), compute(x_rows, w, rows=True))

    out, aux = jax.jit(intercept_matmuls(model.apply, lay, hook))(params, x)
    ref = jax.jit(model.apply)(params, x)
    np.testing.assert_array_equal(out, ref)
    y = np.asarray(ref - params["params"]["bias"])
    direct, rows = aux["params/kernel"]
    np.testing.assert_allclose(direct, y.reshape(-1, 3), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rows, y, rtol=1e-5, atol=1e-5)


def _stack_model(p, x, reverse=False):
    """A plain-function layer stack: lax.scan slices ``p["stack"]`` into layers."""

    def body(h, w):
        return jnp.tanh(h @ w["k"] + w["b"]), None

    h, _ = jax.lax.scan(body, x, p["stack"], reverse=reverse)
    return h @ p["out"]


def _stack_params(layers, d=4):
    k = jax.random.split(jax.random.key(layers), 3)
    stack = {
        "k": jax.random.normal(k[0], (layers, d, d)),
        "b": jax.random.normal(k[1], (layers, d)),
    }
    return {"stack": stack, "out": jax.random.normal(k[2], (d, 2))}


@pytest.mark.parametrize("reverse", [False, True])
def test_rolled_stack_gives_the_unrolled_outputs_and_per_layer_values(reverse):
    params = _stack_params(3)
    x = jax.random.normal(jax.random.key(9), (5, 4))
    f = lambda p, x: _stack_model(p, x, reverse)  # noqa: E731
    lay = trace_layouts(f, params, x)
    assert lay["stack/k"].layer_axis == 0

    def hook(path, x, x_rows, w, compute):  # the layer index may be traced: use it as an array
        layer = -1 if compute.layer is None else compute.layer  # None: not a stack
        return compute(x, w), {"rows": x_rows.sum(axis=0), "layer": jnp.asarray(layer)}

    runs = {
        rolled: jax.jit(intercept_matmuls(f, lay, hook, layers=True, rolled=rolled))
        for rolled in (False, True)
    }
    (y0, a0), (y1, a1) = runs[False](params, x), runs[True](params, x)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y1, jax.jit(f)(params, x), rtol=1e-6, atol=1e-6)
    assert set(a1) == {"stack/k", "out"}
    np.testing.assert_array_equal(a1["stack/k"]["layer"], [0, 1, 2])  # layer i at index i
    np.testing.assert_allclose(a1["stack/k"]["rows"], a0["stack/k"]["rows"], rtol=1e-6, atol=1e-6)
    assert a1["stack/k"]["rows"].shape == (3, 4)


def test_rolled_program_does_not_grow_with_the_number_of_layers():
    x = jnp.ones((2, 4))
    sizes = {}
    for layers in (2, 6):
        params = _stack_params(layers)
        lay = trace_layouts(_stack_model, params, x)
        for rolled in (False, True):
            fn = intercept_matmuls(_stack_model, lay, _identity, layers=True, rolled=rolled)
            sizes[layers, rolled] = str(jax.make_jaxpr(fn)(params, x)).count("dot_general")
    assert sizes[2, True] == sizes[6, True] == 2  # the body's matmul once, and the head's
    assert sizes[6, False] == 7  # unrolled: the body's once per layer


def test_rolled_folds_a_kernel_the_scan_does_not_slice_as_unrolled_does():
    # a kernel every layer uses (a scan constant): its values are folded over the layers
    def f(p, x):
        def body(h, w):
            return jnp.tanh(h @ w + h @ p["shared"]), None

        return jax.lax.scan(body, x, p["stack"])[0]

    k = jax.random.split(jax.random.key(3))
    params = {
        "stack": jax.random.normal(k[0], (3, 4, 4)),
        "shared": jax.random.normal(k[1], (4, 4)),
    }
    x = jnp.ones((2, 4))
    lay = trace_layouts(f, params, x)
    hook = lambda path, x, xr, w, c: (c(x, w), xr.sum(axis=0))  # noqa: E731
    add = lambda a, b: a + b  # noqa: E731
    got = {
        rolled: intercept_matmuls(f, lay, hook, layers=True, rolled=rolled, combine=add)(params, x)
        for rolled in (False, True)
    }
    np.testing.assert_allclose(got[True][0], got[False][0], rtol=1e-6)
    for path in ("stack", "shared"):
        np.testing.assert_allclose(got[True][1][path], got[False][1][path], rtol=1e-5, atol=1e-6)
    assert got[True][1]["stack"].shape == (3, 4) and got[True][1]["shared"].shape == (4,)
    fn = intercept_matmuls(f, lay, hook, layers=True, rolled=True)  # three uses, no combine
    with pytest.raises(ValueError, match="'shared' is used by more than one matmul"):
        fn(params, x)
    with pytest.raises(TypeError, match="rolled: expected a bool"):
        intercept_matmuls(f, lay, _identity, rolled=1)
