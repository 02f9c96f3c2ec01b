"""Tests for jaxzip/prune/_structures.py: spec validation, N:M validity, channel and block groups."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxzip.prune import Block, Channel, NByM, magnitude_mask


@settings(max_examples=25, deadline=None)
@given(
    nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4)]),
    shape=st.sampled_from([(8, 3), (4, 4), (2, 2, 8, 3), (12, 2)]),
    axis=st.sampled_from([-2, -1, 0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_nbym_keeps_exactly_n_of_every_m_and_the_largest(nm, shape, axis, seed):
    n, m = nm
    if shape[axis] % m:
        return
    rng = np.random.default_rng(seed)
    w = rng.integers(-3, 4, size=shape).astype(np.float32)  # many ties
    mask = np.asarray(magnitude_mask({"w": jnp.asarray(w)}, structure=NByM(n, m, axis=axis))["w"])
    groups = np.moveaxis(mask, axis, -1).reshape(-1, m)
    vals = np.abs(np.moveaxis(w, axis, -1).reshape(-1, m))
    assert (groups.sum(axis=1) == n).all()
    for keep, v in zip(groups, vals, strict=True):
        # The kept ones are the first n in a stable descending order.
        want = np.zeros(m, bool)
        want[np.argsort(-v, kind="stable")[:n]] = True
        np.testing.assert_array_equal(keep, want)
    assert mask.mean() == pytest.approx(n / m)


def test_nbym_hand_worked_on_conv_input_channels():
    w = np.zeros((1, 1, 4, 1), np.float32)
    w[0, 0, :, 0] = [0.1, -0.9, 0.5, 0.2]
    mask = np.asarray(magnitude_mask({"w": jnp.asarray(w)}, structure=NByM(2, 4))["w"])
    assert mask[0, 0, :, 0].tolist() == [False, True, True, False]


def test_channel_on_hwio_conv_uses_last_axis():
    w = np.ones((3, 3, 2, 4), np.float32) * np.array([1.0, 3.0, 2.0, 0.5])
    mask = np.asarray(magnitude_mask({"w": jnp.asarray(w)}, sparsity=0.5, structure=Channel())["w"])
    alive = mask.reshape(-1, 4).all(axis=0)
    assert alive.tolist() == [False, True, True, False]
    assert (mask.reshape(-1, 4).any(axis=0) == alive).all()  # whole channels only


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(4, 6), (2, 4, 6)]),
    block=st.sampled_from([(2,), (2, 2), (1, 3), (2, 3)]),
    sparsity=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_masks_are_constant_on_blocks_and_exact(shape, block, sparsity, seed):
    w = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    mask = np.asarray(
        magnitude_mask({"w": jnp.asarray(w)}, sparsity=sparsity, structure=Block(block))["w"]
    )
    full = (1,) * (len(shape) - len(block)) + block
    split = mask.reshape([x for d, b in zip(shape, full, strict=True) for x in (d // b, b)])
    inner = tuple(range(1, split.ndim, 2))
    assert (split.all(axis=inner) == split.any(axis=inner)).all()
    n_blocks = int(np.prod([d // b for d, b in zip(shape, full, strict=True)]))
    assert int((~split.all(axis=inner)).sum()) == round(sparsity * n_blocks)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: NByM(4, 4), "1 <= n < m"),
        (lambda: NByM(0, 4), "1 <= n < m"),
        (lambda: NByM(2.0, 4), "n must be an int"),
        (lambda: NByM(2, 4, axis="x"), "axis must be an int"),
        (lambda: Channel(ord=3), "ord must be 1 or 2"),
        (lambda: Block(()), "Block"),
        (lambda: Block((2, 0)), "Block"),
    ],
)
def test_bad_specs(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_specs_are_frozen_and_hashable():
    spec = NByM(2, 4)
    assert hash(spec) == hash(NByM(2, 4)) and spec.sparsity == 0.5
    with pytest.raises(AttributeError):
        spec.n = 3  # type: ignore[misc]
