"""Tests for jaxzip/train/_checkpoint.py."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.train import load_params, save_params


def _params():
    rng = np.random.default_rng(0)
    return {
        "Conv_0": {
            "kernel": jnp.asarray(rng.normal(size=(3, 3, 1, 4)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=4), jnp.float32),
        },
        "Dense_0": {
            "kernel": jnp.asarray(rng.normal(size=(5, 2)), jnp.bfloat16),
            "bias": jnp.arange(2, dtype=jnp.int8),
        },
        "extra": [jnp.float32(np.pi)],
    }


def test_round_trip_is_bit_exact(tmp_path):
    params = _params()
    save_params(tmp_path / "p.npz", params)
    loaded = load_params(tmp_path / "p.npz", params)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(
            np.asarray(a).reshape(-1).view(np.uint8), np.asarray(b).reshape(-1).view(np.uint8)
        )


def test_file_is_plain_npz_keyed_by_paths(tmp_path):
    save_params(tmp_path / "p.npz", _params())
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        assert sorted(f.files) == [
            "Conv_0/bias",
            "Conv_0/kernel",
            "Dense_0/bias",
            "Dense_0/kernel",
            "extra/0",
        ]
        np.testing.assert_array_equal(f["Dense_0/bias"], [0, 1])
    assert os.listdir(tmp_path) == ["p.npz"]  # no temporary file left behind


def test_exact_path_without_added_suffix(tmp_path):
    save_params(tmp_path / "sub" / "weights", {"w": np.ones(2, np.float32)})
    assert (tmp_path / "sub" / "weights").is_file()


def test_like_can_be_shapes_only(tmp_path):
    params = _params()
    save_params(tmp_path / "p.npz", params)
    like = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    loaded = load_params(tmp_path / "p.npz", like)
    np.testing.assert_array_equal(loaded["Conv_0"]["kernel"], params["Conv_0"]["kernel"])


def test_nnx_state_round_trip(tmp_path):
    from flax import nnx

    from jaxzip.models import NnxMLP

    _, state = nnx.split(
        nnx.eval_shape(lambda: NnxMLP((3,), 2, in_features=4, rngs=nnx.Rngs(0))), nnx.Param
    )
    params = jax.tree.map(lambda s: jnp.full(s.shape, 0.5, s.dtype), state)
    save_params(tmp_path / "p.npz", params)
    loaded = load_params(tmp_path / "p.npz", state)
    assert isinstance(loaded, nnx.State)
    np.testing.assert_array_equal(loaded["Dense_1"]["kernel"][...], 0.5)


def test_missing_and_extra_paths(tmp_path):
    save_params(tmp_path / "p.npz", {"a": np.ones(2, np.float32), "b": np.ones(2, np.float32)})
    with pytest.raises(
        jz.CheckpointError, match=r"missing paths \['c'\], unexpected paths \['b'\]"
    ):
        load_params(tmp_path / "p.npz", {"a": np.ones(2, np.float32), "c": np.ones(2, np.float32)})


def test_shape_and_dtype_mismatch_name_the_path(tmp_path):
    save_params(tmp_path / "p.npz", {"Dense_0": {"kernel": np.ones((3, 2), np.float32)}})
    with pytest.raises(
        ValueError,
        match=r"'Dense_0/kernel' expected shape \(2, 3\) dtype float32, "
        r"file has shape \(3, 2\) dtype float32",
    ):
        load_params(tmp_path / "p.npz", {"Dense_0": {"kernel": np.ones((2, 3), np.float32)}})
    with pytest.raises(ValueError, match=r"expected shape .* dtype float16, file has .* float32"):
        load_params(tmp_path / "p.npz", {"Dense_0": {"kernel": np.ones((3, 2), np.float16)}})


def test_missing_file_and_non_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match="no params file at"):
        load_params(tmp_path / "nope.npz", {"a": np.ones(1)})
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(jz.CheckpointError, match=r"not an \.npz archive"):
        load_params(tmp_path / "junk.npz", {"a": np.ones(1)})
    np.save(tmp_path / "single.npy", np.ones(2))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        load_params(tmp_path / "single.npy", {"a": np.ones(2)})


def test_pickled_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "evil.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read 'a'"):
        load_params(tmp_path / "evil.npz", {"a": np.ones(1)})


def test_save_rejects_non_numeric_leaves(tmp_path):
    with pytest.raises(TypeError, match="'a' is not a numeric array"):
        save_params(tmp_path / "p.npz", {"a": "text"})
    assert not (tmp_path / "p.npz").exists()


def test_a_jz_file_is_named_as_such(tmp_path):
    # defect 7f: numpy's advice to load it with pickle was relayed as is
    jz.codec.save(tmp_path / "m.jz", {"a": np.ones(2, np.float32)})
    with pytest.raises(jz.CheckpointError) as e:
        load_params(tmp_path / "m.jz", {"a": np.ones(2, np.float32)})
    msg = str(e.value)
    assert "jaxzip .jz codec file" in msg and "jz.codec.load" in msg and ".npz" in msg
    assert "pickle" not in msg


def test_a_file_of_another_kind_is_named_not_relayed_with_pickle_advice(tmp_path):
    # issue 19: a text file given as params_from made numpy suggest allow_pickle=True
    (tmp_path / "notes.txt").write_text("hello world\n")
    with pytest.raises(
        jz.CheckpointError, match=r"not an \.npz archive \(it starts with b'hell'"
    ) as e:
        load_params(tmp_path / "notes.txt", {"a": np.ones(1)})
    assert "pickle" not in str(e.value) and "save_params" in str(e.value)


def test_an_exported_model_is_named_as_such(tmp_path):
    data = b"\x89JZX\r\n\x1a\n" + bytes(60)
    (tmp_path / "m.jzx").write_bytes(data)
    with pytest.raises(jz.CheckpointError, match=r"exported model .*jz\.deploy\.load_exported"):
        load_params(tmp_path / "m.jzx", {"a": np.ones(2, np.float32)})


def test_require_finite_names_the_leaf(tmp_path):
    params = {
        "Dense_0": {"kernel": np.array([1.0, np.nan, np.inf], np.float32)},
        "ok": np.ones(2, np.float32),
    }
    save_params(tmp_path / "p.npz", params)
    got = load_params(tmp_path / "p.npz", params)  # off by default: resumable as saved
    assert np.isnan(got["Dense_0"]["kernel"][1])
    with pytest.raises(jz.CheckpointError, match=r"'Dense_0/kernel' holds 1 NaN and 1 Inf"):
        load_params(tmp_path / "p.npz", params, require_finite=True)
    ok = {"ok": np.ones(2, np.float32)}
    save_params(tmp_path / "q.npz", ok)
    assert load_params(tmp_path / "q.npz", ok, require_finite=True)["ok"].sum() == 2
    with pytest.raises(TypeError, match="require_finite"):
        load_params(tmp_path / "q.npz", ok, require_finite="yes")
