from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxzip.paths import keystr, leaf_paths, leaves_with_paths, map_with_paths


def test_nested_dicts_lists_tuples():
    tree = {"a": [1, (2, {"b": 3})], "c": 4}
    assert leaf_paths(tree) == ["a/0", "a/1/0", "a/1/1/b", "c"]


def test_linen_params():
    variables = nn.Dense(3).init(jax.random.key(0), jnp.ones((1, 2)))
    assert leaf_paths(variables["params"]) == ["bias", "kernel"]
    assert leaf_paths(variables) == ["params/bias", "params/kernel"]


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.first = nnx.Linear(2, 3, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(3, 1, rngs=rngs)])


def test_nnx_state_and_pure_dict_give_same_paths():
    _, state = nnx.split(_Net(nnx.Rngs(0)))
    expected = ["blocks/0/bias", "blocks/0/kernel", "first/bias", "first/kernel"]
    assert leaf_paths(state) == expected
    assert leaf_paths(nnx.to_pure_dict(state)) == expected


@struct.dataclass
class _Pair:
    weight: jax.Array
    extra: jax.Array


def test_registered_dataclass_uses_field_names():
    tree = {"layer": _Pair(weight=jnp.ones(2), extra=jnp.zeros(1))}
    assert leaf_paths(tree) == ["layer/weight", "layer/extra"]


def test_keystr_root_leaf_and_value_suffix():
    assert keystr(()) == ""
    [(path, _)] = jax.tree_util.tree_leaves_with_path({"w": 1})
    assert keystr(path) == "w"
    value_path = (jax.tree_util.DictKey("w"), jax.tree_util.GetAttrKey("value"))
    assert keystr(value_path) == "w"
    # Only a trailing ".value" is dropped.
    middle = (jax.tree_util.GetAttrKey("value"), jax.tree_util.DictKey("w"))
    assert keystr(middle) == "value/w"


def test_map_with_paths_and_leaves():
    tree = {"x": jnp.ones(2), "y": [jnp.zeros(3)]}
    shapes = map_with_paths(lambda p, leaf: (p, leaf.shape), tree)
    assert shapes == {"x": ("x", (2,)), "y": [("y/0", (3,))]}
    assert [p for p, _ in leaves_with_paths(tree)] == ["x", "y/0"]


def test_plain_dataclass_is_a_leaf():
    @dataclasses.dataclass
    class NotRegistered:
        a: int = 1

    assert leaf_paths({"k": NotRegistered()}) == ["k"]
