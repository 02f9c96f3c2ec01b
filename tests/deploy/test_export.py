"""Tests for jaxzip/deploy/_export.py: exported models match the in-memory ones, without source."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.codec import FormatError
from jaxzip.deploy import export, load_exported, parse_info


class _TestMLP(nn.Module):
    """LeNet-300-100's shape, defined only here (a subprocess cannot import it)."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(300)(x))
        x = nn.relu(nn.Dense(100)(x))
        return nn.Dense(10)(x)


def _apply(module):
    return jz.models.linen_apply_fn(module)


@pytest.fixture(scope="module")
def mlp_case():
    module = _TestMLP()
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    params = jax.jit(module.init)(jax.random.key(0), x)["params"]
    cluster = lambda p: jz.quant.kmeans_params(p, bits=4, where=r".*/kernel", iters=3)  # noqa: E731
    compressed = jax.jit(cluster)(params)
    return module, compressed, x


@pytest.fixture(scope="module")
def cnn_case():
    module = jz.models.SmallCNN()
    x = jax.random.normal(jax.random.key(2), (3, 8, 8, 1))
    params = jax.jit(module.init)(jax.random.key(0), x)["params"]
    spec = jz.quant.QuantSpec(bits=4, axes=(-1,))
    compressed = jax.jit(lambda p: jz.quant.quantize_params(p, [(r".*/kernel", spec)]))(params)
    return module, compressed, x


def _expected(module, compressed, x):
    return _apply(module)(jz.quant.dequantize_params(compressed), x, train=False, key=None)


def test_mlp_kmeans_matches_in_memory(mlp_case, tmp_path):
    module, compressed, x = mlp_case
    assert any(
        isinstance(v, jz.quant.KMeansArray)
        for v in jax.tree.leaves(compressed, is_leaf=lambda v: isinstance(v, jz.quant.KMeansArray))
    )
    info = export(_apply(module), compressed, x, tmp_path / "m.jzx")
    assert (info.input_shape, info.output_shape) == ((4, 28, 28, 1), (4, 10))
    got = load_exported(tmp_path / "m.jzx")(x)
    np.testing.assert_allclose(got, _expected(module, compressed, x), rtol=1e-5, atol=1e-5)


def test_cnn_qarray_matches_in_memory(cnn_case, tmp_path):
    module, compressed, x = cnn_case
    assert isinstance(compressed["Conv_0"]["kernel"], jz.quant.QArray)
    export(_apply(module), compressed, x, tmp_path / "c.jzx")
    got = load_exported(tmp_path / "c.jzx")(x)
    np.testing.assert_allclose(got, _expected(module, compressed, x), rtol=1e-5, atol=1e-5)


def test_weights_stay_compressed(mlp_case, tmp_path):
    module, compressed, x = mlp_case
    export(_apply(module), compressed, x, tmp_path / "m.jzx")
    size = (tmp_path / "m.jzx").stat().st_size
    dense = 4 * sum(np.size(v) for v in jax.tree.leaves(jz.quant.dequantize_params(compressed)))
    assert size < dense / 4  # 4-bit indices: well under a quarter of float32
    weights = parse_info((tmp_path / "m.jzx").read_bytes()).weights
    assert jz.codec.size_report(weights).file_bytes == len(weights)


def test_polymorphic_batch(cnn_case, tmp_path):
    module, compressed, x = cnn_case
    info = export(_apply(module), compressed, x, tmp_path / "p.jzx", polymorphic_batch=True)
    assert info.input_shape == (None, 8, 8, 1) and info.output_shape == (None, 10)
    f = load_exported(tmp_path / "p.jzx")
    for n in (1, 5):
        xb = jnp.tile(x[:1], (n, 1, 1, 1))
        np.testing.assert_allclose(f(xb), _expected(module, compressed, xb), rtol=1e-5, atol=1e-5)


def test_wrong_input_shape_rejected(cnn_case, tmp_path):
    module, compressed, x = cnn_case
    export(_apply(module), compressed, x, tmp_path / "c.jzx")
    with pytest.raises(ValueError, match=r"x: expected shape \[3, 8, 8, 1\]"):
        load_exported(tmp_path / "c.jzx")(x[:2])


def test_load_without_model_source(mlp_case, tmp_path):
    module, compressed, x = mlp_case
    export(_apply(module), compressed, x, tmp_path / "m.jzx")
    np.save(tmp_path / "x.npy", np.asarray(x))
    np.save(tmp_path / "y.npy", np.asarray(_expected(module, compressed, x)))
    script = textwrap.dedent(f"""
        import sys
        import flax.linen as nn
        def boom(*a, **k):
            raise RuntimeError("model Python code ran")
        nn.Module.apply = nn.Module.init = nn.Dense.__call__ = boom  # no model code may run
        import numpy as np
        import jax.numpy as jnp
        from jaxzip.deploy import load_exported
        f = load_exported({str(tmp_path / "m.jzx")!r})
        y = f(jnp.asarray(np.load({str(tmp_path / "x.npy")!r})))
        np.testing.assert_allclose(y, np.load({str(tmp_path / "y.npy")!r}), rtol=1e-5, atol=1e-5)
        assert "test_export" not in sys.modules
        print("ok")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def _corrupt(data: bytes, how: str) -> bytes:
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "magic":
        return b"\x89NOPE\r\n\x1a\n"[:8] + data[8:]
    bad = bytearray(data)
    bad[len(bad) // 3] ^= 0x01
    return bytes(bad)


@pytest.mark.parametrize("how", ["truncated", "magic", "flipped"])
def test_malformed_file(cnn_case, tmp_path, how):
    module, compressed, x = cnn_case
    p = tmp_path / "c.jzx"
    export(_apply(module), compressed, x, p)
    p.write_bytes(_corrupt(p.read_bytes(), how))
    with pytest.raises(FormatError, match=str(p)):
        load_exported(p)


def test_load_directory_and_missing(tmp_path):
    with pytest.raises(FormatError, match="directory"):
        load_exported(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_exported(tmp_path / "nope.jzx")


def test_bad_arguments(tmp_path):
    apply = lambda params, x, *, train, key: x  # noqa: E731
    with pytest.raises(TypeError, match="apply_fn"):
        export("not callable", {}, jnp.ones((1, 2)), tmp_path / "a")
    with pytest.raises(ValueError, match="example_input"):
        export(apply, {}, jnp.float32(1.0), tmp_path / "a")
    with pytest.raises(TypeError, match="polymorphic_batch"):
        export(apply, {}, jnp.ones((1, 2)), tmp_path / "a", polymorphic_batch=1)
    assert not (tmp_path / "a").exists()


# ---- issue 19, defect 7a: the StableHLO is checked at load, not at first call ----


def _eye_file(tmp_path):
    apply = lambda params, x, *, train, key: x @ params["w"]  # noqa: E731
    p = tmp_path / "eye.jzx"
    export(apply, {"w": jnp.eye(2)}, jnp.ones((1, 2)), p)
    return p


def _replace_hlo(p, exported) -> None:
    from jaxzip.deploy._format import pack, unpack

    info, _, weights = unpack(p.read_bytes())
    p.write_bytes(pack(info, bytes(exported.serialize()), weights))


def _specs():
    return ([jax.ShapeDtypeStruct((2, 2), jnp.float32)], jax.ShapeDtypeStruct((1, 2), jnp.float32))


def test_undeserializable_stablehlo_is_refused_at_load(tmp_path, capfd):
    import dataclasses

    p = _eye_file(tmp_path)
    good = jax.export.export(jax.jit(lambda flat, x: x @ flat[0]))(*_specs())
    _replace_hlo(p, dataclasses.replace(good, mlir_module_serialized=b"not a StableHLO module"))
    with pytest.raises(FormatError, match=f"{p}: .*StableHLO"):
        load_exported(p)


def test_disallowed_custom_call_is_refused_at_load(tmp_path):
    p = _eye_file(tmp_path)

    def evil(flat, x):
        out = jax.ShapeDtypeStruct((1, 2), jnp.float32)
        return jax.ffi.ffi_call("evil_target", out)(x @ flat[0])

    check = jax.export.DisabledSafetyCheck.custom_call("evil_target")
    _replace_hlo(p, jax.export.export(jax.jit(evil), disabled_checks=[check])(*_specs()))
    with pytest.raises(FormatError, match="custom call 'evil_target'"):
        load_exported(p)


def test_polymorphic_export_passes_the_custom_call_check(cnn_case, tmp_path):
    module, compressed, x = cnn_case
    export(_apply(module), compressed, x, tmp_path / "p.jzx", polymorphic_batch=True)
    assert load_exported(tmp_path / "p.jzx")(x[:1]).shape == (1, 10)


@pytest.mark.parametrize("scanned", [False, True], ids=["loop", "scan"])
def test_the_exported_program_dequantizes_each_weight_next_to_its_use(scanned, tmp_path):
    from jaxzip.deploy._load import _open

    layers, d = 6, 64
    w = jax.random.normal(jax.random.key(0), (layers, d, d)) / 8
    params = {"stack": w} if scanned else {f"l{i}": w[i] for i in range(layers)}

    def apply(p, x, *, train, key):
        if scanned:
            return jax.lax.scan(lambda h, wi: (jnp.tanh(h @ wi), None), x, p["stack"])[0]
        for i in range(layers):
            x = jnp.tanh(x @ p[f"l{i}"])
        return x

    q = jz.quant.quantize_params(params, [(".*", jz.quant.QuantSpec(bits=8, axes=(-1,)))])
    x = jax.random.normal(jax.random.key(1), (4, d))
    export(apply, q, x, tmp_path / "s.jzx")
    want = apply(jz.quant.dequantize_params(q), x, train=False, key=None)
    np.testing.assert_allclose(load_exported(tmp_path / "s.jzx")(x), want, rtol=1e-6, atol=1e-6)
    mem = _open(tmp_path / "s.jzx")[2].memory_analysis()
    if mem is not None:  # one float kernel live at a time, not all six
        assert mem.temp_size_in_bytes < 2 * d * d * 4
