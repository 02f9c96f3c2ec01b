"""Calibration of layer stacks (``nn.scan``): each layer as a Python loop over the layers would be."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.calib import collect_stats, run_oneshot
from jaxzip.layout import KernelLayout, intercept_matmuls, trace_layouts
from jaxzip.quant._kernel import take_layer

LAYERS, D = 2, 16


class Block(nn.Module):
    """Pre-LN attention + MLP, as in a transformer block (a scan body: ``(h, _) -> (h, None)``)."""

    @nn.compact
    def __call__(self, h, _):
        a = nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(nn.LayerNorm()(h))
        h = h + a
        m = nn.Dense(2 * D, name="fc1")(nn.LayerNorm()(h))
        return h + nn.Dense(D, name="fc2")(jax.nn.gelu(m)), None


class Scanned(nn.Module):
    layers: int = LAYERS

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(D, name="inp")(x)
        stack = nn.scan(
            Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=self.layers
        )
        h = stack(name="stack")(h, None)[0]
        return nn.Dense(4, name="out")(h)


class Looped(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(D, name="inp")(x)
        for i in range(LAYERS):
            h = Block(name=f"layer_{i}")(h, None)[0]
        return nn.Dense(4, name="out")(h)


@pytest.fixture(scope="module")
def models():
    x = jax.random.normal(jax.random.key(0), (4, 8, 8))
    scanned = Scanned().init(jax.random.key(1), x)
    stack = scanned["params"]["stack"]
    looped = {
        "params": {
            "inp": scanned["params"]["inp"],
            "out": scanned["params"]["out"],
            **{f"layer_{i}": jax.tree.map(lambda a, i=i: a[i], stack) for i in range(LAYERS)},
        }
    }
    batches = [jax.random.normal(jax.random.key(k), (4, 8, 8)) for k in range(2, 6)]
    return scanned, looped, batches


def _layer(tree, name, i):
    """Layer ``i`` of kernel ``name`` (e.g. ``"fc1/kernel"``) in the looped tree."""
    node = tree["params"][f"layer_{i}"]
    for part in name.split("/"):
        node = node[part]
    return node


def _stacked(tree, name):
    node = tree["params"]["stack"]
    for part in name.split("/"):
        node = node[part]
    return node


KERNELS = ("attn/query/kernel", "attn/value/kernel", "attn/out/kernel", "fc1/kernel", "fc2/kernel")


def test_the_two_models_compute_the_same(models):
    scanned, looped, batches = models
    np.testing.assert_allclose(
        Scanned().apply(scanned, batches[0]), Looped().apply(looped, batches[0]), atol=1e-5
    )


def test_layouts_name_the_layer_axis_and_slice_to_the_loops_layouts(models):
    scanned, looped, batches = models
    stacked = trace_layouts(Scanned().apply, scanned, batches[0])
    loop = trace_layouts(Looped().apply, looped, batches[0])
    for name in KERNELS:
        lay = stacked[f"params/stack/{name}"]
        assert lay.layer_axis == 0 and lay.layers == LAYERS
        assert lay.layer_slice() == loop[f"params/layer_0/{name}"]
    assert stacked["params/inp/kernel"].layer_axis is None


@pytest.mark.parametrize(
    "spec",
    [
        jz.quant.QuantSpec(bits=3, axes=(-1,)),
        jz.quant.QuantSpec(bits=4, axes=(-1,), group_size=8),
    ],
    ids=["per-channel", "groups"],
)
def test_gptq_on_a_scanned_stack_equals_gptq_on_the_same_layers_in_a_python_loop(models, spec):
    scanned, looped, batches = models
    qs = jz.quant.gptq(Scanned().apply, scanned, batches, spec)
    ql = jz.quant.gptq(Looped().apply, looped, batches, spec)
    for name in KERNELS:
        a = _stacked(qs, name)
        assert a.shape == _stacked(scanned, name).shape
        for i in range(LAYERS):
            b = _layer(ql, name, i)
            np.testing.assert_array_equal(a.values[i], b.values, err_msg=f"{name} layer {i}")
            np.testing.assert_allclose(a.scale[i], b.scale, rtol=1e-6)
            np.testing.assert_allclose(
                jz.quant.dequantize(a)[i], jz.quant.dequantize(b), rtol=1e-6, atol=1e-7
            )
    np.testing.assert_array_equal(
        qs["params"]["out"]["kernel"].values, ql["params"]["out"]["kernel"].values
    )


def test_sparsegpt_and_wanda_masks_are_the_loops_layer_for_layer(models):
    scanned, looped, batches = models
    for method, kwargs in (
        (jz.prune.sparsegpt, {"structure": jz.prune.NByM(2, 4)}),  # 50%: the masked-GPTQ test
        (jz.prune.wanda, {"sparsity": 0.5}),
    ):
        out_s = method(Scanned().apply, scanned, batches, **kwargs)
        out_l = method(Looped().apply, looped, batches, **kwargs)
        ms, ml = (out_s[1], out_l[1]) if method is jz.prune.sparsegpt else (out_s, out_l)
        for name in KERNELS:
            for i in range(LAYERS):
                np.testing.assert_array_equal(_stacked(ms, name)[i], _layer(ml, name, i))
                if method is jz.prune.sparsegpt:  # the updated weights too
                    np.testing.assert_allclose(
                        _stacked(out_s[0], name)[i], _layer(out_l[0], name, i), rtol=1e-5, atol=1e-6
                    )
        assert float(jnp.mean(_stacked(ms, "fc1/kernel"))) == pytest.approx(0.5)


def test_gptq_with_a_mask_keeps_each_layers_zeros(models):
    scanned, looped, batches = models
    _, ms = jz.prune.sparsegpt(Scanned().apply, scanned, batches, sparsity=0.5)
    _, ml = jz.prune.sparsegpt(Looped().apply, looped, batches, sparsity=0.5)
    spec = jz.quant.QuantSpec(bits=4, axes=(-1,))
    qs = jz.quant.gptq(Scanned().apply, scanned, batches, spec, mask=ms, where=".*fc1/kernel")
    ql = jz.quant.gptq(Looped().apply, looped, batches, spec, mask=ml, where=".*fc1/kernel")
    a = _stacked(qs, "fc1/kernel")
    assert not bool(
        jnp.any(jnp.where(_stacked(ms, "fc1/kernel"), False, jz.quant.dequantize(a) != 0))
    )
    for i in range(LAYERS):
        np.testing.assert_array_equal(_stacked(ms, "fc1/kernel")[i], _layer(ml, "fc1/kernel", i))
        np.testing.assert_array_equal(a.values[i], _layer(ql, "fc1/kernel", i).values)


def test_collect_stats_gives_each_layer_its_own_statistics(models):
    scanned, looped, batches = models
    lay_s = trace_layouts(Scanned().apply, scanned, batches[0])
    lay_l = trace_layouts(Looped().apply, looped, batches[0])
    ss = collect_stats(Scanned().apply, scanned, batches, layouts=lay_s)
    sl = collect_stats(Looped().apply, looped, batches, layouts=lay_l)
    s = ss["params/stack/fc2/kernel"]
    assert s.count.shape == (LAYERS,) and s.xtx.shape == (LAYERS, 2 * D, 2 * D)
    for i in range(LAYERS):
        t = sl[f"params/layer_{i}/fc2/kernel"]
        np.testing.assert_allclose(s.xtx[i], t.xtx, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(s.absmax[i], t.absmax, rtol=1e-6)
        assert float(s.count[i]) == float(t.count) == 4 * 4 * 8
    # the layers differ: each sees its own inputs
    assert not np.allclose(s.sq_sum[0], s.sq_sum[1])


def test_run_oneshot_goes_layer_major_and_passes_the_slice_index(models):
    scanned, _, batches = models
    seen = []

    def process(path, leaf, layout, stats, layer=None):
        seen.append((path.split("/")[-2], layer, leaf.shape, layout.layer_axis, stats.count.shape))
        return leaf, layer

    out = run_oneshot(
        Scanned().apply,
        scanned,
        batches,
        process,
        hessian=False,
        where=".*fc./kernel",
        sequential=False,
    )
    assert [(s[0], s[1]) for s in seen] == [
        (k, (i,)) for i in range(LAYERS) for k in ("fc1", "fc2")
    ]
    assert seen[0][2:] == ((D, 2 * D), None, ())
    # the default stack joins the outputs of the layers (here, their indices) along the layer axis
    np.testing.assert_array_equal(out["params/stack/fc1/kernel"], [list(range(LAYERS))])


def test_too_few_tokens_names_the_layer(models):
    scanned, _, _ = models
    few = [jnp.ones((1, 2, 8))]
    with pytest.raises(
        ValueError, match=r"stack/fc2/kernel \(layer 0\): gptq needs at least n_in=32"
    ):
        jz.quant.gptq(
            Scanned().apply,
            scanned,
            few,
            jz.quant.QuantSpec(bits=4, axes=(-1,)),
            where=".*fc2/kernel",
        )


def test_intercept_with_layers_hooks_each_layer_of_a_reverse_scan():
    w = jax.random.normal(jax.random.key(0), (3, 4, 4))
    x = jax.random.normal(jax.random.key(1), (5, 4))

    def f(p, x):
        def step(h, w):
            return (jnp.tanh(h @ w), h.sum())

        return jax.lax.scan(step, x, p["layers"], reverse=True)

    def g(p, x):
        h, ys = x, []
        for i in (2, 1, 0):
            ys.insert(0, h.sum())
            h = jnp.tanh(h @ p["layers"][i])
        return h, jnp.stack(ys)

    lay = trace_layouts(f, {"layers": w}, x)

    def hook(path, x, xr, w, c):
        return (c(x, w), (xr**2).sum(0))

    out, aux = jax.jit(intercept_matmuls(f, lay, hook, layers=True))({"layers": w}, x)
    for a, b in zip(out, f({"layers": w}, x), strict=True):  # as the scan, up to XLA's fusion
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    expected = np.zeros((3, 4), np.float32)
    h = x
    for i in (2, 1, 0):  # layer i sees the input after the layers above it
        expected[i] = (h**2).sum(0)
        h = jnp.tanh(h @ w[i])
    np.testing.assert_allclose(aux["layers"], expected, rtol=1e-5)
    np.testing.assert_allclose(out[0], g({"layers": w}, x)[0], rtol=1e-5)


def test_stacks_inside_stacks_and_bad_flags_are_refused():
    w = jnp.ones((2, 3, 4, 4))

    def f(p, x):
        def inner(h, ws):
            return (jax.lax.scan(lambda h, w: (h @ w, None), h, ws)[0], None)

        return jax.lax.scan(inner, x, p["w"])[0]

    lay = trace_layouts(f, {"w": w}, jnp.ones((1, 4)))
    assert lay["w"].layer_axis is None  # two stacked axes: not one stack of layers

    def hook(path, x, xr, w, c):
        return (c(x, w), None)

    with pytest.raises(ValueError, match=r"'w' is a stack of layers inside another scan"):
        intercept_matmuls(f, lay, hook, layers=True)({"w": w}, jnp.ones((1, 4)))
    with pytest.raises(TypeError, match="layers: expected a bool"):
        intercept_matmuls(f, lay, hook, layers=1)
    with pytest.raises(ValueError, match="layer_axis must be None or one of the out_axes"):
        KernelLayout(shape=(2, 3), in_axes=(0,), out_axes=(1,), layer_axis=0)
    with pytest.raises(ValueError, match="not a stack of layers"):
        KernelLayout(shape=(2, 3), in_axes=(0,), out_axes=(1,)).layer_slice()


def test_stack_layers_refuses_layers_quantized_differently():
    a = jz.quant.quantize(jnp.ones((2, 3)), jz.quant.QuantSpec(bits=4, axes=(-1,)))
    b = jz.quant.quantize(jnp.ones((2, 3)), jz.quant.QuantSpec(bits=8, axes=(-1,)))
    with pytest.raises(ValueError, match="differ in bits, axes, groups or dtype"):
        jz.quant.stack_layers([a, b], 0)
    with pytest.raises(ValueError, match="at least one layer"):
        jz.quant.stack_layers([], 0)
    q = jz.quant.stack_layers([a, a], 1)
    assert q.axes == (1, 2) and q.scale.shape == (1, 2, 3)
    np.testing.assert_array_equal(jz.quant.dequantize(q)[:, 0], jz.quant.dequantize(a))
    one = take_layer(q, 1, 1)  # the inverse
    assert one.axes == a.axes and one.scale.shape == a.scale.shape
    np.testing.assert_array_equal(jz.quant.dequantize(one), jz.quant.dequantize(a))
    # along an axis without scales of its own, the layers share them: a hand-worked case
    shared = jz.quant.quantize(jnp.array([[1.0, 2.0], [3.0, 8.0]]), jz.quant.QuantSpec(bits=4))
    one = take_layer(shared, 0, 1)  # per-tensor scale 8/7: 3 -> 3 steps (3.43), 8 -> 7
    assert one.axes == () and one.scale.shape == (1,)
    np.testing.assert_array_equal(one.values, [3, 7])
    np.testing.assert_allclose(jz.quant.dequantize(one), [24 / 7, 8.0], rtol=1e-6)
    grouped = jz.quant.quantize(jnp.ones((4, 3)), jz.quant.QuantSpec(group_size=2, group_axis=0))
    with pytest.raises(ValueError, match="grouped along axis 0, so a group spans layers"):
        take_layer(grouped, 0, 0)


def _per_layer_equal(stacked, looped, name, **tol):
    for i in range(LAYERS):
        np.testing.assert_allclose(
            _stacked(stacked, name)[i], _layer(looped, name, i), err_msg=f"{name} {i}", **tol
        )


def test_smoothquant_and_w8a8_on_a_stack_equal_them_on_the_same_layers_in_a_loop(models):
    scanned, looped, batches = models
    runs = {}
    for model, params in ((Scanned(), scanned), (Looped(), looped)):
        lay = trace_layouts(model.apply, params, batches[0])
        smooth = jz.quant.smooth_quant(model.apply, params, batches, layouts=lay)
        fn, q = jz.quant.w8a8(
            model.apply,
            smooth.params,
            layouts=lay,
            calib_batches=batches,
            in_scales=smooth.in_scales,
        )
        runs[type(model).__name__] = smooth, jax.jit(fn)(q, batches[0]), q
    (s, ys, qs), (lo, yl, ql) = runs["Scanned"], runs["Looped"]
    for name in KERNELS:  # each layer's own scales, multiplied into its slice
        _per_layer_equal(s.params, lo.params, name, rtol=1e-5, atol=1e-6)
        for i in range(LAYERS):  # the int8 codes of each layer
            a, b = _stacked(qs, name), _layer(ql, name, i)
            np.testing.assert_array_equal(a.values[i], b.values, err_msg=f"{name} {i}")
        assert s.scales[f"params/stack/{name}"].shape[0] == LAYERS
    # 1/s folded into the stacked LayerNorm before q/k/v (as into each LayerNorm of the loop)
    assert s.folded["params/stack/attn/query/kernel"] == (
        "params/stack/LayerNorm_0/bias",
        "params/stack/LayerNorm_0/scale",
    )
    assert s.in_scales["params/stack/fc2/kernel"].shape == (LAYERS, 2 * D)  # not foldable
    np.testing.assert_allclose(ys, yl, atol=1e-5)  # static int8 ranges per layer, integer path
    assert float(jnp.max(jnp.abs(ys - Scanned().apply(scanned, batches[0])))) > 1e-3


def test_awq_on_a_stack_searches_each_layer_as_the_loop_does(models):
    scanned, looped, batches = models
    ra, rl = (
        jz.quant.awq(m.apply, p, batches, layouts=trace_layouts(m.apply, p, batches[0]), bits=3)
        for m, p in ((Scanned(), scanned), (Looped(), looped))
    )
    for name in KERNELS:
        loop = tuple(rl.alpha[f"params/layer_{i}/{name}"] for i in range(LAYERS))
        assert ra.alpha[f"params/stack/{name}"] == loop
        _per_layer_equal(ra.params, rl.params, name, rtol=1e-5, atol=1e-6)
    assert any(a > 0 for a in ra.alpha["params/stack/fc2/kernel"])  # a real search, not RTN

    lay = trace_layouts(Scanned().apply, scanned, batches[0])  # unfolded: divided per layer
    r = jz.quant.awq(Scanned().apply, scanned, batches, layouts=lay, bits=3, fold=False)
    fn = jz.quant.make_scaled_apply(Scanned().apply, layouts=lay, in_scales=r.in_scales)
    y = jax.jit(fn)(r.params, batches[0])
    np.testing.assert_allclose(y, Scanned().apply(scanned, batches[0]), atol=1e-5)
    bad = {**r.in_scales, "params/stack/fc2/kernel": np.ones(2 * D)}
    with pytest.raises(ValueError, match=r"in_scales\['params/stack/fc2/kernel'\]: .*\(2, 32\)"):
        jz.quant.make_scaled_apply(Scanned().apply, layouts=lay, in_scales=bad)


_SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import jaxzip as jz

def apply(p, x):
    def layer(h, w):
        return h + jnp.tanh(h @ w["w1"]) @ w["w2"], None
    return jax.lax.scan(layer, x, p["stack"])[0] @ p["head"]

keys = jax.random.split(jax.random.key(0), 4)
params = {
    "stack": {"w1": jax.random.normal(keys[0], (4, 8, 16)) / 3,
              "w2": jax.random.normal(keys[1], (4, 16, 8)) / 4},
    "head": jax.random.normal(keys[2], (8, 4)),
}
batches = [jax.random.normal(k, (16, 8)) for k in jax.random.split(keys[3], 3)]
mesh = jax.make_mesh((2, 2), ("layers", "data"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
specs = {"stack": {"w1": P("layers", "data", None), "w2": P("layers", None, "data")},
         "head": P("data", None)}
placed = jax.tree.map(lambda a, s: jax.device_put(a, NamedSharding(mesh, s)), params, specs)
placed_batches = [jax.device_put(b, NamedSharding(mesh, P("data"))) for b in batches]
spec = jz.quant.QuantSpec(bits=3, axes=(-1,))
runs = {name: jz.quant.gptq(apply, p, b, spec)
        for name, p, b in (("single", params, batches), ("sharded", placed, placed_batches))}
def codes(out):
    found = {"head": out["head"], "stack/w1": out["stack"]["w1"], "stack/w2": out["stack"]["w2"]}
    return {k: [np.asarray(q.values).tolist(), np.asarray(q.scale).tolist()]
            for k, q in found.items()}
RESULT = {name: codes(out) for name, out in runs.items()}
RESULT["split"] = not placed["stack"]["w1"].sharding.is_fully_replicated
"""


def test_a_layer_stack_sharded_over_its_layers_calibrates_as_on_one_device(four_devices):
    result = four_devices(_SHARDED)
    assert result["split"]
    single, sharded = result["single"], result["sharded"]
    assert sorted(single) == ["head", "stack/w1", "stack/w2"] == sorted(sharded)
    for path, (values, scale) in single.items():
        np.testing.assert_array_equal(sharded[path][0], values, err_msg=path)
        np.testing.assert_allclose(sharded[path][1], scale, rtol=1e-5, err_msg=path)
        assert len(np.unique(values)) > 4, path  # 3 bits: real codes, not all zero


def test_only_layers_collects_one_layer_of_a_stack(models):
    scanned, _, batches = models
    lay = trace_layouts(Scanned().apply, scanned, batches[0])
    every = collect_stats(Scanned().apply, scanned, batches, layouts=lay, where=".*fc2/kernel")
    one = collect_stats(
        Scanned().apply,
        scanned,
        batches,
        layouts=lay,
        where=".*fc2/kernel",
        only_layers={"params/stack/fc2/kernel": 0},
    )
    a, b = every["params/stack/fc2/kernel"], one["params/stack/fc2/kernel"]
    for field in ("count", "xtx", "sq_sum", "absmax", "abs_sum"):
        np.testing.assert_array_equal(getattr(b, field)[0], getattr(a, field)[0])
        assert not np.any(np.asarray(getattr(b, field))[1:]), field

    with pytest.raises(ValueError, match=r"only_layers\['params/stack/fc2/kernel'\]: .* 0\.\.1"):
        collect_stats(
            Scanned().apply,
            scanned,
            batches,
            layouts=lay,
            only_layers={"params/stack/fc2/kernel": 5},
        )
    with pytest.raises(ValueError, match=r"only_layers: 'params/inp/kernel' is not a stack"):
        collect_stats(
            Scanned().apply, scanned, batches, layouts=lay, only_layers={"params/inp/kernel": 0}
        )
    with pytest.raises(TypeError, match="only_layers: expected a mapping"):
        collect_stats(Scanned().apply, scanned, batches, layouts=lay, only_layers=[0])


def test_a_process_without_layer_is_refused_on_a_stack(models):
    scanned, _, batches = models
    with pytest.raises(TypeError, match=r"run_oneshot: process must accept a layer= keyword: "):
        run_oneshot(
            Scanned().apply,
            scanned,
            batches,
            lambda path, leaf, layout, stats: (leaf, None),
            hessian=False,
            where=".*fc1/kernel",
        )


def test_make_scaled_apply_takes_each_layer_of_a_quantized_stack(models):
    """A k-means stack (shared codebook) and a QArray stack whose scales the layers share."""
    scanned, _, batches = models
    lay = trace_layouts(Scanned().apply, scanned, batches[0])
    fn = jax.jit(jz.quant.make_scaled_apply(Scanned().apply, layouts=lay))
    spec = jz.quant.QuantSpec(bits=4, axes=(2,))  # per output, shared by the layers
    for q in (
        jz.quant.kmeans_params(scanned, bits=3, where=".*stack/fc1/kernel"),
        jz.quant.quantize_params(scanned, [(".*stack/fc2/kernel", spec)]),
    ):
        want = Scanned().apply(jz.quant.dequantize_params(q), batches[0])
        np.testing.assert_allclose(fn(q, batches[0]), want, atol=1e-5)


def test_a_stacks_layers_share_one_compiled_step_per_group(models, monkeypatch):
    # GPTQ calibrates each layer of the stack in turn; the statistics step of a group of
    # kernels (q/k/v, out, fc1, fc2) is made and compiled once for all layers, so a deeper
    # stack makes no more steps (one per group, plus inp and out)
    made = []
    real = jz.calib._stats._jitted_step
    monkeypatch.setattr(
        "jaxzip.calib._stats._jitted_step", lambda *a, **k: made.append(1) or real(*a, **k)
    )
    _, _, batches = models
    spec = jz.quant.QuantSpec(bits=4, axes=(-1,))
    counts = {}
    for layers in (2, 3):
        params = Scanned(layers=layers).init(jax.random.key(1), batches[0])
        made.clear()
        q = jz.quant.gptq(Scanned(layers=layers).apply, params, batches[:2], spec)
        counts[layers] = len(made)
        assert q["params"]["stack"]["fc1"]["kernel"].values.shape == (layers, D, 2 * D)
    assert counts[2] == counts[3] == 6
