"""GPTQ on one matrix: against a float64 NumPy transcription of the paper's algorithm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip.quant import QuantSpec, dequantize, gptq_quantize_matrix, quantize
from jaxzip.quant._gptq import gptq_core


def _params(x: np.ndarray, spec: QuantSpec) -> tuple[np.ndarray, np.ndarray]:
    """Min/max range (widened to 0) to scale and zero point, per column of ``x``."""
    lo, hi = np.minimum(x.min(0), 0.0), np.maximum(x.max(0), 0.0)
    qmin, qmax = spec.qmin, spec.qmax
    if spec.symmetric:
        scale = np.maximum(-lo, hi) / ((qmax - qmin) / 2)
        zero = np.full_like(scale, (qmin + qmax) / 2)
        scale = np.where(scale > 0, scale, 1.0)
    else:
        scale = (hi - lo) / (qmax - qmin)
        scale = np.where(scale > 0, scale, 1.0)
        zero = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    return scale, zero


def reference_gptq(w, h, spec, damp=0.01, act_order=False, keep=None):
    """Algorithm 1 of Frantar et al. (2022), one input row at a time, in float64.

    Returns the integer values, scales (per channel or per group) and the
    dequantized matrix. Groups: computed at each group's first row from the
    updated weights; with act_order, static groups from W before any update.
    With ``keep``, a weight it drops is quantized as 0 (SparseGPT's joint update
    with the mask given).
    """
    w, h = np.array(w, np.float64), np.array(h, np.float64)
    n, o = w.shape
    g = spec.group_size
    if g is None:
        scale, zero = _params(w if spec.axes else w.reshape(-1, 1), spec)
        scale, zero = scale[None], zero[None]
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[dead] = 0
    if g is not None:
        scale, zero = np.ones((n // g, o)), np.zeros((n // g, o))
        if act_order:
            for j in range(n // g):
                scale[j], zero[j] = _params(w[j * g : (j + 1) * g], spec)
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(n)
    w, h = w[perm], h[perm][:, perm]
    keep = np.ones(w.shape, bool) if keep is None else np.asarray(keep)[perm]
    h = h + damp * np.mean(np.diag(h)) * np.eye(n)
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    vals, deq = np.zeros((n, o)), np.zeros((n, o))
    for i in range(n):
        if g is not None and not act_order and i % g == 0:
            scale[i // g], zero[i // g] = _params(w[i : i + g], spec)
        row = 0 if g is None else perm[i] // g
        s, z = scale[row], zero[row]
        v = np.clip(np.round(np.where(keep[i], w[i], 0.0) / s) + z, spec.qmin, spec.qmax)
        q = (v - z) * s
        err = (w[i] - q) / u[i, i]
        w[i:] -= np.outer(u[i, i:], err)
        vals[i], deq[i] = v, q
    inv = np.argsort(perm)
    return vals[inv], scale, deq[inv]


def _problem(seed, n=24, o=6, tokens=64, dead=()):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(n, n)) * 0.3 + np.eye(n)
    x = rng.normal(size=(tokens, n)) @ mix  # correlated inputs
    x *= rng.uniform(0.2, 3.0, size=n)  # different input scales (act_order matters)
    for i in dead:
        x[:, i] = 0
    w = rng.normal(size=(n, o))
    return x.astype(np.float32), w.astype(np.float32)


CH4 = QuantSpec(bits=4, axes=(-1,))
G8 = QuantSpec(bits=3, axes=(-1,), group_size=8)
# (spec, act_order, block_size): n_in = 24, so block 8 gives three blocks with lazy updates,
# block 10 pads the last block, and block 128 is one block; each case compiles once.
CASES = [
    (CH4, False, 8),
    (CH4, True, 10),
    (G8, False, 8),
    (G8, True, 128),
    (QuantSpec(bits=4, axes=(-1,), symmetric=False, signed=False), False, 8),
    (QuantSpec(bits=2, axes=(-1,), group_size=6, symmetric=False), True, 8),
    (QuantSpec(bits=8, axes=()), False, 10),
]


@pytest.mark.parametrize(("spec", "act_order", "block"), CASES)
def test_matches_numpy_reference(spec, act_order, block):
    x, w = _problem(0, dead=(5,))
    h = x.T.astype(np.float64) @ x
    vals, scale, deq = reference_gptq(w, h, spec, act_order=act_order)
    q = gptq_quantize_matrix(w, h.astype(np.float32), spec, act_order=act_order, block_size=block)
    np.testing.assert_array_equal(np.asarray(q.values), vals.astype(np.int64))
    np.testing.assert_allclose(np.asarray(q.scale), scale, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(dequantize(q)), deq, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(("spec", "act_order", "block"), [CASES[0], CASES[3], CASES[5]])
def test_a_keep_mask_holds_its_zeros_and_matches_numpy(spec, act_order, block):
    x, w = _problem(1)
    h = x.T.astype(np.float64) @ x
    keep = np.random.default_rng(2).random(w.shape) < 0.5
    vals, _, deq = reference_gptq(w, h, spec, act_order=act_order, keep=keep)
    q = gptq_quantize_matrix(
        w, h.astype(np.float32), spec, act_order=act_order, block_size=block, keep=keep
    )
    np.testing.assert_array_equal(np.asarray(q.values), vals.astype(np.int64))
    got = np.asarray(dequantize(q))
    np.testing.assert_allclose(got, deq, rtol=2e-5, atol=2e-5)
    assert np.all(got[~keep] == 0) and np.all(deq[~keep] == 0)
    # the kept weights absorb the pruning error: less output error than zeroing afterwards
    after = np.where(keep, np.asarray(dequantize(gptq_quantize_matrix(w, h, spec))), 0.0)
    assert np.linalg.norm(x @ (w - got)) < 0.9 * np.linalg.norm(x @ (w - after))


def test_qarray_layout_and_invariant():
    x, w = _problem(1)
    h = x.T @ x
    q = gptq_quantize_matrix(w, h, G8, block_size=8)
    assert (q.axes, q.group_size, q.group_axis) == ((1,), 8, 0)
    assert q.scale.shape == (3, 6) and q.zero_point.shape == (3, 6)
    assert q.values.dtype == jnp.int8 and q.dtype == np.float32
    assert int(q.values.min()) >= -3 and int(q.values.max()) <= 3
    qc = gptq_quantize_matrix(w, h, CH4, block_size=8)
    assert qc.scale.shape == (1, 6) and qc.axes == (1,) and qc.group_size is None
    # per channel, the scales are RTN's (from the weights before any update)
    rtn = quantize(w, CH4)
    np.testing.assert_allclose(np.asarray(qc.scale), np.asarray(rtn.scale), rtol=1e-6)


def test_hand_worked_three_rows():
    # 2 bits, symmetric: grid {-1, 0, 1} * scale, scale = absmax of the column = 0.9.
    w = jnp.array([[0.4], [0.2], [0.9]])
    spec = QuantSpec(bits=2, axes=(-1,))
    # H = I (uncorrelated inputs): GPTQ is round-to-nearest, [0.44, 0.22, 1] -> [0, 0, 1].
    q = gptq_quantize_matrix(w, jnp.eye(3), spec, damp=1e-6)
    np.testing.assert_array_equal(np.asarray(q.values)[:, 0], [0, 0, 1])
    # Inputs 0 and 1 almost equal (H01 = 0.99): U[0, 1] / U[0, 0] = H⁻¹01 / H⁻¹00 = -0.99, so
    # row 0's error 0.4 moves to row 1: 0.2 + 0.99 * 0.4 = 0.596 -> 0.66 -> 1.
    h = jnp.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.0], [0.0, 0.0, 1.0]])
    q2 = gptq_quantize_matrix(w, h, spec, damp=1e-6)
    np.testing.assert_array_equal(np.asarray(q2.values)[:, 0], [0, 1, 1])
    np.testing.assert_allclose(np.asarray(q2.scale), [[0.9]], rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_layer_error_at_most_rtn(seed):
    x, w = _problem(seed + 10, tokens=256)
    h = x.T @ x
    for spec, act_order, block in (CASES[0], CASES[3]):  # compiled once, reused over seeds
        q = gptq_quantize_matrix(w, h, spec, act_order=act_order, block_size=block)
        err_gptq = np.linalg.norm(x @ w - x @ np.asarray(dequantize(q)))
        err_rtn = np.linalg.norm(x @ w - x @ np.asarray(dequantize(quantize(w, spec))))
        assert err_gptq <= err_rtn


def test_jit_and_eager_agree_and_dead_inputs():
    x, w = _problem(3, dead=(0, 7))
    h = x.T @ x
    spec = G8
    eager = gptq_quantize_matrix(w, h, spec, act_order=True, block_size=128)
    f = jax.jit(
        lambda w, h, d: gptq_quantize_matrix(w, h, spec, damp=d, act_order=True, block_size=128)
    )
    jitted = f(w, h, 0.01)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    deq = np.asarray(dequantize(eager))
    assert not deq[[0, 7]].any()  # dead inputs are zeroed


def test_singular_hessian_retries_then_raises():
    x, w = _problem(4)
    # rank-1 H with a tiny damp: the first tries fail in float32, a larger λ succeeds
    h = np.outer(x[0], x[0]).astype(np.float32)
    base = 1e-7 * np.mean(np.diag(h))
    q, ok, lam = gptq_core(w, h, 1e-7, spec=CH4, block_size=8, act_order=False)
    assert bool(ok) and float(lam) > 5 * base
    assert np.isfinite(np.asarray(q.scale)).all()
    neg = -5.0 * np.eye(24, dtype=np.float32)  # negative definite: no dampening helps
    spec = CASES[-1][0]
    with pytest.raises(ValueError, match="not positive definite"):
        gptq_quantize_matrix(w, neg, spec, block_size=10)
    jitted = jax.jit(lambda h: gptq_quantize_matrix(w, h, spec, block_size=10))(neg)
    assert np.isnan(np.asarray(jitted.scale)).all()


def test_bad_inputs():
    x, w = _problem(5)
    h = x.T @ x
    with pytest.raises(ValueError, match=r"2\.\.8 bits"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=1, symmetric=False))
    with pytest.raises(ValueError, match=r"group_size=5 must divide the input size 24.*\[1, 2, 3"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4, axes=(-1,), group_size=5))
    with pytest.raises(ValueError, match="group_size=48"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4, axes=(-1,), group_size=48))
    with pytest.raises(ValueError, match=r"spec\.axes"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4, axes=(0,)))
    with pytest.raises(ValueError, match="h must be"):
        gptq_quantize_matrix(w, h[:5], QuantSpec(bits=4))
    with pytest.raises(ValueError, match="damp"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4), damp=0.0)
    with pytest.raises(ValueError, match="block_size"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4), block_size=0)
    with pytest.raises(ValueError, match="rounds to nearest"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4, rounding="stochastic"))
    with pytest.raises(TypeError, match="QuantSpec"):
        gptq_quantize_matrix(w, h, 4)
    keep = np.ones(w.shape, bool)
    with pytest.raises(ValueError, match=r"keep must have the weights' shape \(24, 6\), got \(6,"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4), keep=keep.T)
    with pytest.raises(TypeError, match="keep must be a bool mask, got dtype float32"):
        gptq_quantize_matrix(w, h, QuantSpec(bits=4), keep=keep.astype(np.float32))
