"""Tests for jaxzip/pipeline/_cache.py: stage keys and storing/restoring stage outputs."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip import quant
from jaxzip.pipeline._cache import (
    DONE_FILE,
    file_digest,
    find_complete,
    restore_outputs,
    stage_dir_name,
    stage_key,
    store_outputs,
)


def _key(**kw):
    args = {
        "index": 3,
        "name": "train",
        "depends": {"train": {"epochs": 1}},
        "previous": "p",
        "version": "0.1.0",
    }
    return stage_key(**{**args, **kw})


def test_key_changes_with_each_input_and_not_with_dict_order():
    base = _key()
    assert base == _key(depends={"train": {"epochs": 1}})
    assert _key(depends={"a": 1, "b": 2}) == _key(depends={"b": 2, "a": 1})
    others = [
        _key(index=4),
        _key(name="prune"),
        _key(depends={"train": {"epochs": 2}}),
        _key(previous="q"),
        _key(version="0.2.0"),
    ]
    assert len({base, *others}) == 6
    assert stage_dir_name(3, "train", base) == f"03-train-{base[:12]}"


def test_key_is_the_one_content_hash_of_canonical_json():
    from jaxzip.auto import config_hash
    from jaxzip.auto._journal import canonical_json

    # numpy scalars are their Python values; a NaN is null; the journal's hash is the same hash
    assert _key(depends={"b": [1, np.int64(2)]}) == _key(depends={"b": [1, 2]})
    assert _key(depends={"x": float("nan")}) == _key(depends={"x": None})
    whole = {
        "index": 3,
        "name": "train",
        "depends": {"b": [1, 2]},
        "previous": "p",
        "jaxzip": "0.1.0",
    }
    assert _key(depends={"b": [1, 2]}) == config_hash(whole)
    assert canonical_json({"b": [1, 2], "a": {"y": 1, "x": True}}) == (
        '{"a":{"x":true,"y":1},"b":[1,2]}'
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})  # hashed text never holds NaN


def test_file_digest(tmp_path):
    p = tmp_path / "f.npz"
    p.write_bytes(b"abc")
    assert file_digest(str(p)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_digest("") is None and file_digest(str(tmp_path / "missing")) is None


def _outputs():
    params = {"Dense_0": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.zeros(3)}}
    mask = jax.tree.map(lambda x: x > 1, params)
    books = quant.kmeans_params(params, bits=1, where=r".*/kernel", iters=2)
    report = {"rounds": [{"sparsity": 0.5}], "name": "x"}
    return {"params": params, "mask": mask, "books": books, "reports": {"prune": report}}


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_store_then_restore_round_trips_exactly(tmp_path):
    out, d = tmp_path / "out", tmp_path / "out" / "stages" / "01-x-abc"
    out.mkdir()
    (out / "model.jz").write_bytes(b"file bytes")
    updates = _outputs()
    assert store_outputs(
        d,
        key="k1",
        name="x",
        updates=updates,
        metrics={"m": np.float32(0.5)},
        out_dir=out,
        files=("model.jz",),
    )
    manifest = find_complete(d, "k1")
    assert manifest is not None and find_complete(d, "k2") is None
    (out / "model.jz").unlink()
    restored, metrics = restore_outputs(d, manifest, out)
    assert metrics == {"m": 0.5}
    assert (out / "model.jz").read_bytes() == b"file bytes"
    assert restored["reports"] == updates["reports"]
    for k in ("params", "mask", "books"):
        _assert_same(updates[k], restored[k])
    assert quant.is_quantized(restored["books"]["Dense_0"]["kernel"])
    assert isinstance(restored["params"]["Dense_0"]["kernel"], jax.Array)  # as the stage gave


def test_torn_or_corrupt_done_is_not_complete(tmp_path):
    d = tmp_path / "s"
    assert store_outputs(
        d, key="k", name="x", updates={"h": [1]}, metrics={}, out_dir=tmp_path, files=()
    )
    assert find_complete(d, "k") is not None
    (d / DONE_FILE).write_text("{not json")
    assert find_complete(d, "k") is None
    (d / DONE_FILE).unlink()
    assert find_complete(d, "k") is None
    assert find_complete(tmp_path / "missing", "k") is None


def test_functions_and_trees_of_unknown_nodes_are_not_stored(tmp_path):
    import collections

    d = tmp_path / "s"
    ok = store_outputs(
        d, key="k", name="x", updates={"apply_fn": print}, metrics={}, out_dir=tmp_path, files=()
    )
    assert not ok and not d.exists()
    pair = collections.namedtuple("Pair", "a b")
    ok = store_outputs(
        d,
        key="k",
        name="x",
        updates={"h": 1, "params": pair(jnp.ones(2), jnp.zeros(1))},
        metrics={},
        out_dir=tmp_path,
        files=(),
    )
    assert not ok and not d.exists()
    lists = {"w": [jnp.ones(2), (jnp.arange(3), None, 7)]}  # lists, tuples, scalars round-trip
    assert store_outputs(
        d, key="k", name="x", updates={"params": lists}, metrics={}, out_dir=tmp_path, files=()
    )
    back = restore_outputs(d, find_complete(d, "k"), tmp_path)[0]["params"]
    _assert_same(back, lists)
    assert back["w"][1][2] == 7 and type(back["w"][1][2]) is int
    ok = store_outputs(
        d,
        key="k",
        name="x",
        updates={"apply_fn": print, "h": 1},
        metrics={},
        out_dir=tmp_path,
        files=(),
        skip=("apply_fn",),
    )
    assert ok and json.loads((d / DONE_FILE).read_text())["outputs"] == {
        "h": {"kind": "json", "value": 1}
    }


def test_restore_of_a_damaged_array_file_raises(tmp_path):
    d = tmp_path / "s"
    store_outputs(
        d,
        key="k",
        name="x",
        updates={"params": {"w": jnp.ones(2)}},
        metrics={},
        out_dir=tmp_path,
        files=(),
    )
    (d / "params.jz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"params\.jz"):
        restore_outputs(d, find_complete(d, "k"), tmp_path)
