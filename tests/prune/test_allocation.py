"""Tests for jaxzip/prune/_allocation.py: ERK, Explicit rules and spec validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.prune import ERK, Explicit, erk_sparsities


def test_erk_hand_worked_caps_dense_layer():
    # raw densities 0.02 and 0.11: the small layer would exceed 1 and is kept dense;
    # the remaining budget 5500 - 1000 ones goes to the 10_000-weight layer.
    s = erk_sparsities([(100, 100), (100, 10)], 0.5)
    np.testing.assert_allclose(s, [0.55, 0.0])


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.8, 0.95])
def test_erk_total_matches_target_and_traced_agrees(sparsity):
    shapes = [(5, 5, 1, 20), (5, 5, 20, 50), (800, 500), (500, 10)]
    s = erk_sparsities(shapes, sparsity)
    n = np.array([np.prod(sh) for sh in shapes], float)
    assert np.all((s >= 0) & (s < 1))
    assert float((s * n).sum() / n.sum()) == pytest.approx(sparsity, abs=1e-9)
    traced = jax.jit(lambda v: erk_sparsities(shapes, v))(jnp.float32(sparsity))
    np.testing.assert_allclose(np.asarray(traced), s, atol=1e-5)


def test_erk_power_zero_is_uniform():
    np.testing.assert_allclose(erk_sparsities([(4, 4), (8, 2)], 0.5, power=0.0), [0.5, 0.5])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Explicit([]), "at least one"),
        (lambda: Explicit("x"), "sequence"),
        (lambda: Explicit([(".*", 1.0)]), r"rules\[0\] sparsity"),
        (lambda: Explicit([(".*",)]), "pair"),
        (lambda: Explicit([(3, 0.5)]), "where"),
        (lambda: ERK(power=-1.0), "power"),
    ],
)
def test_bad_specs(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()
