"""``jz.quant.gptq`` on models: traced kernels, sequential calibration, codec round trip."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
import jaxzip.calib
from jaxzip.layout import to_matrix, trace_layouts
from jaxzip.quant import QuantSpec, dequantize, gptq, gptq_quantize_matrix


@pytest.fixture
def calls(monkeypatch):
    """Records the ``where`` of every calibration pass (``collect_with``, the driver's
    ``collect_stats`` that reuses compiled steps)."""
    log = []
    real = jz.calib._oneshot.collect_with

    def collect(*a, **k):
        log.append(k.get("where"))
        return real(*a, **k)

    monkeypatch.setattr("jaxzip.calib._oneshot.collect_with", collect)  # the driver's passes
    return log


class Branchy(nn.Module):
    """Two kernels read the same input (like q/k/v), then a third reads their sum."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(16, name="a")(x) + nn.Dense(16, name="b")(x)
        return nn.Dense(4, name="c")(nn.relu(h))


def _setup(seed=0):
    model = Branchy()
    params = model.init(jax.random.key(seed), jnp.ones((1, 8)))
    mix = jax.random.normal(jax.random.key(99), (8, 8)) * 0.5 + jnp.eye(8)
    batches = [jax.random.normal(jax.random.key(i), (24, 8)) @ mix for i in range(2)]
    return model, params, batches


SPEC = QuantSpec(bits=3, axes=(-1,))


def test_sequential_matches_matrix_gptq_and_groups_shared_inputs(calls):
    model, params, batches = _setup()
    q = gptq(model.apply, params, batches, SPEC, block_size=8)
    # a and b read x: one pass for both; c is calibrated on the quantized a, b: a second pass
    assert len(calls) == 2
    p = params["params"]

    def xtx(f):
        return sum(f(b).T @ f(b) for b in batches)

    for name in ("a", "b"):
        ref = gptq_quantize_matrix(p[name]["kernel"], xtx(lambda b: b), SPEC, block_size=8)
        np.testing.assert_array_equal(q["params"][name]["kernel"].values, ref.values)

    def hid(b, kernel):
        return nn.relu(sum(b @ kernel(n) + p[n]["bias"] for n in ("a", "b")))

    h_c = xtx(lambda b: hid(b, lambda n: dequantize(q["params"][n]["kernel"])))
    ref_c = gptq_quantize_matrix(p["c"]["kernel"], h_c, SPEC, block_size=8)
    np.testing.assert_array_equal(q["params"]["c"]["kernel"].values, ref_c.values)
    assert q["params"]["c"]["bias"] is p["c"]["bias"]  # other leaves untouched
    # not sequential: one pass, c calibrated on the float model
    calls.clear()
    q2 = gptq(model.apply, params, batches, SPEC, block_size=8, sequential=False)
    assert len(calls) == 1
    h_f = xtx(lambda b: hid(b, lambda n: p[n]["kernel"]))
    ref_c2 = gptq_quantize_matrix(p["c"]["kernel"], h_f, SPEC, block_size=8)
    np.testing.assert_array_equal(q2["params"]["c"]["kernel"].values, ref_c2.values)


def test_grouped_multi_axis_kernel_and_codec_round_trip(calls, tmp_path):
    # DenseGeneral over two input axes (heads, head_dim) -> out: an attention output kernel
    model = nn.DenseGeneral(features=6, axis=(-2, -1))
    x = jax.random.normal(jax.random.key(1), (40, 2, 8))
    params = model.init(jax.random.key(0), x[:1])
    spec = QuantSpec(bits=4, axes=(-1,), group_size=4)
    q = gptq(model.apply, params, [x], spec, act_order=True)
    k = q["params"]["kernel"]
    assert (k.shape, k.axes, k.group_axis, k.group_size) == ((2, 8, 6), (0, 2), 1, 4)
    assert k.scale.shape == (2, 2, 6)
    lay = trace_layouts(model.apply, params, x)["params/kernel"]
    xr = x.reshape(40, 16)
    ref = gptq_quantize_matrix(
        to_matrix(params["params"]["kernel"], lay), xr.T @ xr, spec, act_order=True
    )
    np.testing.assert_array_equal(to_matrix(k.values, lay), ref.values)
    np.testing.assert_allclose(to_matrix(dequantize(k), lay), dequantize(ref), rtol=1e-6)
    jz.codec.save(tmp_path / "m.jz", q)
    back = jz.codec.load(tmp_path / "m.jz")
    for a, b in zip(jax.tree.leaves(q), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a group size that does not divide the last input axis (8) is refused with the sizes
    with pytest.raises(ValueError, match=r"params/kernel: group_size=16 .* \[1, 2, 4, 8\]"):
        gptq(model.apply, params, [x], QuantSpec(bits=4, axes=(-1,), group_size=16))


def test_bad_inputs(calls):
    model, params, batches = _setup()
    with pytest.raises(ValueError, match=r"params/a/kernel: gptq needs at least n_in=8 .* got 4"):
        gptq(model.apply, params, [batches[0][:4]], SPEC)
    with pytest.raises(ValueError, match=r"2\.\.8 bits"):
        gptq(model.apply, params, batches, QuantSpec(bits=1, symmetric=False))
    with pytest.raises(ValueError, match="no matmul or conv"):
        gptq(model.apply, params, batches, SPEC, where=r".*/bias")
    with pytest.raises(ValueError, match="selects no leaf"):
        gptq(model.apply, params, batches, SPEC, where=r"nothing")
    with pytest.raises(ValueError, match=r"spec\.axes"):
        gptq(model.apply, params, batches, QuantSpec(bits=4, axes=(0,)))
    with pytest.raises(ValueError, match="batches is empty"):
        gptq(model.apply, params, [], SPEC)
    mask = jax.tree.map(lambda x: jnp.ones(x.shape, bool), params)
    passes = len(calls)
    with pytest.raises(
        ValueError,
        match=r"gptq: mask: expected the params' structure and shapes; path 'params/a/bias'",
    ):
        gptq(model.apply, params, batches, SPEC, mask=mask["params"])
    bad = jax.tree.map(lambda x: x.astype(jnp.float32), mask)
    with pytest.raises(
        ValueError,
        match=r"gptq: mask: expected bool leaves, got dtype float32 at path 'params/a/bias'",
    ):
        gptq(model.apply, params, batches, SPEC, mask=bad)
    with pytest.raises(
        ValueError, match=r"at path 'params/a/kernel': shape \(8, 16\) vs \(16, 8\)"
    ):
        transposed = {
            **mask["params"],
            "a": {**mask["params"]["a"], "kernel": jnp.ones((16, 8), bool)},
        }
        gptq(model.apply, params, batches, SPEC, mask={"params": transposed})
    assert len(calls) == passes  # each refused before any calibration pass


def test_a_mask_keeps_each_kernels_zeros_through_the_sequential_passes(calls):
    """Every kernel holds its pruned weights at zero, and the one a kernel sees in the later
    passes is the pruned and quantized earlier one."""
    model, params, batches = _setup()
    mask = jax.tree.map(lambda x: jax.random.uniform(jax.random.key(7), x.shape) < 0.6, params)
    q = gptq(model.apply, params, batches, SPEC, block_size=8, mask=mask)
    p, m = params["params"], mask["params"]
    for name in ("a", "b", "c"):
        got = np.asarray(dequantize(q["params"][name]["kernel"]))
        keep = np.asarray(m[name]["kernel"])
        assert np.all(got[~keep] == 0) and np.mean(got[keep] != 0) > 0.7, name
    # c is calibrated on the already pruned-and-quantized a and b: its Hessian is theirs
    a, b = (dequantize(q["params"][n]["kernel"]) for n in ("a", "b"))
    h = sum(
        (v := jax.nn.relu(x @ a + p["a"]["bias"] + x @ b + p["b"]["bias"])).T @ v for x in batches
    )
    want = gptq_quantize_matrix(
        p["c"]["kernel"], h, SPEC, block_size=8, keep=np.asarray(m["c"]["kernel"])
    )
    np.testing.assert_array_equal(
        np.asarray(q["params"]["c"]["kernel"].values), np.asarray(want.values)
    )


def test_attention_qkv_share_a_pass(calls):
    model = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8, out_features=8)
    x = jax.random.normal(jax.random.key(3), (4, 6, 8))
    params = model.init(jax.random.key(0), x[:1])
    q = gptq(model.apply, params, [x], QuantSpec(bits=4, axes=(-1,)))
    assert len(calls) == 2  # query/key/value read the same x; out reads the attention
    kernels = [f"params/{n}/kernel" for n in ("query", "key", "value", "out")]
    chosen = [[where(p, None) for p in kernels] for where in calls]
    assert chosen[0][:3] == [True] * 3 and chosen[1] == [False, False, False, True]
    qk, ok = q["params"]["query"]["kernel"], q["params"]["out"]["kernel"]
    assert (qk.shape, qk.axes, qk.scale.shape) == ((8, 2, 4), (1, 2), (1, 2, 4))
    assert (ok.shape, ok.axes, ok.scale.shape) == ((2, 4, 8), (2,), (1, 1, 8))


def test_rules_give_kernels_their_own_specs(calls):
    model, params, batches = _setup()
    g4 = QuantSpec(bits=4, axes=(-1,), group_size=4)
    rules = [(r".*/a/kernel", g4), (r".*/b/kernel", None), (r".*/c/kernel", SPEC)]
    q = gptq(model.apply, params, batches, rules, block_size=8)
    a, b, c = (q["params"][n]["kernel"] for n in ("a", "b", "c"))
    assert (a.group_size, a.bits, c.group_size, c.bits) == (4, 4, None, 3)
    assert b is params["params"]["b"]["kernel"]  # None: kept float
    x = jnp.concatenate(batches)
    ref = gptq_quantize_matrix(params["params"]["a"]["kernel"], x.T @ x, g4, block_size=8)
    np.testing.assert_array_equal(a.values, ref.values)
    with pytest.raises(ValueError, match=r"rules give a spec to \['params/a/bias'\]"):
        gptq(model.apply, params, batches, [(r".*/a/.*", SPEC)])
    with pytest.raises(ValueError, match=r"rules\[0\]: where='nothing' matches no leaf"):
        gptq(model.apply, params, batches, [("nothing", SPEC)])


def test_conv_kernel_groups_on_input_channels(calls):
    model = nn.Conv(features=4, kernel_size=(3, 3), padding="VALID")
    x = jax.random.normal(jax.random.key(5), (4, 6, 6, 4))  # 64 patches of 36 inputs
    params = model.init(jax.random.key(0), x[:1])
    spec = QuantSpec(bits=3, axes=(-1,), group_size=2)
    k = gptq(model.apply, params, [x], spec)["params"]["kernel"]
    # HWIO: groups of 2 input channels; H, W and O keep their own scales
    assert (k.axes, k.group_axis, k.group_size, k.scale.shape) == ((0, 1, 3), 2, 2, (3, 3, 2, 4))
    rtn = jz.quant.quantize(
        params["params"]["kernel"], QuantSpec(bits=3, axes=(0, 1, 3), group_size=2)
    )
    y = model.apply(params, x)

    def err(kernel):
        return float(
            jnp.linalg.norm(model.apply({"params": {**params["params"], "kernel": kernel}}, x) - y)
        )

    assert err(dequantize(k)) < err(dequantize(rtn))
