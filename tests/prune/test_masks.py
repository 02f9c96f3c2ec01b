"""Tests for jaxzip/prune/_masks.py: make_mask, magnitude_mask, apply_mask, mask algebra."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.prune import (
    ERK,
    Block,
    Channel,
    Explicit,
    Global,
    NByM,
    Uniform,
    apply_mask,
    magnitude_mask,
    make_mask,
    mask_and,
    mask_or,
)


def _pruned(mask) -> int:
    return sum(int(np.sum(~np.asarray(m))) for m in jax.tree.leaves(mask))


def test_hand_worked_magnitude_mask():
    params = {"a": {"kernel": jnp.array([[0.5, -3.0], [2.0, 0.1]]), "bias": jnp.array([0.0, 9.0])}}
    mask = magnitude_mask(params, sparsity=0.5)
    assert mask["a"]["kernel"].tolist() == [[False, True], [True, False]]
    assert mask["a"]["bias"].tolist() == [True, True]  # not selected by the default where
    masked = apply_mask(params, mask)
    assert masked["a"]["kernel"].tolist() == [[0.0, -3.0], [2.0, 0.0]]


def test_uniform_is_exact_per_leaf_and_global_is_exact_overall(mlp_params):
    uni = magnitude_mask(mlp_params, sparsity=0.7, where=r".*/kernel")
    for name, shape in [("Dense_0", (16, 12)), ("Dense_1", (12, 8)), ("Dense_2", (8, 4))]:
        n = shape[0] * shape[1]
        assert int(np.sum(~np.asarray(uni[name]["kernel"]))) == round(0.7 * n)
    glob = magnitude_mask(mlp_params, sparsity=0.7, where=r".*/kernel", allocation=Global())
    assert _pruned(glob) == round(0.7 * (192 + 96 + 32))
    # Global: every kept magnitude >= every pruned magnitude.
    mags = np.concatenate([np.abs(np.asarray(mlp_params[k]["kernel"])).ravel() for k in glob])
    keep = np.concatenate([np.asarray(glob[k]["kernel"]).ravel() for k in glob])
    assert mags[keep].min() >= mags[~keep].max()


def test_global_ties_across_leaves_prune_earlier_leaf_first():
    params = {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 2))}
    mask = magnitude_mask(params, sparsity=0.75, allocation=Global())
    assert not np.asarray(mask["a"]).any()
    assert np.asarray(mask["b"]).tolist() == [[False, False], [True, True]]


def test_erk_gives_small_layers_lower_sparsity_and_exact_per_leaf(mlp_params):
    mask = magnitude_mask(mlp_params, sparsity=0.8, where=r".*/kernel", allocation=ERK())
    s = [1 - np.mean(np.asarray(mask[k]["kernel"])) for k in ("Dense_0", "Dense_1", "Dense_2")]
    assert s[0] > s[1] > s[2]
    assert abs(_pruned(mask) / 320 - 0.8) < 0.02


def test_explicit_rules_first_match_wins(mlp_params):
    rules = Explicit([(r"Dense_0/kernel", 0.5), (r".*/kernel", 0.25)])
    mask = magnitude_mask(mlp_params, where=r".*/kernel", allocation=rules)
    assert int(np.sum(~np.asarray(mask["Dense_0"]["kernel"]))) == 96
    assert int(np.sum(~np.asarray(mask["Dense_1"]["kernel"]))) == 24
    assert int(np.sum(~np.asarray(mask["Dense_2"]["kernel"]))) == 8
    with pytest.raises(ValueError, match="rule 1"):
        magnitude_mask(mlp_params, allocation=Explicit([(r".*", 0.5), (r"Dense_1/kernel", 0.2)]))
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(mlp_params, sparsity=0.5, allocation=rules)


def test_channel_removes_whole_output_units_by_norm():
    kernel = jnp.array([[1.0, -5.0, 0.5], [1.0, 0.0, 0.5]])  # L1 per column: 2, 5, 1
    mask = magnitude_mask({"k": kernel}, sparsity=0.34, structure=Channel())
    assert np.asarray(mask["k"]).tolist() == [[True, True, False]] * 2
    l2 = magnitude_mask({"k": kernel}, sparsity=0.67, structure=Channel(ord=2))
    assert np.asarray(l2["k"]).tolist() == [[False, True, False]] * 2


def test_block_prunes_whole_blocks():
    kernel = jnp.arange(16.0).reshape(4, 4)
    mask = np.asarray(magnitude_mask({"k": kernel}, sparsity=0.5, structure=Block((2, 2)))["k"])
    assert mask.tolist() == [[False] * 4] * 2 + [[True] * 4] * 2


def test_nbym_default_axis_is_input_axis():
    kernel = jnp.array([[1.0, 4.0], [3.0, 3.0], [2.0, 2.0], [4.0, 1.0]])  # (in=4, out=2)
    mask = np.asarray(magnitude_mask({"k": kernel}, structure=NByM(2, 4))["k"])
    assert mask[:, 0].tolist() == [False, True, False, True]
    assert mask[:, 1].tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match=r"prunes exactly 0\.5"):
        magnitude_mask({"k": kernel}, sparsity=0.7, structure=NByM(2, 4))


def test_vmap_over_sparsities_equals_separate_calls(mlp_params):
    levels = [0.5, 0.8, 0.9]
    for allocation in (Uniform(), Global()):
        batched = jax.vmap(
            lambda s, a=allocation: magnitude_mask(mlp_params, sparsity=s, allocation=a)
        )(jnp.array(levels))
        for i, s in enumerate(levels):
            single = magnitude_mask(mlp_params, sparsity=s, allocation=allocation)
            for b, m in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
                np.testing.assert_array_equal(np.asarray(b)[i], np.asarray(m))


def test_jit_and_eager_agree(mlp_params):
    eager = magnitude_mask(mlp_params, sparsity=0.6, structure=Channel())
    jitted = jax.jit(lambda p, s: magnitude_mask(p, sparsity=s, structure=Channel()))(
        mlp_params, 0.6
    )
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)


def test_make_mask_accepts_any_scores_and_keeps_unselected_true():
    scores = {"a": jnp.array([[3.0, 1.0], [2.0, 0.0]]), "b": jnp.array([[1.0, 1.0]])}
    mask = make_mask(scores, sparsity=0.5, where="a")
    assert np.asarray(mask["b"]).all()
    assert np.asarray(mask["a"]).tolist() == [[True, False], [True, False]]


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 2.0])
def test_bad_sparsity(mlp_params, sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_mask(mlp_params, sparsity=sparsity)


def test_bad_inputs(mlp_params):
    with pytest.raises(ValueError, match="selects no leaf"):
        magnitude_mask(mlp_params, sparsity=0.5, where=r".*/kernl")
    with pytest.raises(ValueError, match="dtype int32"):
        magnitude_mask({"w": jnp.ones((2, 2), jnp.int32)}, sparsity=0.5)
    with pytest.raises(ValueError, match="required"):
        magnitude_mask(mlp_params)
    with pytest.raises(TypeError, match="structure"):
        magnitude_mask(mlp_params, sparsity=0.5, structure="channel")
    with pytest.raises(ValueError, match="must divide"):
        magnitude_mask({"w": jnp.ones((6, 2))}, structure=NByM(2, 4))
    with pytest.raises(ValueError, match="out of range"):
        magnitude_mask({"w": jnp.ones((4, 4))}, structure=NByM(2, 4, axis=2))
    with pytest.raises(ValueError, match="does not divide"):
        magnitude_mask({"w": jnp.ones((4, 3))}, sparsity=0.5, structure=Block((2, 2)))


def test_apply_mask_names_first_differing_path(mlp_params):
    mask = jax.tree.map(lambda p: jnp.ones(p.shape, bool), mlp_params)
    bad = {**mask, "Dense_1": {**mask["Dense_1"], "kernel": jnp.ones((12, 9), bool)}}
    with pytest.raises(ValueError, match=r"Dense_1/kernel"):
        apply_mask(mlp_params, bad)
    missing = {k: v for k, v in mask.items() if k != "Dense_2"}
    with pytest.raises(ValueError, match="Dense_2"):
        apply_mask(mlp_params, missing)
    floats = jax.tree.map(lambda m: m.astype(jnp.float32), mask)
    with pytest.raises(ValueError, match="bool"):
        apply_mask(mlp_params, floats)


def test_mask_and_or():
    a = {"w": jnp.array([True, True, False])}
    b = {"w": jnp.array([True, False, False])}
    assert mask_and(a, b)["w"].tolist() == [True, False, False]
    assert mask_or(a, b)["w"].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="masks\\[1\\]"):
        mask_and(a, {"v": jnp.array([True, True, True])})
    with pytest.raises(ValueError, match="at least two"):
        mask_or(a)


def test_magnitude_mask_names_nonfinite_selected_leaves_only():
    from jaxzip._errors import NonFiniteError

    params = {
        "a": {"kernel": jnp.array([[1.0, jnp.nan], [jnp.inf, 2.0]])},
        "b": {"kernel": jnp.ones((2, 2)), "bias": jnp.array([jnp.nan])},  # bias not selected
    }
    with pytest.raises(
        NonFiniteError,
        match=r"^a/kernel: holds 2 NaN or Inf value\(s\) "
        r"\(1 NaN, 1 Inf, of 4\); magnitude_mask expects finite",
    ) as e:
        magnitude_mask(params, sparsity=0.5)
    assert e.value.paths == ("a/kernel",)
    params["a"]["kernel"] = jnp.ones((2, 2))
    magnitude_mask(params, sparsity=0.5)  # the NaN bias is not selected: fine
    # under the caller's jit nothing is known: no check, no error
    jax.jit(lambda p: magnitude_mask(p, sparsity=0.5))({"w": jnp.full((2, 2), jnp.nan)})


def test_make_mask_accepts_infinite_scores_but_not_nan():
    from jaxzip._errors import NonFiniteError

    scores = {"w": jnp.array([[-jnp.inf, 1.0], [jnp.inf, 0.5]])}
    mask = make_mask(scores, sparsity=0.5)["w"]  # -inf pruned first, +inf kept
    assert mask.tolist() == [[False, True], [True, False]]
    with pytest.raises(NonFiniteError, match=r"^w: holds 1 NaN value\(s\) .*make_mask"):
        make_mask({"w": jnp.array([[jnp.nan, 1.0], [2.0, 3.0]])}, sparsity=0.5)


def test_layer_axes_rank_each_layer_of_a_stack_as_the_loop_build_does():
    k = jax.random.split(jax.random.key(0), 2)
    stack = jax.random.normal(k[0], (3, 4, 6))  # three layers of (4, 6), stacked on axis 0
    other = jax.random.normal(k[1], (6, 2))
    stacked = {"stack": stack, "head": other}
    looped = {"layers": [stack[i] for i in range(3)], "head": other}
    rules = Explicit([(r"stack|layers/\d+", 0.5), ("head", 0.25)])  # the same leaves both ways
    for allocation, sparsity in ((Uniform(), 0.5), (ERK(), 0.6), (Global(), 0.5), (rules, None)):
        m_stack = magnitude_mask(
            stacked, sparsity=sparsity, allocation=allocation, layer_axes={"stack": 0}
        )
        m_loop = magnitude_mask(looped, sparsity=sparsity, allocation=allocation)
        for i in range(3):
            np.testing.assert_array_equal(m_stack["stack"][i], m_loop["layers"][i])
        np.testing.assert_array_equal(m_stack["head"], m_loop["head"])
    # each layer loses exactly half; ranked whole, the layers lose different amounts
    per_layer = magnitude_mask(stacked, sparsity=0.5, layer_axes={"stack": 0})["stack"]
    assert [int(jnp.sum(~per_layer[i])) for i in range(3)] == [12, 12, 12]
    whole = magnitude_mask(
        {"stack": stack * jnp.array([1.0, 2.0, 3.0])[:, None, None]}, sparsity=0.5
    )
    assert len({int(jnp.sum(~whole["stack"][i])) for i in range(3)}) > 1
    # the layer axis need not lead; Channel prunes each layer's own output units
    moved = {"stack": jnp.moveaxis(stack, 0, 2), "head": other}
    m = magnitude_mask(moved, sparsity=0.5, structure=Channel(), layer_axes={"stack": 2})
    ref = magnitude_mask(looped, sparsity=0.5, structure=Channel())
    for i in range(3):
        np.testing.assert_array_equal(m["stack"][:, :, i], ref["layers"][i])


def test_layer_axes_bad_input():
    params = {"stack": jnp.ones((2, 3, 4)), "b": jnp.ones(4)}
    with pytest.raises(
        ValueError, match=r"layer_axes\['b'\]: expected one of the selected leaves \['stack'\]"
    ):
        magnitude_mask(params, sparsity=0.5, layer_axes={"b": 0})
    with pytest.raises(
        ValueError, match=r"layer_axes\['stack'\]: expected an axis of the leaf's 3"
    ):
        magnitude_mask(params, sparsity=0.5, layer_axes={"stack": 3})
    with pytest.raises(TypeError, match="layer_axes: expected a dict"):
        magnitude_mask(params, sparsity=0.5, layer_axes=[("stack", 0)])
    # N:M groups lie inside one layer already: the same mask with or without
    nbym, params = NByM(2, 4), {"stack": jax.random.normal(jax.random.key(1), (2, 4, 4))}
    np.testing.assert_array_equal(
        magnitude_mask(params, structure=nbym, layer_axes={"stack": 0})["stack"],
        magnitude_mask(params, structure=nbym)["stack"],
    )
