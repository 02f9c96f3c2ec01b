"""Logit distillation losses: Hinton's KD, soft cross-entropy and decoupled KD (DKD).

Every loss works in float32 internally (``log_softmax`` of ``logits / T``), so it
is finite and accurate for temperatures from 0.05 to 1000, logits up to 1e4 and
bfloat16 logits (tests/distill/test_stability.py), and returns float32
per-example arrays. Classifier logits are ``(N, C)`` with labels ``(N,)``;
sequence logits are ``(N, T, C)`` with labels ``(N, T)``, and the losses then
average their per-token values over the tokens of each example.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxzip.distill._common import (
    Loss,
    check_hparam,
    check_logits,
    check_mask,
    logits_of,
    per_example,
    zero_masked,
)


def _log_probs(logits: ArrayLike, temperature: Any) -> jax.Array:
    return jax.nn.log_softmax(jnp.asarray(logits, jnp.float32) / temperature, axis=-1)


def _kl(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """``sum p (log p - log q)`` over the last axis; a zero ``p`` contributes exactly 0."""
    p = jnp.exp(log_p)
    diff = jnp.where(p > 0, log_p - log_q, 0.0)  # before the product: no 0 * NaN in the gradient
    return jnp.sum(p * diff, axis=-1)


def _exp_remainder(e: jax.Array) -> jax.Array:
    """``exp(-e) - 1 + e`` without cancellation (a Taylor series for small ``|e|``)."""
    series = e * e * (1 / 2 - e * (1 / 6 - e * (1 / 24 - e * (1 / 120 - e / 720))))
    small = jnp.abs(e) < 0.1
    return jnp.where(small, series, jnp.expm1(-jnp.where(small, 1.0, e)) + e)


def _kl_logits(z_t: jax.Array, z_s: jax.Array) -> jax.Array:
    """``KL(softmax(z_t) || softmax(z_s))`` over the last axis, accurate when it is small.

    At high temperature the two distributions are close and ``sum p (log p - log
    q)`` loses most digits to cancellation. With ``d = z_t - z_s``, ``m = E_p[d]``
    and ``e = d - m`` (so ``E_p[e] = 0``), the divergence is exactly
    ``log1p(E_p[exp(-e) - 1 + e])``, a sum of non-negative terms computed without
    cancellation; rows where ``-e`` is too large for ``exp`` use the direct form
    (the divergence is then large and the direct form accurate). So do rows where
    a class whose teacher probability underflows to 0 still adds a non-negligible
    ``p * exp(-e) = exp(log p - e)`` (the student puts mass where the teacher has
    next to none: at low temperature or with logits of 1e4, an exactly-zero ``p``
    must not hide a large divergence).
    """
    log_p = jax.nn.log_softmax(z_t, axis=-1)
    p = jnp.exp(log_p)
    live = p > 0
    d = jnp.where(live, z_t - z_s, 0.0)
    m = jnp.sum(jnp.where(live, p * d, 0.0), axis=-1, keepdims=True)
    e = jnp.where(live, d - m, 0.0)
    dead = jnp.where(live | (log_p == -jnp.inf), -jnp.inf, log_p - (z_t - z_s - m))
    fits = (jnp.max(-e, axis=-1) <= 30.0) & (jnp.max(dead, axis=-1) <= -80.0)
    remainder = _exp_remainder(jnp.maximum(e, -30.0))
    precise = jnp.log1p(jnp.sum(jnp.where(live, p * remainder, 0.0), axis=-1))
    direct = _kl(log_p, jax.nn.log_softmax(z_s, axis=-1))
    return jnp.where(fits, precise, direct)


def _scaled(logits: ArrayLike, temperature: Any) -> jax.Array:
    return jnp.asarray(logits, jnp.float32) / temperature


def _check_pair(where: str, student_logits: Any, teacher_logits: Any, temperature: Any) -> None:
    check_hparam(where, "temperature", temperature, 0.0, float("inf"), open_lo=True)
    check_logits(where, student_logits, teacher_logits, None)


def kl_divergence(
    student_logits: ArrayLike, teacher_logits: ArrayLike, *, temperature: float = 1.0
) -> jax.Array:
    """Per-example (or per-token) ``KL(softmax(teacher / T) || softmax(student / T))``.

    Args:
      student_logits: ``(N, C)`` or ``(N, T, C)`` logits of the student.
      teacher_logits: the teacher's logits, of the same shape.
      temperature: the softmax temperature ``T > 0``.

    Returns:
      A float32 array of the logits' shape without the class axis, ``(N,)`` or
      ``(N, T)`` (not scaled by ``T**2``).

    Raises:
      ValueError: the logits differ in shape or ``temperature <= 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(kl_divergence(jnp.zeros((1, 2)), jnp.zeros((1, 2)))[0])
      0.0
    """
    _check_pair("kl_divergence", student_logits, teacher_logits, temperature)
    return _kl_logits(_scaled(teacher_logits, temperature), _scaled(student_logits, temperature))


def soft_cross_entropy(
    student_logits: ArrayLike, teacher_logits: ArrayLike, *, temperature: float = 1.0
) -> jax.Array:
    """Per-example (or per-token) cross-entropy ``-sum softmax(teacher/T) * log_softmax(student/T)``.

    Takes the arguments of :func:`kl_divergence` and raises as it does.

    Returns:
      A float32 array of shape ``(N,)`` or ``(N, T)``: ``KL`` plus the teacher's entropy.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(soft_cross_entropy(jnp.zeros((1, 4)), jnp.ones((1, 4)))[0]), 4)  # log 4
      1.3863
    """
    _check_pair("soft_cross_entropy", student_logits, teacher_logits, temperature)
    log_t = _log_probs(teacher_logits, temperature)
    return -jnp.sum(jnp.exp(log_t) * _log_probs(student_logits, temperature), axis=-1)


def _hard_ce(student_logits: Any, labels: Any) -> jax.Array:
    logits = jnp.asarray(student_logits, jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(labels))


def kd_loss(*, temperature: float, alpha: float) -> Loss:
    """Hinton et al.'s distillation loss: ``alpha * T**2 * KL + (1 - alpha) * CE``.

    ``KL`` is ``KL(softmax(teacher/T) || softmax(student/T))`` and ``CE`` the
    cross-entropy of the student's logits (temperature 1) against the labels.
    The ``T**2`` keeps the soft term's gradients at the scale of the hard term's.

    At high ``T`` the ``T**2``-scaled term behaves like logit matching and its
    gradients grow with the logits: use a smaller learning rate (or gradient
    clipping) than for plain cross-entropy. ``experiments/hinton_distill.py``
    diverged at T = 20 with SGD at 0.1 and trained at 0.02.

    Args:
      temperature: ``T > 0``.
      alpha: the weight of the soft term, in ``[0, 1]``.

    Returns:
      ``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example,
      {"kd": alpha-free T**2 * KL, "ce": CE})``; outputs are ``(N, C)`` logits or
      mappings holding ``"logits"``; all arrays are float32 ``(N,)``, zero where
      ``mask`` is False.

    Raises:
      ValueError: ``temperature <= 0`` or ``alpha`` outside ``[0, 1]``; the loss
        raises ``ValueError`` for logits of different shapes or bad labels/mask.

    Example:
      >>> import jax.numpy as jnp
      >>> loss = kd_loss(temperature=1.0, alpha=0.5)
      >>> teacher = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
      >>> per_example, terms = loss(jnp.zeros((1, 3)), teacher, jnp.array([0]))
      >>> round(float(per_example[0]), 5)  # 0.5 * 0.5 * log(1.125) + 0.5 * log(3)
      0.57875
    """
    check_hparam("kd_loss", "temperature", temperature, 0.0, float("inf"), open_lo=True)
    check_hparam("kd_loss", "alpha", alpha, 0.0, 1.0, open_lo=False)

    def loss(student_out, teacher_out, labels, *, mask=None):
        s = logits_of("kd_loss", student_out)
        t = logits_of("kd_loss", teacher_out)
        check_logits("kd_loss", s, t, labels)
        mask = check_mask("kd_loss", mask, s.shape[0])
        kd = temperature**2 * _kl_logits(_scaled(t, temperature), _scaled(s, temperature))
        kd, ce = per_example(kd), per_example(_hard_ce(s, labels))
        total = alpha * kd + (1.0 - alpha) * ce
        terms = {"kd": zero_masked(kd, mask), "ce": zero_masked(ce, mask)}
        return zero_masked(total, mask), terms

    return loss


def soft_cross_entropy_loss(*, temperature: float = 1.0) -> Loss:
    """The loss of matching the teacher's softened outputs alone (no labels, no ``T**2``).

    Args:
      temperature: ``T > 0``.

    Returns:
      ``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example,
      {"soft_ce": per_example})``; ``labels`` is accepted and unused (may be None).

    Raises:
      ValueError: ``temperature <= 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> per_example, _ = soft_cross_entropy_loss()(jnp.zeros((2, 2)), jnp.zeros((2, 2)), None)
      >>> [round(v, 4) for v in per_example.tolist()]  # log 2 each
      [0.6931, 0.6931]
    """
    check_hparam(
        "soft_cross_entropy_loss", "temperature", temperature, 0.0, float("inf"), open_lo=True
    )

    def loss(student_out, teacher_out, labels=None, *, mask=None):
        s = logits_of("soft_cross_entropy_loss", student_out)
        t = logits_of("soft_cross_entropy_loss", teacher_out)
        check_logits("soft_cross_entropy_loss", s, t, None)
        mask = check_mask("soft_cross_entropy_loss", mask, s.shape[0])
        values = per_example(soft_cross_entropy(s, t, temperature=temperature))
        values = zero_masked(values, mask)
        return values, {"soft_ce": values}

    return loss


def _split_target(z: jax.Array, onehot: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(log p_target, log (1 - p_target), log_softmax over the non-target classes)``.

    ``log(1 - p_target)`` is ``log1p(-p_target)`` while ``p_target < 1/2`` (the
    difference of two log-sum-exps would lose the digits of a tiny ``p_target``,
    which the ``T**2`` of DKD then magnifies) and ``lse_nt - lse_all`` above.
    """
    lse_all = jax.nn.logsumexp(z, axis=-1)
    z_nt = jnp.where(onehot, -jnp.inf, z)
    lse_nt = jax.nn.logsumexp(z_nt, axis=-1)
    log_target = jnp.sum(jnp.where(onehot, z, 0.0), axis=-1) - lse_all
    small = log_target < -jnp.log(2.0)
    safe = jnp.where(small, log_target, -1.0)  # keeps log1p(-1) out of the gradient
    log_rest = jnp.where(small, jnp.log1p(-jnp.exp(safe)), lse_nt - lse_all)
    return log_target, log_rest, z_nt - lse_nt[..., None]


def dkd_loss(
    *, temperature: float, alpha: float = 1.0, beta: float = 8.0, ce_weight: float = 1.0
) -> Loss:
    """Decoupled KD (Zhao et al., 2022): ``ce_weight * CE + T**2 (alpha TCKD + beta NCKD)``.

    TCKD is the KL divergence between the teacher's and student's binary
    (target class vs the rest) probabilities; NCKD is the KL divergence between
    their distributions over the non-target classes alone, both at temperature
    ``T``. Computed from log-sum-exps, so ``1 - p_target`` never underflows to
    ``log 0``.

    Args:
      temperature: ``T > 0``.
      alpha: the weight of TCKD, ``>= 0``.
      beta: the weight of NCKD, ``>= 0``.
      ce_weight: the weight of the hard-label cross-entropy, ``>= 0``.

    Returns:
      ``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example,
      {"tckd": T**2 TCKD, "nckd": T**2 NCKD, "ce": CE})`` (float32 ``(N,)``).

    Raises:
      ValueError: a hyperparameter out of range; the loss raises for logits of
        different shapes, fewer than 2 classes or bad labels/mask.

    Example:
      >>> import jax.numpy as jnp
      >>> loss = dkd_loss(temperature=1.0, alpha=1.0, beta=1.0, ce_weight=0.0)
      >>> per_example, terms = loss(jnp.zeros((1, 3)), jnp.zeros((1, 3)), jnp.array([2]))
      >>> float(per_example[0])  # identical logits: no divergence
      0.0
    """
    inf = float("inf")
    check_hparam("dkd_loss", "temperature", temperature, 0.0, inf, open_lo=True)
    check_hparam("dkd_loss", "alpha", alpha, 0.0, inf, open_lo=False)
    check_hparam("dkd_loss", "beta", beta, 0.0, inf, open_lo=False)
    check_hparam("dkd_loss", "ce_weight", ce_weight, 0.0, inf, open_lo=False)

    def loss(student_out, teacher_out, labels, *, mask=None):
        s = logits_of("dkd_loss", student_out)
        t = logits_of("dkd_loss", teacher_out)
        check_logits("dkd_loss", s, t, labels)
        if s.shape[-1] < 2:
            raise ValueError(f"dkd_loss: needs at least 2 classes, got logits of shape {s.shape}")
        mask = check_mask("dkd_loss", mask, s.shape[0])
        onehot = jax.nn.one_hot(labels, s.shape[-1], dtype=bool)
        s_tgt, s_rest, s_nt = _split_target(jnp.asarray(s, jnp.float32) / temperature, onehot)
        t_tgt, t_rest, t_nt = _split_target(jnp.asarray(t, jnp.float32) / temperature, onehot)
        scale = temperature**2
        tckd = scale * _kl_logits(jnp.stack([t_tgt, t_rest], -1), jnp.stack([s_tgt, s_rest], -1))
        nckd = scale * _kl_logits(t_nt, s_nt)  # -inf at the target class: p = 0 there
        tckd, nckd, ce = per_example(tckd), per_example(nckd), per_example(_hard_ce(s, labels))
        total = ce_weight * ce + alpha * tckd + beta * nckd
        terms = {
            "tckd": zero_masked(tckd, mask),
            "nckd": zero_masked(nckd, mask),
            "ce": zero_masked(ce, mask),
        }
        return zero_masked(total, mask), terms

    return loss
