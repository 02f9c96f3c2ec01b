"""Tests for jaxzip/prune/_schedules.py: Zhu & Gupta schedule, one-shot, rounds, rewind."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.prune import iterative_rounds, one_shot_sparsity, polynomial_sparsity, rewind


def _zhu_gupta(t, sf, si, t0, t1, dt, p=3):
    if t < t0:
        return si
    if t >= t1:
        return sf
    tq = t0 + ((t - t0) // dt) * dt
    return sf + (si - sf) * (1 - (tq - t0) / (t1 - t0)) ** p


def test_polynomial_matches_formula_at_checkpoints():
    sched = polynomial_sparsity(0.9, initial=0.1, begin_step=100, end_step=1100, update_every=50)
    steps = [0, 99, 100, 149, 150, 400, 777, 1050, 1099, 1100, 5000]
    got = jax.jit(jax.vmap(sched))(jnp.array(steps))
    want = [_zhu_gupta(t, 0.9, 0.1, 100, 1100, 50) for t in steps]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)
    assert float(sched(149)) == float(sched(100))  # piecewise constant between updates
    assert float(sched(1100)) == pytest.approx(0.9)


def test_one_shot_and_rounds():
    s = one_shot_sparsity(0.8, at_step=5)
    assert float(s(4)) == 0.0 and float(s(5)) == pytest.approx(0.8)
    rounds = iterative_rounds(0.936, rounds=3)
    assert rounds == pytest.approx((0.6, 0.84, 0.936))
    # Each round prunes the same fraction of what is left.
    alive = [1.0] + [1 - r for r in rounds]
    assert alive[1] / alive[0] == pytest.approx(alive[2] / alive[1])


def test_rewind_to_init_or_step_k_keeps_only_survivors():
    now = {"k": jnp.array([5.0, -6.0, 7.0]), "b": jnp.array([1.0])}
    init = {"k": jnp.array([0.1, 0.2, 0.3]), "b": jnp.array([0.0])}
    mask = {"k": jnp.array([True, False, True]), "b": jnp.array([True])}
    out = rewind(now, init, mask)
    assert out["k"].tolist() == [pytest.approx(0.1), 0.0, pytest.approx(0.3)]
    partial = rewind(now, init, mask, where="k")
    assert partial["b"].tolist() == [1.0]
    with pytest.raises(ValueError, match="'k'"):
        rewind(now, {"k": jnp.ones(2), "b": jnp.ones(1)}, mask)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"final": 1.0, "begin_step": 0, "end_step": 10}, "final"),
        ({"final": 0.5, "initial": 0.6, "begin_step": 0, "end_step": 10}, "initial"),
        ({"final": 0.5, "begin_step": 10, "end_step": 10}, "end_step"),
        ({"final": 0.5, "begin_step": -1, "end_step": 10}, "begin_step"),
        ({"final": 0.5, "begin_step": 0, "end_step": 10, "update_every": 0}, "update_every"),
        ({"final": 0.5, "begin_step": 0, "end_step": 10, "power": 0}, "power"),
    ],
)
def test_bad_polynomial_arguments(kwargs, match):
    final = kwargs.pop("final")
    with pytest.raises(ValueError, match=match):
        polynomial_sparsity(final, **kwargs)


def test_bad_rounds_and_one_shot():
    with pytest.raises(ValueError, match="rounds"):
        iterative_rounds(0.9, rounds=0)
    with pytest.raises(ValueError, match="value"):
        one_shot_sparsity(-0.1)
