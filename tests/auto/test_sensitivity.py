"""Tests of jaxzip/auto/_sensitivity.py."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.auto import Sensitivity, plot_sensitivity, probe, sensitivity


def test_hand_worked_sum():
    p = {"a": jnp.array([1.0, -2.0, 3.0, 4.0]), "b": jnp.array([10.0, 20.0])}
    s = sensitivity(
        p,
        lambda q: float(q["a"].sum() + q["b"].sum()),
        where="a",
        sparsities=(0.25, 0.5),
        bits=(2, 1),
    )
    assert s.layers == ("a",) and s.sparsities == (0.25, 0.5) and s.bits == (2, 1)
    assert s.baseline == 36.0
    # 25%: drops 1.0; 50%: drops 1.0 and -2.0
    np.testing.assert_allclose(s.sparsity_accuracy, [[35.0, 37.0]])
    # k-means preserves the sum of each cluster's members (centroid = mean): sum unchanged
    np.testing.assert_allclose(s.bits_accuracy, [[36.0, 36.0]], rtol=1e-6)


def test_only_the_probed_leaf_changes(mlp):
    out = probe(mlp, "Dense_1/kernel", sparsity=0.5, bits=2, iters=5)
    np.testing.assert_array_equal(out["Dense_0"]["kernel"], mlp["Dense_0"]["kernel"])
    k = np.asarray(out["Dense_1"]["kernel"])
    assert np.mean(k == 0) == pytest.approx(0.5)
    assert len(np.unique(k[k != 0])) <= 4


def test_one_row_per_layer(mlp, make_eval):
    ev = make_eval()
    s = sensitivity(mlp, ev, where=r".*/kernel", sparsities=(0.5, 0.9), bits=(4, 2), iters=5)
    assert s.layers == ("Dense_0/kernel", "Dense_1/kernel")
    assert s.sparsity_accuracy.shape == (2, 2) and s.bits_accuracy.shape == (2, 2)
    assert ev.calls == 1 + 2 * 4
    assert s.baseline == 1.0
    assert (s.sparsity_accuracy[:, 1] <= s.sparsity_accuracy[:, 0] + 0.05).all()


@pytest.mark.parametrize("value", [float("nan"), np.ones(2), "0.9", None, True])
def test_bad_eval_values(value):
    with pytest.raises(ValueError, match=r"eval_fn.*expected a finite scalar"):
        sensitivity({"a": jnp.ones(4)}, lambda q: value, where="a", sparsities=(0.5,), bits=(2,))


def test_bad_options():
    p = {"a": jnp.ones(4)}
    with pytest.raises(ValueError, match="sparsities"):
        sensitivity(p, lambda q: 1.0, where="a", sparsities=(1.0,))
    with pytest.raises(ValueError, match="bits"):
        sensitivity(p, lambda q: 1.0, where="a", bits=(9,))
    with pytest.raises(ValueError, match="where"):
        sensitivity(p, lambda q: 1.0, where="nothing")


def test_json_round_trip_and_plot():
    s = Sensitivity(
        layers=("a", "b"),
        sparsities=(0.5, 0.9),
        bits=(4, 2),
        baseline=0.9,
        sparsity_accuracy=[[0.9, 0.8], [0.85, 0.5]],
        bits_accuracy=[[0.9, 0.7], [0.9, 0.88]],
    )
    back = Sensitivity.from_json(s.to_json())
    assert back.layers == s.layers and back.bits == s.bits and back.baseline == s.baseline
    np.testing.assert_array_equal(back.sparsity_accuracy, s.sparsity_accuracy)
    fig = plot_sensitivity(s)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3  # 2 layers + baseline
    with pytest.raises(ValueError, match="not a sensitivity"):
        Sensitivity.from_json('{"layers": []}')
    with pytest.raises(ValueError, match="shape"):
        Sensitivity(
            layers=("a",),
            sparsities=(0.5,),
            bits=(4,),
            baseline=1.0,
            sparsity_accuracy=[[1.0, 2.0]],
            bits_accuracy=[[1.0]],
        )
    with pytest.raises(TypeError, match="Sensitivity"):
        plot_sensitivity({"layers": []})
