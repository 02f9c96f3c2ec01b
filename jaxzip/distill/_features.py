"""Feature distillation: FitNets hints (with a linear regressor) and attention transfer.

Feature losses read intermediate features from the model outputs: the apply
functions return a mapping such as ``{"logits": ..., "hint": ...}`` and the loss
names the key it compares. Combine them with a logit loss by
:func:`jaxzip.distill.combine_losses`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip._types import Params
from jaxzip.distill._common import Loss, check_hparam, check_mask, feature_of, zero_masked


def init_regressor(key: jax.Array, in_features: int, out_features: int) -> Params:
    """A FitNets regressor ``{"kernel": (in, out), "bias": (out,)}`` from student to teacher width.

    The regressor is trained with the student: keep its params in the student's
    params tree (e.g. ``{"model": model_params, "regressor": init_regressor(...)}``)
    and call :func:`apply_regressor` inside the student's apply function on the
    feature you return as the hint. It is then updated by the same optimizer.

    Args:
      key: PRNG key for the kernel (LeCun-normal); the bias starts at zero.
      in_features: the student feature width (last axis), ``>= 1``.
      out_features: the teacher feature width, ``>= 1``.

    Returns:
      The regressor's params (float32).

    Raises:
      ValueError: a width is not a positive int.

    Example:
      >>> import jax
      >>> jax.tree.map(lambda a: a.shape, init_regressor(jax.random.key(0), 3, 5))
      {'bias': (5,), 'kernel': (3, 5)}
    """
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"init_regressor: {name} must be a positive int, got {value!r}")
    kernel = jax.nn.initializers.lecun_normal()(key, (int(in_features), int(out_features)))
    return {"bias": jnp.zeros((int(out_features),), jnp.float32), "kernel": kernel}


def apply_regressor(regressor: Params, features: ArrayLike) -> jax.Array:
    """``features @ kernel + bias`` on the last axis (a 1x1 convolution for ``(N, H, W, C)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> r = init_regressor(jax.random.key(0), 3, 5)
      >>> apply_regressor(r, jnp.ones((2, 4, 4, 3))).shape
      (2, 4, 4, 5)
    """
    features = jnp.asarray(features)
    if features.shape[-1:] != regressor["kernel"].shape[:1]:
        raise ValueError(
            f"apply_regressor: features' last axis must be {regressor['kernel'].shape[0]} "
            f"(the regressor's in_features), got features of shape {features.shape}"
        )
    return features @ regressor["kernel"] + regressor["bias"]


def _per_example_mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x.reshape(x.shape[0], -1), axis=-1)


def hint_loss(*, student_key: str = "hint", teacher_key: str = "hint") -> Loss:
    """FitNets' hint loss: the per-example mean squared error between two features.

    The student's feature must already have the teacher's shape; when widths
    differ, map it with a regressor (:func:`init_regressor`,
    :func:`apply_regressor`) inside the student's apply function.

    Args:
      student_key: the key of the student output mapping holding its feature.
      teacher_key: the key of the teacher output mapping holding its feature.

    Returns:
      ``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example,
      {"hint": per_example})`` (float32 ``(N,)``; ``labels`` unused).

    Raises:
      ValueError: the loss raises when an output lacks its key or the features'
        shapes differ.

    Example:
      >>> import jax.numpy as jnp
      >>> loss = hint_loss()
      >>> out_s, out_t = {"hint": jnp.zeros((2, 3))}, {"hint": jnp.ones((2, 3))}
      >>> loss(out_s, out_t, None)[0].tolist()
      [1.0, 1.0]
    """

    def loss(student_out, teacher_out, labels=None, *, mask=None):
        s = feature_of("hint_loss", student_out, student_key, "student")
        t = feature_of("hint_loss", teacher_out, teacher_key, "teacher")
        if np.shape(s) != np.shape(t):
            raise ValueError(
                f"hint_loss: student feature {student_key!r} has shape {np.shape(s)} but the "
                f"teacher's {teacher_key!r} has shape {np.shape(t)}; map the student's with "
                "apply_regressor (init_regressor) in its apply function"
            )
        mask = check_mask("hint_loss", mask, np.shape(s)[0])
        diff = jnp.asarray(s, jnp.float32) - jnp.asarray(t, jnp.float32)
        per_example = zero_masked(_per_example_mean(diff * diff), mask)
        return per_example, {"hint": per_example}

    return loss


def attention_map(features: ArrayLike, *, p: float = 2.0) -> jax.Array:
    """Zagoruyko & Komodakis' spatial attention: ``mean_c |f|**p``, flattened, L2-normalized.

    Args:
      features: conv features ``(N, H, W, C)`` (any dtype; computed in float32).
      p: the power, ``> 0`` (the paper uses 2).

    Returns:
      A float32 ``(N, H * W)`` array of unit L2 norm per row (a zero map stays zero).

    Raises:
      ValueError: ``features`` is not 4-D or ``p <= 0``.

    Example:
      >>> import jax.numpy as jnp
      >>> attention_map(jnp.ones((1, 2, 2, 3))).round(3).tolist()
      [[0.5, 0.5, 0.5, 0.5]]
    """
    check_hparam("attention_map", "p", p, 0.0, float("inf"), open_lo=True)
    if np.ndim(features) != 4:
        raise ValueError(
            f"attention_map: features must have shape (N, H, W, C), got {np.shape(features)}"
        )
    f = jnp.abs(jnp.asarray(features, jnp.float32))
    a = jnp.mean(f**p, axis=-1).reshape(f.shape[0], -1)
    norm_sq = jnp.sum(a * a, axis=-1, keepdims=True)
    return a * jax.lax.rsqrt(jnp.maximum(norm_sq, 1e-24))


def attention_loss(*, student_key: str, teacher_key: str, p: float = 2.0) -> Loss:
    """Attention transfer: squared L2 distance between normalized attention maps.

    Per example, ``sum_j (Q_s[j] - Q_t[j])**2`` with ``Q = attention_map(f, p=p)``
    (the squared form, as in the authors' code, keeps the gradient finite when
    the maps agree). Channels may differ; the spatial size must match.

    Args:
      student_key: the key of the student output mapping holding its conv feature.
      teacher_key: the key of the teacher output mapping holding its conv feature.
      p: the power of :func:`attention_map`, ``> 0``.

    Returns:
      ``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example,
      {"attention": per_example})`` (float32 ``(N,)``; ``labels`` unused).

    Raises:
      ValueError: ``p <= 0``; the loss raises for a missing key or features whose
        batch or spatial sizes differ.

    Example:
      >>> import jax.numpy as jnp
      >>> loss = attention_loss(student_key="f", teacher_key="f")
      >>> s = {"f": jnp.ones((1, 2, 2, 3))}
      >>> t = {"f": jnp.ones((1, 2, 2, 8)).at[0, 0, 0].set(0.0)}
      >>> round(float(loss(s, t, None)[0][0]), 4)  # 2 - 2 * cos(angle between maps)
      0.2679
    """
    check_hparam("attention_loss", "p", p, 0.0, float("inf"), open_lo=True)

    def loss(student_out, teacher_out, labels=None, *, mask=None):
        s = feature_of("attention_loss", student_out, student_key, "student")
        t = feature_of("attention_loss", teacher_out, teacher_key, "teacher")
        if np.ndim(s) != 4 or np.ndim(t) != 4 or np.shape(s)[:3] != np.shape(t)[:3]:
            raise ValueError(
                "attention_loss: student and teacher features must be (N, H, W, C) with the "
                f"same N, H, W; got {np.shape(s)} and {np.shape(t)}"
            )
        mask = check_mask("attention_loss", mask, np.shape(s)[0])
        d = attention_map(s, p=p) - attention_map(t, p=p)
        per_example = zero_masked(jnp.sum(d * d, axis=-1), mask)
        return per_example, {"attention": per_example}

    return loss
