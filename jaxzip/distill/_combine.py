"""``combine_losses``: a weighted sum of distillation losses, e.g. KD plus a hint."""

from __future__ import annotations

from collections.abc import Mapping

from jaxzip.distill._common import Loss, check_hparam


def combine_losses(
    losses: Mapping[str, Loss], *, weights: Mapping[str, float] | None = None
) -> Loss:
    """Sums named losses, each times its weight (1 unless given).

    Args:
      losses: a non-empty mapping from a name to a loss (e.g. ``{"kd": kd_loss(...),
        "hint": hint_loss()}``); names must not contain ``"/"``.
      weights: optional ``{name: weight >= 0}`` for some of the names.

    Returns:
      ``loss(student_out, teacher_out, labels, *, mask=None) -> (per_example,
      terms)`` where ``terms`` has, per name, the unweighted ``name`` loss and each of
      its terms as ``"name/term"``.

    Raises:
      TypeError: a loss is not callable.
      ValueError: ``losses`` is empty, a name is bad, or ``weights`` names a loss
        that is not there or holds a negative weight.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.distill import kd_loss, soft_cross_entropy_loss
      >>> loss = combine_losses({"kd": kd_loss(temperature=2.0, alpha=1.0),
      ...                        "soft": soft_cross_entropy_loss()}, weights={"soft": 0.5})
      >>> per_example, terms = loss(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.array([0]))
      >>> sorted(terms), round(float(per_example[0]), 4)  # 0 + 0.5 * log 2
      (['kd', 'kd/ce', 'kd/kd', 'soft', 'soft/soft_ce'], 0.3466)
    """
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError(f"combine_losses: losses must be a non-empty mapping, got {losses!r}")
    for name, fn in losses.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(
                f"combine_losses: names must be non-empty strings without '/', got {name!r}"
            )
        if not callable(fn):
            raise TypeError(f"combine_losses: losses[{name!r}] must be a loss function, got {fn!r}")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(losses))
    if unknown:
        raise ValueError(
            f"combine_losses: weights name losses {unknown} that are not in losses {sorted(losses)}"
        )
    for name, w in weights.items():
        check_hparam("combine_losses", f"weights[{name!r}]", w, 0.0, float("inf"), open_lo=False)
    items = [(name, fn, weights.get(name, 1.0)) for name, fn in losses.items()]

    def loss(student_out, teacher_out, labels, *, mask=None):
        total = None
        terms = {}
        for name, fn, w in items:
            per_example, sub = fn(student_out, teacher_out, labels, mask=mask)
            total = w * per_example if total is None else total + w * per_example
            terms[name] = per_example
            terms.update({f"{name}/{k}": v for k, v in sub.items()})
        return total, terms

    return loss
