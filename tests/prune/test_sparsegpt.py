"""SparseGPT on one matrix: against a float64 NumPy transcription, exact masks, vs magnitude."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxzip.prune import (
    NByM,
    apply_mask,
    keep_masked,
    sparsegpt,
    sparsegpt_prune_matrix,
    topk_mask,
)
from jaxzip.quant import QuantSpec, dequantize, quantize


def reference_sparsegpt(w, h, sparsity=None, nm=None, block=8, damp=0.01, spec=None):
    """Algorithm 1 of Frantar & Alistarh (2023) in float64, rows = inputs.

    Unstructured: per block, exactly round(s * size) lowest w^2 / U_ii^2 over the whole
    block (ties: lower row-major index); N:M: at each group's first row, per column.
    """
    w, h = np.array(w, np.float64), np.array(h, np.float64)
    n, o = w.shape
    if spec is not None:
        lo, hi = np.minimum(w.min(0), 0), np.maximum(w.max(0), 0)
        scale = np.maximum(-lo, hi) / ((spec.qmax - spec.qmin) / 2)  # symmetric specs only
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[dead] = 0
    h = h + damp * np.mean(np.diag(h)) * np.eye(n)
    u = np.linalg.cholesky(np.linalg.inv(h)).T
    mask = np.ones((n, o), bool)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        if sparsity is not None:
            sc = (w[i1:i2] ** 2 / np.diag(u)[i1:i2, None] ** 2).ravel()
            k = round(sparsity * sc.size)
            drop = np.argsort(sc, kind="stable")[:k]
            m1 = np.ones(sc.size, bool)
            m1[drop] = False
            mask[i1:i2] = m1.reshape(i2 - i1, o)
        for i in range(i1, i2):
            if nm is not None and i % nm[1] == 0:
                seg = w[i : i + nm[1]] ** 2 / np.diag(u)[i : i + nm[1], None] ** 2
                order = np.argsort(-seg, axis=0, kind="stable")
                mask[i : i + nm[1]] = np.argsort(order, axis=0, kind="stable") < nm[0]
            q = np.where(mask[i], w[i], 0.0)
            if spec is not None:
                q = np.clip(np.round(q / scale), spec.qmin, spec.qmax) * scale
            err = (w[i] - q) / u[i, i]
            w[i:] -= np.outer(u[i, i:], err)
            w[i] = q
    return w, mask


def _problem(seed, n=24, o=6, tokens=96):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(tokens, n)) @ (rng.normal(size=(n, n)) * 0.3 + np.eye(n))
    x *= rng.uniform(0.2, 3.0, size=n)
    x[:, 3] = 0  # a dead input
    return x.astype(np.float32), rng.normal(size=(n, o)).astype(np.float32)


CASES = [
    dict(sparsity=0.5, block_size=8),
    dict(sparsity=0.3, block_size=10),  # a padded last block of 4 rows
    dict(structure=NByM(2, 4), block_size=8),
    dict(structure=NByM(1, 3), block_size=128),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_numpy_reference_and_masks_are_exact(case):
    x, w = _problem(0)
    h = x.T.astype(np.float64) @ x
    st = case.get("structure")
    ref_w, ref_mask = reference_sparsegpt(
        w, h, case.get("sparsity"), None if st is None else (st.n, st.m), case["block_size"]
    )
    w_hat, mask = sparsegpt_prune_matrix(w, h.astype(np.float32), **case)
    mask = np.asarray(mask)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_allclose(np.asarray(w_hat), ref_w, rtol=1e-4, atol=1e-4)
    assert not np.asarray(w_hat)[~mask].any()
    if st is not None:  # exactly n of every m consecutive inputs, per output
        assert (mask.reshape(24 // st.m, st.m, 6).sum(1) == st.n).all()
    else:  # exactly round(s * size) per block
        b = case["block_size"]
        for i1 in range(0, 24, b):
            blk = mask[i1 : i1 + b]
            assert (~blk).sum() == round(case["sparsity"] * blk.size)


@pytest.mark.parametrize("seed", range(3))
def test_reconstruction_at_most_magnitude(seed):
    x, w = _problem(seed + 5)
    h = x.T @ x
    for case in (CASES[0], CASES[2]):
        w_hat, _ = sparsegpt_prune_matrix(w, h, **case)
        err = np.linalg.norm(x @ w - x @ np.asarray(w_hat))
        if "sparsity" in case:
            mag = np.asarray(topk_mask(np.abs(w), sparsity=case["sparsity"]))
        else:
            mag = np.asarray(case["structure"].mask(np.abs(w)))
        assert err <= np.linalg.norm(x @ w - x @ (w * mag))


def test_joint_quantization():
    x, w = _problem(1)
    h = x.T.astype(np.float64) @ x
    spec = QuantSpec(bits=4, axes=(-1,))
    ref_w, ref_mask = reference_sparsegpt(w, h, 0.5, None, 8, spec=spec)
    w_hat, mask, q = sparsegpt_prune_matrix(
        w, h.astype(np.float32), sparsity=0.5, block_size=8, quant_spec=spec
    )
    np.testing.assert_array_equal(np.asarray(mask), ref_mask)
    np.testing.assert_allclose(np.asarray(w_hat), ref_w, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(dequantize(q)), np.asarray(w_hat))
    assert (np.asarray(q.values)[~np.asarray(mask)] == 0).all()
    # per-channel scales are RTN's, from W before any update
    np.testing.assert_allclose(np.asarray(q.scale), np.asarray(quantize(w, spec).scale))


def test_jit_and_eager_agree():
    x, w = _problem(2)
    h = x.T @ x
    eager = sparsegpt_prune_matrix(w, h, **CASES[0])
    jitted = jax.jit(lambda w, h, s: sparsegpt_prune_matrix(w, h, sparsity=s, block_size=8))(
        w, h, 0.5
    )
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_inputs():
    x, w = _problem(3)
    h = x.T @ x
    with pytest.raises(ValueError, match=r"expected a value in \[0, 1\)"):
        sparsegpt_prune_matrix(w, h, sparsity=1.0)
    with pytest.raises(ValueError, match="m=5 must divide the input size 24"):
        sparsegpt_prune_matrix(w, h, structure=NByM(2, 5))
    with pytest.raises(ValueError, match="input axis"):
        sparsegpt_prune_matrix(w, h, structure=NByM(2, 4, axis=-1))
    with pytest.raises(ValueError, match="pass sparsity"):
        sparsegpt_prune_matrix(w, h)
    with pytest.raises(ValueError, match="not positive definite"):
        sparsegpt_prune_matrix(w, -np.eye(24, dtype=np.float32), sparsity=0.5, block_size=8)
    with pytest.raises(ValueError, match=r"2\.\.8 bits"):
        sparsegpt_prune_matrix(w, h, sparsity=0.5, quant_spec=QuantSpec(bits=1, symmetric=False))


# --- the pytree driver ---------------------------------------------------------------------


def _mlp():
    # every kernel (8, 8): one compilation per configuration serves all three
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(8), nn.relu, nn.Dense(8)])
    params = model.init(jax.random.key(0), jnp.ones((1, 8)))
    mix = jax.random.normal(jax.random.key(9), (8, 8)) * 0.5 + jnp.eye(8)
    batches = [jax.random.normal(jax.random.key(i), (32, 8)) @ mix for i in range(2)]
    return model, params, batches


def test_driver_nbym_mask_keep_masked_and_joint():
    model, params, batches = _mlp()
    new, mask = sparsegpt(model.apply, params, batches, structure=NByM(2, 4))
    kernels = [k for k in mask["params"] if "kernel" in mask["params"][k]]
    assert len(kernels) == 3
    for k in kernels:
        m = np.asarray(mask["params"][k]["kernel"])
        assert (m.reshape(-1, 4, m.shape[1]).sum(1) == 2).all()  # 2:4 on the input axis
        assert not np.asarray(new["params"][k]["kernel"])[~m].any()
        assert np.asarray(mask["params"][k]["bias"]).all()
    # the mask is a keep_masked / apply_mask mask for the params
    tx = optax.chain(optax.sgd(0.1), keep_masked(mask))
    upd, _ = tx.update(jax.tree.map(jnp.ones_like, new), tx.init(new), new)
    stepped = optax.apply_updates(new, upd)
    np.testing.assert_array_equal(
        np.asarray(apply_mask(stepped, mask)["params"]["layers_0"]["kernel"]),
        np.asarray(stepped["params"]["layers_0"]["kernel"]),
    )
    # reconstruction of the first layer beats magnitude 2:4 on the calibration inputs
    x = jnp.concatenate(batches)
    w0 = params["params"]["layers_0"]["kernel"]
    mag = NByM(2, 4).mask(jnp.abs(w0))
    err = np.linalg.norm(x @ w0 - x @ new["params"]["layers_0"]["kernel"])
    assert err <= np.linalg.norm(x @ w0 - x @ (w0 * mag))
    # joint quantization: QArray leaves that dequantize to zero where pruned
    q, mask2 = sparsegpt(
        model.apply, params, batches, sparsity=0.5, quant_spec=QuantSpec(bits=4, axes=(-1,))
    )
    k0 = q["params"]["layers_0"]["kernel"]
    assert type(k0).__name__ == "QArray" and k0.axes == (1,)
    assert not np.asarray(dequantize(k0))[~np.asarray(mask2["params"]["layers_0"]["kernel"])].any()


def test_driver_bad_inputs():
    model, params, batches = _mlp()
    with pytest.raises(ValueError, match=r"layers_0/kernel: sparsegpt needs at least n_in=8"):
        sparsegpt(model.apply, params, [batches[0][:5]], sparsity=0.5)
    with pytest.raises(ValueError, match=r"layers_2/kernel: NByM m=3 must divide the size 8"):
        sparsegpt(model.apply, params, batches, structure=NByM(1, 3), where=r".*layers_[24]/kernel")
    with pytest.raises(ValueError, match=r"expected a value in \[0, 1\)"):
        sparsegpt(model.apply, params, batches, sparsity=-0.1)
    # options are refused before any tracing or calibration (batches is never read)
    with pytest.raises(ValueError, match=r"^sparsegpt: damp must be a positive finite number"):
        sparsegpt(model.apply, params, iter(()), sparsity=0.5, damp=-1.0)
