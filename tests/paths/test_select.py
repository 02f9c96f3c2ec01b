from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxzip import paths as jz_paths
from jaxzip.paths import all_of, describe, min_ndim, not_, select, selected_paths

PARAMS = {
    "Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)},
    "Dense_1": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)},
    "step": jnp.int32(0),
}


def test_regex_is_full_matched():
    assert selected_paths(PARAMS, r".*/kernel") == ["Dense_0/kernel", "Dense_1/kernel"]
    assert selected_paths(PARAMS, r"Dense_0/.*") == ["Dense_0/bias", "Dense_0/kernel"]
    # "kernel" alone would match by re.search, but not by full match.
    with pytest.raises(ValueError, match="selects no leaf"):
        select(PARAMS, "kernel")


def test_select_keeps_structure_and_values_are_bools():
    mask = select(PARAMS, r".*/kernel")
    assert jax.tree.structure(mask) == jax.tree.structure(PARAMS)
    assert mask["Dense_0"] == {"bias": False, "kernel": True}
    assert mask["step"] is False


def test_compiled_pattern_predicate_and_any_of():
    assert selected_paths(PARAMS, re.compile(r"Dense_1/bias")) == ["Dense_1/bias"]
    assert selected_paths(PARAMS, lambda path, leaf: leaf.ndim == 0) == ["step"]
    assert selected_paths(PARAMS, [r"Dense_0/bias", min_ndim(2)]) == [
        "Dense_0/bias",
        "Dense_0/kernel",
        "Dense_1/kernel",
    ]


def test_combinators():
    assert selected_paths(PARAMS, all_of(r"Dense_0/.*", min_ndim(2))) == ["Dense_0/kernel"]
    assert selected_paths(PARAMS, not_(r"Dense_.*")) == ["step"]
    assert selected_paths(PARAMS, not_(jz_paths.is_float())) == ["step"]
    assert hash(min_ndim(2)) == hash(min_ndim(2))  # hashable, like nnx filters
    assert min_ndim(2) == min_ndim(2)


def test_nothing_selected_names_pattern_and_paths():
    with pytest.raises(ValueError) as info:
        select(PARAMS, r".*/kernal")
    message = str(info.value)
    assert "'.*/kernal'" in message
    assert "Dense_0/kernel" in message
    assert "allow_empty=True" in message
    assert select(PARAMS, r".*/kernal", allow_empty=True)["Dense_0"]["kernel"] is False


def test_many_paths_are_abbreviated():
    tree = {f"layer_{i:02d}": 0.0 for i in range(20)}
    with pytest.raises(ValueError, match=r"and 12 more"):
        select(tree, "nothing")


def test_empty_tree():
    with pytest.raises(ValueError, match="no leaves"):
        select({}, ".*")


def test_bad_where_types():
    with pytest.raises(TypeError, match="where: expected"):
        select(PARAMS, 3)
    with pytest.raises(TypeError, match="where: expected"):
        select(PARAMS, [r".*", 3.5])
    with pytest.raises(ValueError, match="invalid regex"):
        select(PARAMS, "(")
    with pytest.raises(ValueError, match="non-empty"):
        select(PARAMS, [])
    with pytest.raises(ValueError, match="min_ndim"):
        min_ndim(-1)
    with pytest.raises(ValueError, match="all_of"):
        all_of()


def test_nnx_state():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a = nnx.Linear(2, 2, rngs=rngs)

    _, state = nnx.split(Net(nnx.Rngs(0)))
    assert selected_paths(state, r".*/kernel") == ["a/kernel"]
    mask = select(state, min_ndim(2))
    assert jax.tree.leaves(mask) == [False, True]


def test_matches_and_describe():
    assert jz_paths.matches(r"a/.*", "a/b")
    assert not jz_paths.matches(r"a", "a/b")
    assert describe(r"x") == "'x'"
    assert describe([r"x", min_ndim(1)]) == "any of ['x', min_ndim(1)]"
    assert describe(all_of("a", not_("b"))) == "all_of('a', not_('b'))"
