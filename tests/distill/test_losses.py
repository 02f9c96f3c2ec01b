"""Tests for jaxzip/distill/_losses.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxzip.distill import (
    dkd_loss,
    kd_loss,
    kl_divergence,
    soft_cross_entropy,
    soft_cross_entropy_loss,
)


def _np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kd(s, t, y, temperature, alpha):
    ls, lt = _np_log_softmax(s / temperature), _np_log_softmax(t / temperature)
    kl = (np.exp(lt) * (lt - ls)).sum(-1)
    ce = -_np_log_softmax(s)[np.arange(len(y)), y]
    return alpha * temperature**2 * kl + (1 - alpha) * ce


def _np_dkd(s, t, y, temperature, alpha, beta, ce_weight):
    ps, pt = np.exp(_np_log_softmax(s / temperature)), np.exp(_np_log_softmax(t / temperature))
    n = np.arange(len(y))
    bs = np.stack([ps[n, y], 1 - ps[n, y]], -1)
    bt = np.stack([pt[n, y], 1 - pt[n, y]], -1)
    tckd = (bt * np.log(bt / bs)).sum(-1)
    on = np.eye(s.shape[1], dtype=bool)[y]
    qs = np.where(on, 0, ps) / np.where(on, 0, ps).sum(-1, keepdims=True)
    qt = np.where(on, 0, pt) / np.where(on, 0, pt).sum(-1, keepdims=True)
    nckd = np.where(on, 0, qt * np.log(np.where(on, 1, qt) / np.where(on, 1, qs))).sum(-1)
    ce = -_np_log_softmax(s)[n, y]
    return ce_weight * ce + temperature**2 * (alpha * tckd + beta * nckd)


def _random_logits(seed, n=5, c=4, scale=3.0):
    rng = np.random.default_rng(seed)
    return (
        (scale * rng.normal(size=(n, c))).astype(np.float32),
        (scale * rng.normal(size=(n, c))).astype(np.float32),
        rng.integers(0, c, size=n).astype(np.int32),
    )


def test_kd_hand_worked_three_classes():
    # teacher softmax (1/2, 1/4, 1/4), student uniform, label 0, T = 1:
    # KL = 1/2 log(3/2) + 1/2 log(3/4) = 1/2 log(9/8); CE = log 3
    teacher = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    per_example, terms = kd_loss(temperature=1.0, alpha=0.5)(
        jnp.zeros((1, 3)), teacher, jnp.array([0])
    )
    assert float(terms["kd"][0]) == pytest.approx(0.5 * np.log(9 / 8), rel=1e-6)
    assert float(terms["ce"][0]) == pytest.approx(np.log(3), rel=1e-6)
    assert float(per_example[0]) == pytest.approx(0.25 * np.log(9 / 8) + 0.5 * np.log(3), rel=1e-6)
    assert per_example.dtype == jnp.float32


@pytest.mark.parametrize(("temperature", "alpha"), [(0.5, 0.0), (4.0, 0.3), (20.0, 1.0)])
def test_kd_matches_float64_reference(temperature, alpha):
    s, t, y = _random_logits(0)
    got, _ = kd_loss(temperature=temperature, alpha=alpha)(s, t, y)
    np.testing.assert_allclose(got, _np_kd(s, t, y, temperature, alpha), rtol=2e-5, atol=1e-6)


def test_kl_and_soft_ce_relation_and_reference():
    s, t, _ = _random_logits(1)
    lt = _np_log_softmax(t / 2.0)
    entropy = -(np.exp(lt) * lt).sum(-1)
    kl = kl_divergence(s, t, temperature=2.0)
    np.testing.assert_allclose(soft_cross_entropy(s, t, temperature=2.0), kl + entropy, rtol=1e-5)
    per_example, _ = soft_cross_entropy_loss(temperature=2.0)(s, t, None)
    np.testing.assert_allclose(per_example, kl + entropy, rtol=1e-5)
    assert np.all(np.asarray(kl) >= 0)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_matches_float64_reference(temperature):
    s, t, y = _random_logits(2)
    got, terms = dkd_loss(temperature=temperature, alpha=1.0, beta=8.0, ce_weight=0.5)(s, t, y)
    want = _np_dkd(s, t, y, temperature, 1.0, 8.0, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert set(terms) == {"tckd", "nckd", "ce"}


def test_dkd_hand_worked_target_term_only():
    # two classes: NCKD is 0 (one non-target class); TCKD = KL of the full softmax
    s = jnp.array([[0.0, 0.0]])
    t = jnp.log(jnp.array([[0.8, 0.2]]))
    per_example, terms = dkd_loss(temperature=1.0, alpha=1.0, beta=1.0, ce_weight=0.0)(
        s, t, jnp.array([0])
    )
    want = 0.8 * np.log(0.8 / 0.5) + 0.2 * np.log(0.2 / 0.5)
    assert float(terms["nckd"][0]) == pytest.approx(0.0, abs=1e-7)
    assert float(per_example[0]) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(
    "make", [lambda: kd_loss(temperature=100.0, alpha=0.9), lambda: dkd_loss(temperature=100.0)]
)
def test_stable_at_temperature_100_with_extreme_logits(make):
    s = jnp.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    t = jnp.array([[-1e4, 1e4, 5.0], [300.0, -300.0, 0.0]])
    y = jnp.array([1, 0])
    loss = make()
    per_example, terms = loss(s, t, y)
    assert np.all(np.isfinite(per_example)) and all(np.all(np.isfinite(v)) for v in terms.values())
    grads = jax.grad(lambda s_: loss(s_, t, y)[0].sum())(s)
    assert np.all(np.isfinite(grads))


def test_kd_at_temperature_100_matches_float64():
    s, t, y = _random_logits(3, scale=10.0)
    got, _ = kd_loss(temperature=100.0, alpha=1.0)(s, t, y)
    np.testing.assert_allclose(got, _np_kd(s, t, y, 100.0, 1.0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "make", [lambda: kd_loss(temperature=4.0, alpha=0.7), lambda: dkd_loss(temperature=4.0)]
)
def test_bfloat16_inputs_are_finite_and_close_to_float32(make):
    s, t, y = _random_logits(4)
    s16, t16 = jnp.asarray(s, jnp.bfloat16), jnp.asarray(t, jnp.bfloat16)
    got, _ = make()(s16, t16, y)
    ref, _ = make()(jnp.asarray(s16, jnp.float32), jnp.asarray(t16, jnp.float32), y)
    assert got.dtype == jnp.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    full, _ = make()(s, t, y)
    np.testing.assert_allclose(got, full, rtol=0.1, atol=0.05)  # bf16 rounding of the inputs


@pytest.mark.parametrize(
    "make", [lambda: kd_loss(temperature=3.0, alpha=0.6), lambda: dkd_loss(temperature=2.0)]
)
def test_gradients_match_finite_differences(make):
    s, t, y = _random_logits(5, n=3, c=4, scale=1.0)
    loss = make()
    f = lambda s_, t_: loss(s_, t_, y)[0].sum()  # noqa: E731
    check_grads(
        f,
        (jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)),
        order=1,
        modes=["rev"],
        eps=1e-2,
        atol=2e-2,
        rtol=2e-2,
    )


def test_mask_zeroes_padding_even_if_it_is_nan():
    s, t, y = _random_logits(6, n=3)
    s = s.copy()
    s[2] = np.nan
    mask = jnp.array([True, True, False])
    per_example, terms = kd_loss(temperature=2.0, alpha=0.5)(s, t, y, mask=mask)
    assert float(per_example[2]) == 0.0 and float(terms["ce"][2]) == 0.0
    full, _ = kd_loss(temperature=2.0, alpha=0.5)(s[:2], t[:2], y[:2])
    np.testing.assert_allclose(per_example[:2], full, rtol=1e-6)


def test_jit_and_eager_agree():
    s, t, y = _random_logits(7)
    loss = dkd_loss(temperature=3.0)
    np.testing.assert_allclose(
        jax.jit(lambda *a: loss(*a)[0])(s, t, y), loss(s, t, y)[0], rtol=1e-6
    )


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(temperature=temperature, alpha=0.5)
    with pytest.raises(ValueError, match="temperature"):
        dkd_loss(temperature=temperature)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must be in \[0.0, 1.0\]"):
        kd_loss(temperature=1.0, alpha=alpha)


def test_bad_dkd_weights():
    with pytest.raises(ValueError, match="beta"):
        dkd_loss(temperature=1.0, beta=-1.0)


def test_mismatched_logits_and_bad_labels():
    loss = kd_loss(temperature=1.0, alpha=0.5)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(2, 4\)"):
        loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="labels must hold integer labels, got dtype float32"):
        loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="mask"):
        loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.array([0, 1]), mask=jnp.array([1, 0]))


# Sequence outputs: logits (N, T, C), labels (N, T); per-token values averaged over tokens.

SEQUENCE_LOSSES = [
    lambda: kd_loss(temperature=2.0, alpha=0.7),
    lambda: dkd_loss(temperature=3.0, alpha=1.0, beta=2.0, ce_weight=0.5),
    lambda: soft_cross_entropy_loss(temperature=1.5),
]


@pytest.mark.parametrize("make", SEQUENCE_LOSSES)
def test_sequence_loss_is_the_token_mean_of_the_classifier_loss(make):
    s, t, y = _random_logits(7, n=12, c=5)
    loss = make()
    flat, flat_terms = loss(s, t, y)
    seq, seq_terms = loss(s.reshape(3, 4, 5), t.reshape(3, 4, 5), y.reshape(3, 4))
    assert seq.shape == (3,)
    np.testing.assert_allclose(seq, np.asarray(flat).reshape(3, 4).mean(1), rtol=1e-5, atol=1e-7)
    for name in flat_terms:
        np.testing.assert_allclose(
            seq_terms[name],
            np.asarray(flat_terms[name]).reshape(3, 4).mean(1),
            rtol=1e-5,
            atol=1e-7,
        )


def test_kd_on_sequences_hand_worked_and_jit_agrees():
    s, t, y = _random_logits(8, n=6, c=4)
    ref = _np_kd(s, t, y, 2.0, 0.5).reshape(2, 3).mean(1)
    loss = kd_loss(temperature=2.0, alpha=0.5)
    args = (s.reshape(2, 3, 4), t.reshape(2, 3, 4), y.reshape(2, 3))
    np.testing.assert_allclose(loss(*args)[0], ref, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda *a: loss(*a)[0])(*args), ref, rtol=1e-5)


def test_kl_and_soft_ce_keep_the_token_axis():
    s, t, _ = _random_logits(9, n=6, c=4)
    kl = kl_divergence(s.reshape(2, 3, 4), t.reshape(2, 3, 4), temperature=2.0)
    assert kl.shape == (2, 3)
    np.testing.assert_allclose(kl.ravel(), kl_divergence(s, t, temperature=2.0), rtol=1e-6)
    ce = soft_cross_entropy(s.reshape(2, 3, 4), t.reshape(2, 3, 4))
    np.testing.assert_allclose(ce.ravel(), soft_cross_entropy(s, t), rtol=1e-6)


def test_sequence_mask_drops_whole_examples():
    s, t, y = _random_logits(10, n=6, c=4)
    s, t, y = s.reshape(2, 3, 4), t.reshape(2, 3, 4), y.reshape(2, 3)
    s[1] = np.nan  # padding: must not leak
    per_example, terms = kd_loss(temperature=1.0, alpha=0.5)(s, t, y, mask=jnp.array([True, False]))
    assert np.isfinite(per_example).all() and float(per_example[1]) == 0.0
    assert float(terms["ce"][1]) == 0.0


def test_sequence_shapes_that_do_not_fit():
    loss = kd_loss(temperature=1.0, alpha=0.5)
    z = jnp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\) .* got \(2,\)"):
        loss(z, z, jnp.zeros((2,), jnp.int32))
    with pytest.raises(ValueError, match=r"\(N, C\) .* or \(N, T, C\) .*, got \(2, 3, 4, 1\)"):
        loss(z[..., None], z[..., None], jnp.zeros((2, 3, 4), jnp.int32))
    with pytest.raises(ValueError, match=r"same shape"):
        loss(z, z[:, :2], jnp.zeros((2, 3), jnp.int32))
