"""Tests for jaxzip/_finite.py (and the NonFiniteError of jaxzip/_errors.py), and the check at
the codec boundary."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip import codec
from jaxzip._errors import JaxzipError, NonFiniteError
from jaxzip._finite import (
    check_finite,
    check_finite_items,
    describe_counts,
    finite_flags,
    nonfinite_counts,
    nonfinite_paths,
)

NAN, INF = float("nan"), float("inf")


def _tree():
    return {
        "a": jnp.array([1.0, NAN, INF, -INF]),
        "b": {"kernel": jnp.ones((2, 2)), "n": jnp.arange(3)},
        "c": np.array([NAN], np.float32),
    }


def test_hand_worked_flags_and_counts_jit_and_eager_agree():
    tree = _tree()  # leaves: a, b/kernel, b/n, c
    for fn in (finite_flags, jax.jit(finite_flags)):
        assert np.asarray(fn(tree)).tolist() == [False, True, True, False]
    for fn in (nonfinite_counts, jax.jit(nonfinite_counts)):
        assert np.asarray(fn(tree)).tolist() == [[1, 2], [0, 0], [0, 0], [1, 0]]
    assert finite_flags({}).shape == (0,) and nonfinite_counts({}).shape == (0, 2)


def test_paths_and_descriptions_from_flags_and_counts():
    tree = _tree()
    assert nonfinite_paths(tree, finite_flags(tree)) == ["a", "c"]
    stacked = jnp.stack([finite_flags(tree), jnp.ones(4, bool)])  # e.g. two vmapped students
    assert nonfinite_paths(tree, stacked) == ["a", "c"]
    phrases, paths = describe_counts(tree, nonfinite_counts(tree), label="gradient")
    assert phrases == ["gradient 'a' has 1 NaN, 2 Inf", "gradient 'c' has 1 NaN"]
    assert paths == ["a", "c"]
    with pytest.raises(ValueError, match=r"one entry per leaf .*4 leaves.*got shape \(3,\)"):
        nonfinite_paths(tree, np.ones(3, bool))
    with pytest.raises(ValueError, match="axis of 2"):
        describe_counts(tree, np.zeros((4, 3), np.int32), label="x")


def test_check_finite_names_function_paths_and_counts():
    with pytest.raises(NonFiniteError) as e:
        check_finite(_tree(), where="demo")
    msg = str(e.value)
    assert msg == (
        "a: holds 3 NaN or Inf value(s) (1 NaN, 2 Inf, of 4); "
        "c: holds 1 NaN or Inf value(s) (1 NaN, 0 Inf, of 1); demo expects finite values"
    )
    assert e.value.paths == ("a", "c") and e.value.state is None
    assert isinstance(e.value, ValueError) and isinstance(e.value, JaxzipError)


def test_check_finite_passes_and_ignores_what_it_cannot_judge():
    check_finite({"w": jnp.ones(3), "i": jnp.arange(2), "e": jnp.zeros((0,)), "s": 2.0}, where="x")
    check_finite({"flag": True, "n": 3}, where="x")
    check_finite([], where="x")


@pytest.mark.parametrize(
    "leaf",
    [
        jnp.array([1.0, NAN], jnp.bfloat16),
        np.array([1.0, INF], np.float16),
        jnp.asarray(np.array([1.0, NAN])).astype(jnp.bfloat16),
        INF,
    ],
)
def test_check_finite_catches_every_float_kind(leaf):
    with pytest.raises(NonFiniteError, match=r"^x: holds 1 NaN or Inf"):
        check_finite(leaf, where="demo", name="x")


def test_allow_inf_rejects_only_nan():
    check_finite({"s": jnp.array([-INF, 1.0, INF])}, where="demo", allow_inf=True)
    with pytest.raises(NonFiniteError, match=r"^s: holds 1 NaN value\(s\) \(of 2\); demo expects"):
        check_finite({"s": jnp.array([NAN, INF])}, where="demo", allow_inf=True)


def test_tracers_are_skipped_but_concrete_leaves_inside_a_trace_are_checked():
    out = jax.jit(lambda x: (check_finite(x, where="demo"), x)[1])(jnp.array([NAN]))
    assert np.isnan(out[0])  # nothing known under the trace: no error
    closed = jnp.array([NAN])

    def f(x):
        check_finite(closed, where="demo", name="closed")
        return x

    with pytest.raises(NonFiniteError, match="closed: holds 1"):
        jax.jit(f)(1.0)


def test_long_lists_of_bad_leaves_are_summarised():
    tree = {f"w{i}": jnp.array([NAN]) for i in range(6)}
    with pytest.raises(NonFiniteError, match=r"and 3 more leaves: w3, w4, w5; demo") as e:
        check_finite(tree, where="demo")
    assert len(e.value.paths) == 6


def test_check_finite_items_joins_prefixes():
    with pytest.raises(NonFiniteError, match=r"^a/b/1: holds 1 .*; demo expects") as e:
        check_finite_items(
            [("a/b", [np.ones(1), np.array([INF])]), ("c", np.ones(2))], where="demo"
        )
    assert e.value.paths == ("a/b/1",)


def test_codec_encode_rejects_nonfinite_unless_allowed(tmp_path):
    from jaxzip.quant import QuantSpec, quantize

    q = quantize(jnp.ones((2, 2)), QuantSpec(bits=4))
    tree = {
        "q": q.replace(scale=jnp.full_like(q.scale, INF)),  # a QArray's scale is checked too
        "w": np.array([0.0, NAN], np.float32),
        "ok": np.ones(2, np.float32),
    }
    with pytest.raises(NonFiniteError, match=r"codec\.encode expects finite values") as e:
        codec.save(tmp_path / "m.jz", tree)
    assert e.value.paths == ("q/scale", "w") and not (tmp_path / "m.jz").exists()
    back = codec.decode(codec.encode({"w": tree["w"]}, allow_nonfinite=True))
    assert np.isnan(back["w"][1])
