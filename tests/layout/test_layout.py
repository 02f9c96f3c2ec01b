"""Tests for jaxzip/layout/_layout.py: KernelLayout, to_matrix/from_matrix, matmul_where."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxzip as jz
from jaxzip.layout import KernelLayout, from_matrix, matmul_where, to_matrix


def test_hand_worked_dense_and_conv_orders():
    w = np.arange(6).reshape(2, 3)
    dense = KernelLayout(shape=(2, 3), in_axes=(0,), out_axes=(1,))
    np.testing.assert_array_equal(to_matrix(w, dense), w)
    flipped = KernelLayout(shape=(2, 3), in_axes=(1,), out_axes=(0,))
    np.testing.assert_array_equal(to_matrix(w, flipped), w.T)
    # HWIO conv: rows run over (h, w, c_in), c_in fastest
    k = np.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4)
    conv = KernelLayout(shape=k.shape, in_axes=(0, 1, 2), out_axes=(3,), op="conv")
    m = np.asarray(to_matrix(k, conv))
    assert m.shape == (12, 4) and conv.n_in == 12 and conv.n_out == 4
    assert (m[1 * 6 + 0 * 3 + 2] == k[1, 0, 2]).all()


def test_attention_out_kernel():
    k = np.arange(2 * 3 * 5).reshape(2, 3, 5)  # (heads, head_dim, out)
    lay = KernelLayout(shape=k.shape, in_axes=(0, 1), out_axes=(2,))
    m = np.asarray(to_matrix(k, lay))
    assert m.shape == (6, 5)
    assert (m[1 * 3 + 2] == k[1, 2]).all()
    assert lay.quant_axes() == (2,) and lay.group_axis() == 1


@st.composite
def _layouts(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim, max_size=ndim)))
    ins = draw(st.sets(st.integers(0, ndim - 1), min_size=1, max_size=ndim))
    ins = tuple(sorted(ins))
    outs = tuple(a for a in range(ndim) if a not in ins)
    return KernelLayout(shape=shape, in_axes=ins, out_axes=outs)


@settings(max_examples=25, deadline=None)
@given(_layouts(), st.integers(0, 2**31 - 1))
def test_round_trip_is_exact_and_rows_follow_in_axes(lay, seed):
    w = np.random.default_rng(seed).normal(size=lay.shape).astype(np.float32)
    m = np.asarray(to_matrix(w, lay))
    assert m.shape == (lay.n_in, lay.n_out)
    np.testing.assert_array_equal(np.asarray(from_matrix(m, lay)), w)
    # row r is the row-major multi-index over in_axes, column c over out_axes
    idx = np.unravel_index(np.arange(lay.n_in), lay.in_shape)
    cols = np.unravel_index(np.arange(lay.n_out), lay.out_shape) if lay.out_axes else ()
    for r in range(lay.n_in):
        full = [None] * lay.ndim
        for a, i in zip(lay.in_axes, idx, strict=True):
            full[a] = i[r]
        for c in range(lay.n_out):
            for a, i in zip(lay.out_axes, cols, strict=True):
                full[a] = i[c]
            assert m[r, c] == w[tuple(full)]


def test_jit_and_eager_agree():
    lay = KernelLayout(shape=(3, 2, 4), in_axes=(0, 2), out_axes=(1,))
    w = jnp.arange(24.0).reshape(3, 2, 4)
    np.testing.assert_array_equal(jax.jit(to_matrix, static_argnums=1)(w, lay), to_matrix(w, lay))
    m = to_matrix(w, lay)
    np.testing.assert_array_equal(
        jax.jit(from_matrix, static_argnums=1)(m, lay), from_matrix(m, lay)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (2, 3), "in_axes": (0,), "out_axes": ()}, "partition"),
        ({"shape": (2, 3), "in_axes": (1, 0), "out_axes": ()}, "ascending"),
        ({"shape": (2, 3), "in_axes": (), "out_axes": (0, 1)}, "empty"),
        ({"shape": (2, 3), "in_axes": (0,), "out_axes": (1,), "op": "conv2d"}, "op"),
        ({"shape": (2, 3), "in_axes": (0, 0), "out_axes": (1,)}, "ascending"),
        ({"shape": (2, 3), "in_axes": (-1,), "out_axes": (0,)}, "ascending|partition"),
    ],
)
def test_bad_layouts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KernelLayout(**kwargs)


def test_bad_types_and_shapes():
    with pytest.raises(TypeError, match="in_axes"):
        KernelLayout(shape=(2, 3), in_axes=[0], out_axes=(1,))
    lay = KernelLayout(shape=(2, 3), in_axes=(0,), out_axes=(1,))
    with pytest.raises(ValueError, match=r"expected shape \(2, 3\)"):
        to_matrix(np.ones((3, 2)), lay)
    with pytest.raises(ValueError, match=r"expected a \(2, 3\) matrix"):
        from_matrix(np.ones((3, 2)), lay)
    with pytest.raises(TypeError, match="string"):
        matmul_where("Dense_0/kernel")


def test_layout_is_hashable_and_frozen():
    lay = KernelLayout(shape=(2, 3), in_axes=(0,), out_axes=(1,))
    assert hash(lay) == hash(KernelLayout(shape=(2, 3), in_axes=(0,), out_axes=(1,)))
    with pytest.raises(AttributeError):
        lay.shape = (1,)


def test_matmul_where_with_select_prune_and_quant():
    params = {
        "emb": jnp.ones((10, 4)),
        "Dense_0": {"kernel": jnp.arange(32.0).reshape(4, 8) - 16, "bias": jnp.ones(8)},
    }
    lay = {"Dense_0/kernel": KernelLayout(shape=(4, 8), in_axes=(0,), out_axes=(1,))}
    where = matmul_where(lay)
    assert jz.paths.selected_paths(params, where) == ["Dense_0/kernel"]
    assert "Dense_0/kernel" in repr(where)
    mask = jz.prune.magnitude_mask(params, sparsity=0.5, where=where)
    assert bool(mask["emb"].all()) and bool(mask["Dense_0"]["bias"].all())
    assert float(mask["Dense_0"]["kernel"].mean()) == 0.5
    spec = jz.quant.QuantSpec(bits=4, axes=lay["Dense_0/kernel"].quant_axes())
    q = jz.quant.quantize_params(params, [(where, spec)])
    assert isinstance(q["Dense_0"]["kernel"], jz.quant.QArray)
    assert not isinstance(q["emb"], jz.quant.QArray)
