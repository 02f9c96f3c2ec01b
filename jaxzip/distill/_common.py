"""Shared pieces of the distillation losses: the loss signature, masks, checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip.train._step import check_integer_labels

Loss = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
"""``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example, terms)``.

``per_example`` is a float32 ``(N,)`` array (zero where ``mask`` is False) and
``terms`` maps each named term to its own float32 ``(N,)`` array. For sequence
outputs (logits ``(N, T, C)``, labels ``(N, T)``) each example's value is the
mean of its per-token values, so the batch mean is the mean over all tokens.
"""


def masked_mean(values: ArrayLike, mask: ArrayLike | None = None) -> jax.Array:
    """The mean of ``values`` over the examples where ``mask`` is True.

    Masked-out entries never reach the sum (they may hold NaN from padding). An
    all-False mask gives 0, not NaN.

    Args:
      values: a per-example array ``(N,)``.
      mask: a boolean ``(N,)`` array, or None for all examples.

    Returns:
      A float32 scalar.

    Raises:
      ValueError: ``mask`` is not of shape ``values.shape``.

    Example:
      >>> import jax.numpy as jnp
      >>> float(masked_mean(jnp.array([1.0, 3.0, jnp.nan]), jnp.array([True, True, False])))
      2.0
    """
    values = jnp.asarray(values, jnp.float32)
    if mask is None:
        return jnp.mean(values)
    if np.shape(mask) != values.shape:
        raise ValueError(
            f"masked_mean: mask must have the shape of values {values.shape}, got {np.shape(mask)}"
        )
    mask = jnp.asarray(mask, bool)
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(mask, dtype=jnp.float32), 1.0)


def zero_masked(per_example: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Zeroes the masked-out examples (``where``, so NaN there does not leak)."""
    return per_example if mask is None else jnp.where(mask, per_example, 0.0)


def check_mask(where: str, mask: Any, n: int) -> jax.Array | None:
    """Checks a per-example boolean mask of length ``n`` (None passes through)."""
    if mask is None:
        return None
    if np.shape(mask) != (n,):
        raise ValueError(
            f"{where}: mask must have shape ({n},) (one per example), got {np.shape(mask)}"
        )
    if jnp.result_type(mask) != jnp.bool_:
        raise ValueError(f"{where}: mask must be boolean, got dtype {jnp.result_type(mask)}")
    return jnp.asarray(mask)


def logits_of(where: str, out: Any) -> Any:
    """The logits of a model output: the array itself, or ``out["logits"]`` of a mapping."""
    if isinstance(out, Mapping):
        if "logits" not in out:
            raise ValueError(
                f"{where}: a model output mapping must hold 'logits', got keys {sorted(out)}"
            )
        return out["logits"]
    return out


def feature_of(where: str, out: Any, name: str, whose: str) -> Any:
    """The feature ``out[name]`` of a model output mapping, with a clear error."""
    if not isinstance(out, Mapping) or name not in out:
        got = sorted(out) if isinstance(out, Mapping) else f"an array of shape {np.shape(out)}"
        raise ValueError(
            f"{where}: the {whose} apply function must return a mapping with key {name!r} "
            f"(e.g. {{'logits': ..., {name!r}: ...}}), got {got}"
        )
    return out[name]


def check_logits(where: str, student: Any, teacher: Any, labels: Any) -> None:
    """Checks student and teacher logits of one shape, ``(N, C)`` (classifier) or
    ``(N, T, C)`` (sequence), and integer labels of shape ``(N,)`` or ``(N, T)``."""
    s, t = np.shape(student), np.shape(teacher)
    if len(s) not in (2, 3):
        raise ValueError(
            f"{where}: student logits must have shape (N, C) (one prediction per example) or "
            f"(N, T, C) (one per token), got {s}"
        )
    if s != t:
        raise ValueError(
            f"{where}: student and teacher logits must have the same shape, got student {s} "
            f"and teacher {t}"
        )
    if labels is not None:
        if np.shape(labels) != s[:-1]:
            raise ValueError(
                f"{where}: labels must have shape {s[:-1]} (the logits' {s} without the "
                f"class axis), got {np.shape(labels)}"
            )
        check_integer_labels(where, "labels", labels)


def per_example(values: jax.Array) -> jax.Array:
    """Averages per-token values ``(N, T)`` over tokens to ``(N,)`` (``(N,)`` passes through)."""
    return values if values.ndim == 1 else jnp.mean(values, axis=tuple(range(1, values.ndim)))


def check_hparam(where: str, name: str, value: Any, lo: float, hi: float, *, open_lo: bool) -> None:
    """Checks ``lo < value <= hi`` (``open_lo``) or ``lo <= value <= hi`` for a concrete value.

    Traced values (inside ``jax.vmap`` over students) are not checked here; the
    vmapped step checks its per-student arrays before tracing.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, (bool, str, bytes)) or np.ndim(value) != 0:
        raise ValueError(f"{where}: {name} must be a real scalar, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be a real scalar, got {value!r}") from None
    ok = (lo < v if open_lo else lo <= v) and v <= hi
    if not ok:
        lo_s = f"({lo}" if open_lo else f"[{lo}"
        raise ValueError(f"{where}: {name} must be in {lo_s}, {hi}], got {value!r}")
