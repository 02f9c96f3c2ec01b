"""Tests for jaxzip/quant/_params.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import (
    QArray,
    QuantSpec,
    dequantize_params,
    fake_quant_params,
    init_lsq_steps,
    quantization_report,
    quantize_params,
)


def _mlp(key):
    k = jax.random.split(key, 3)
    return {
        "Dense_0": {"kernel": jax.random.normal(k[0], (6, 5)), "bias": jnp.full((5,), 0.1)},
        "Dense_1": {"kernel": jax.random.normal(k[1], (5, 3)), "bias": jnp.zeros((3,))},
        "step": jnp.int32(3),
    }


def test_rules_first_match_wins_and_none_keeps_float():
    params = _mlp(jax.random.key(0))
    rules = [
        ("Dense_1/kernel", None),
        (r".*/kernel", QuantSpec(bits=4, axes=(-1,))),
        (r".*/bias", QuantSpec(bits=8)),
    ]
    q = quantize_params(params, rules)
    assert isinstance(q["Dense_0"]["kernel"], QArray) and q["Dense_0"]["kernel"].bits == 4
    assert q["Dense_1"]["kernel"] is params["Dense_1"]["kernel"]
    assert isinstance(q["Dense_1"]["bias"], QArray)
    assert q["step"] is params["step"]
    deq = dequantize_params(q)
    assert jax.tree.structure(deq) == jax.tree.structure(params)
    np.testing.assert_allclose(deq["Dense_0"]["bias"], params["Dense_0"]["bias"], rtol=1e-2)


def test_rule_matching_nothing_is_an_error_naming_the_rule():
    params = _mlp(jax.random.key(0))
    with pytest.raises(ValueError, match=r"rules\[1\]: where='Conv_.\*' matches no leaf"):
        quantize_params(params, [(r".*/kernel", QuantSpec()), (r"Conv_.*", QuantSpec())])


def test_nan_is_reported_with_its_path():
    params = _mlp(jax.random.key(0))
    params["Dense_1"]["kernel"] = params["Dense_1"]["kernel"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="Dense_1/kernel: holds 1 NaN or Inf"):
        quantize_params(params, [(r".*/kernel", QuantSpec())])


def test_bad_rules():
    params = _mlp(jax.random.key(0))
    with pytest.raises(TypeError, match="non-empty sequence"):
        quantize_params(params, [])
    with pytest.raises(TypeError, match=r"rules\[0\]: expected a"):
        quantize_params(params, [r".*/kernel"])
    with pytest.raises(TypeError, match=r"rules\[0\]: spec must be"):
        quantize_params(params, [(r".*/kernel", 8)])
    with pytest.raises(TypeError, match="step: a QuantSpec rule matches a leaf of dtype int32"):
        quantize_params(params, [("step", QuantSpec())])
    with pytest.raises(ValueError, match=r"Dense_1/kernel: spec\.group_size=2 does not divide"):
        quantize_params(params, [(r".*/kernel", QuantSpec(group_size=2, group_axis=0))])


def test_report_hand_worked_and_golden():
    p = {"w": jnp.array([0.5, -1.0, 0.25, 0.0]), "b": jnp.ones(2)}
    r = quantization_report(p, quantize_params(p, [("w", QuantSpec(bits=2))]))
    assert list(r) == ["w"]
    # grid {-1, 0, 1}: 0.5 -> 0 (half to even), 0.25 -> 0: err [-.5, 0, -.25, 0]
    assert r["w"]["bits"] == 2
    assert r["w"]["mse"] == pytest.approx((0.25 + 0.0625) / 4)
    assert r["w"]["max_abs_error"] == 0.5
    sx, se = 0.25 + 1 + 0.0625, 0.3125
    assert r["w"]["sqnr_db"] == pytest.approx(10 * np.log10(sx / se))
    assert r["w"]["relative_error"] == pytest.approx(np.sqrt(se / sx))
    exact = quantization_report(p, quantize_params(p, [("b", QuantSpec())]))
    assert exact["b"]["sqnr_db"] == float("inf") and exact["b"]["mse"] == 0.0


def test_report_golden_values():
    # Golden values obtained once by running this test's code (jax 0.10.2, CPU);
    # x = linspace(-1, 1, 48) ** 3 as (8, 6), int4 per-channel; pinned at rtol 1e-4.
    p = {"k": (jnp.linspace(-1.0, 1.0, 48) ** 3).reshape(8, 6)}
    r = quantization_report(p, quantize_params(p, [("k", QuantSpec(bits=4, axes=(-1,)))]))["k"]
    golden = {
        "mse": 0.0008910934287027469,
        "max_abs_error": 0.061187997460365295,
        "sqnr_db": 22.585187713669846,
        "relative_error": 0.07425754965608646,
    }
    assert r["bits"] == 4
    for name, value in golden.items():
        assert r[name] == pytest.approx(value, rel=1e-4), name


def test_fake_quant_params_keeps_pruned_weights_exactly_zero_through_qat():
    params = _mlp(jax.random.key(1))
    mask = jax.tree.map(lambda a: jax.random.uniform(jax.random.key(2), a.shape) > 0.5, params)
    mask["step"] = True
    params = jax.tree.map(lambda a, m: jnp.where(m, a, 0).astype(a.dtype), params, mask)
    x = jax.random.normal(jax.random.key(3), (4, 6))
    for spec in (QuantSpec(bits=3, axes=(-1,)), QuantSpec(bits=4, signed=False, symmetric=False)):
        rules = [(r".*/kernel", spec)]

        def loss(p, rules=rules):
            p = fake_quant_params(p, rules)
            h = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
            return jnp.sum((h @ p["Dense_1"]["kernel"]) ** 2)

        @jax.jit
        def step(p, mask=mask, loss=loss):
            g = jax.grad(loss, allow_int=True)(p)
            # the optimizer masks updates (prune.keep_masked does this in jaxzip.prune)
            return jax.tree.map(
                lambda a, gi, mk: a if a.dtype == jnp.int32 else jnp.where(mk, a - 0.1 * gi, 0.0),
                p,
                g,
                mask,
            )

        p = params
        for _ in range(2):
            p = step(p)
            fq = fake_quant_params(p, rules)
            for path in ("Dense_0", "Dense_1"):
                m = np.asarray(mask[path]["kernel"])
                assert np.all(np.asarray(fq[path]["kernel"])[~m] == 0.0), spec
                assert np.all(np.asarray(p[path]["kernel"])[~m] == 0.0), spec


def test_lsq_steps_in_fake_quant_params():
    params = _mlp(jax.random.key(4))
    rules = [(r".*/kernel", QuantSpec(bits=4, axes=(-1,)))]
    steps = init_lsq_steps(params, rules)
    assert sorted(steps) == ["Dense_0/kernel", "Dense_1/kernel"]
    assert steps["Dense_0/kernel"].shape == (1, 5)

    def loss(st):
        return jnp.sum(fake_quant_params(params, rules, steps=st)["Dense_0"]["kernel"] ** 2)

    g = jax.jit(jax.grad(loss))(steps)
    assert float(jnp.abs(g["Dense_0/kernel"]).sum()) > 0
    with pytest.raises(ValueError, match="not quantized by any rule"):
        fake_quant_params(params, rules, steps={"Dense_0/bias": jnp.ones(())})


def test_jit_and_eager_agree():
    params = _mlp(jax.random.key(5))
    rules = [(r".*/kernel", QuantSpec(bits=4, axes=(-1,)))]
    a = dequantize_params(quantize_params(params, rules))
    b = jax.jit(lambda p: dequantize_params(quantize_params(p, rules)))(params)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_quantize_params_names_every_nonfinite_leaf_at_once():
    from jaxzip._errors import JaxzipError, NonFiniteError

    params = {
        "a": jnp.array([jnp.nan, 1.0]),
        "b": jnp.array([jnp.inf, -jnp.inf]),
        "c": jnp.array([jnp.nan]),
        "ok": jnp.ones(2),
    }
    with pytest.raises(NonFiniteError) as e:
        quantize_params(params, [("a|b", QuantSpec(bits=4)), ("c", None), ("ok", QuantSpec())])
    assert str(e.value) == (
        "a: holds 1 NaN or Inf value(s) (1 NaN, 0 Inf, of 2); "
        "b: holds 2 NaN or Inf value(s) (0 NaN, 2 Inf, of 2); quantize_params expects finite values"
    )  # c is kept float (spec None): not checked
    assert e.value.paths == ("a", "b") and isinstance(e.value, JaxzipError)


def test_quantize_unshared_stores_only_the_plain_float_arrays():
    from jaxzip.quant import KMeansArray, dequantize, kmeans, quantize_unshared

    bias = jnp.array([0.5, -0.25, 0.0, 0.127])
    tree = {
        "k": kmeans(jnp.linspace(-1.0, 1.0, 8), bits=2),
        "b": bias,
        "s": jnp.float32(3.0),
        "i": jnp.arange(3),
    }
    q = quantize_unshared(tree, QuantSpec(bits=8))
    assert isinstance(q["k"], KMeansArray) and q["k"] is tree["k"]
    assert q["s"] is tree["s"] and q["i"] is tree["i"]  # scalars and integers kept
    b = q["b"]
    assert isinstance(b, QArray) and b.values.dtype == jnp.int8 and b.scale.size == 1
    # one scale per leaf, absmax / 127: 0.5 -> 127, -0.25 -> -64 (rounded half to even: -63.5)
    np.testing.assert_array_equal(np.asarray(b.values), [127, -64, 0, 32])
    np.testing.assert_allclose(np.asarray(dequantize(b)), np.asarray(bias), atol=0.5 / 127 / 2)
    assert quantize_unshared(q, QuantSpec(bits=8))["b"] is b  # idempotent: QArray kept


def test_quantize_unshared_bad_input():
    from jaxzip.quant import quantize_unshared

    with pytest.raises(TypeError, match="spec: expected a QuantSpec, got 8"):
        quantize_unshared({"b": jnp.ones(2)}, 8)
    with pytest.raises(ValueError, match=r"b: holds 1 NaN"):
        quantize_unshared({"b": jnp.array([1.0, jnp.nan])}, QuantSpec(bits=8))
