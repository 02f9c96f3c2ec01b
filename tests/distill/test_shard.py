"""Tests for jaxzip/distill/_shard.py and ``make_train_step(..., mesh=)``."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jaxzip.distill import replicate, shard_batch

_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np, optax
from jaxzip.distill import kd_loss, make_train_step, shard_batch
from jaxzip.train import RandomShift, init_state
assert len(jax.devices()) == 4, jax.devices()
def apply(params, x, *, train, key):
    return jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"]) @ params["w2"]
def params(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"w1": jax.random.normal(k1, (4, 8)), "w2": jax.random.normal(k2, (8, 3))}
rng = np.random.default_rng(0)
batches = [{"x": rng.normal(size=(8, 2, 2, 1)).astype(np.float32),
            "y": rng.integers(0, 3, 8).astype(np.int32)} for _ in range(3)]
tx = optax.adam(0.05)
loss = kd_loss(temperature=3.0, alpha=0.7)
mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
results = {}
shift = {"augment": RandomShift(pixels=1)}
for name, kwargs in (("single", {}), ("mesh", {"mesh": mesh}),
                     ("single_shift", shift), ("mesh_shift", {"mesh": mesh, **shift})):
    step = make_train_step(apply, apply, tx, loss=loss, **kwargs)
    state = init_state(params(0), tx)
    for i, b in enumerate(batches):
        b = shard_batch(b, mesh) if name.startswith("mesh") else b
        state, metrics = step(state, params(1), b, jax.random.key(i))
    results[name] = {"params": jax.tree.map(lambda a: np.asarray(a).tolist(), state.params),
                     "loss": float(metrics["loss"]),
                     "devices": len(state.params["w1"].sharding.device_set)}
try:
    step(state, params(1), {"x": batches[0]["x"][:6], "y": batches[0]["y"][:6]}, jax.random.key(0))
    results["indivisible"] = "no error"
except ValueError as err:
    results["indivisible"] = str(err)
RESULT = results
"""


def test_four_device_data_parallel_matches_single_device(four_devices):
    results = four_devices(_SCRIPT)
    # with and without augment (the shifts are drawn alike whatever the sharding)
    for suffix in ("", "_shift"):
        single, mesh = results["single" + suffix], results["mesh" + suffix]
        assert mesh["devices"] == 4 and single["devices"] == 1
        for k in single["params"]:
            np.testing.assert_allclose(mesh["params"][k], single["params"][k], rtol=1e-5, atol=1e-6)
        assert mesh["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert results["single_shift"]["loss"] != pytest.approx(results["single"]["loss"])
    assert "multiple of the mesh's 'data' axis size 4" in results["indivisible"]


def test_shard_batch_single_device_and_bad_input():
    auto = (jax.sharding.AxisType.Auto,)
    mesh = jax.make_mesh((1,), ("data",), axis_types=auto)
    b = shard_batch({"x": np.zeros((4, 2)), "y": np.arange(4)}, mesh)
    assert b["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    with pytest.raises(ValueError, match="one leading size"):
        shard_batch({"x": np.zeros((4, 2)), "y": np.arange(3)}, mesh)
    with pytest.raises(ValueError, match="'data'"):
        shard_batch({"x": np.zeros((4, 2))}, jax.make_mesh((1,), ("model",), axis_types=auto))
    with pytest.raises(ValueError, match=r"AxisType\.Auto"):
        shard_batch({"x": np.zeros((4, 2))}, jax.make_mesh((1,), ("data",)))
    with pytest.raises(TypeError, match="Mesh"):
        shard_batch({"x": np.zeros((4, 2))}, None)


def test_shard_batch_local_in_one_process_is_the_global_batch():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = {"x": np.arange(8.0).reshape(4, 2), "y": np.arange(4)}
    local, whole = shard_batch(batch, mesh, local=True), shard_batch(batch, mesh)
    for k in batch:
        assert local[k].sharding == whole[k].sharding
        np.testing.assert_array_equal(np.asarray(local[k]), batch[k])
    with pytest.raises(TypeError, match="local must be a bool"):
        shard_batch(batch, mesh, local="yes")
    with pytest.raises(ValueError, match="one leading size"):
        shard_batch({"x": np.zeros((4, 2)), "y": np.arange(3)}, mesh, local=True)


def test_replicate_places_every_leaf_once():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    tree = {"a": np.arange(3), "b": (jax.numpy.ones((2, 2)), 2.0)}
    placed = replicate(tree, mesh)
    assert jax.tree.structure(placed) == jax.tree.structure(tree)
    for leaf, want in zip(jax.tree.leaves(placed), jax.tree.leaves(tree), strict=True):
        assert leaf.sharding.is_equivalent_to(NamedSharding(mesh, PartitionSpec()), leaf.ndim)
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(want))
    again = replicate(placed, mesh)  # already placed: the very same arrays, no copy
    assert all(a is b for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(placed), strict=True))
    with pytest.raises(TypeError, match=r"replicate: mesh must be a jax\.sharding\.Mesh"):
        replicate(tree, "data")
