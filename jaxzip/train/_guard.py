"""The guards of training: NaN/Inf counts in the step, clear errors on the host, loss growth."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip._errors import DivergedError, NonFiniteError
from jaxzip._finite import describe_counts, nonfinite_counts
from jaxzip.train._state import TrainState

_SHOWN = 6
"""How many offending leaves the error message names (``NonFiniteError.paths`` has all)."""
_LOSS_FLOOR = 0.1
"""``max_loss_growth`` compares with ``max(first step's loss, _LOSS_FLOOR)``: a run that
starts near zero loss (fine-tuning a converged model) may rise a little without diverging."""


def guard_update(
    old: TrainState, new: TrainState, loss: jax.Array, grad_counts: jax.Array | None
) -> tuple[TrainState, dict[str, Any]]:
    """Keeps ``old`` unless the loss, the gradients and ``new.params`` are all finite (traced).

    ``grad_counts`` is ``nonfinite_counts(grads)`` (or None when the gradients are
    not at hand). Returns the state to return from the step and the metrics it
    adds: ``"finite"`` (bool scalar) and ``"nonfinite"``: ``{"loss": (1, 2),
    "grads": (leaves, 2), "params": (leaves, 2)}`` int32 NaN/Inf counts (see
    :func:`jaxzip._finite.nonfinite_counts`; ``"grads"`` absent without ``grad_counts``).
    """
    counts = {"loss": nonfinite_counts(loss)}
    if grad_counts is not None:
        counts["grads"] = grad_counts
    counts["params"] = nonfinite_counts(new.params)
    finite = jnp.all(jnp.stack([jnp.all(c == 0) for c in counts.values()]))
    state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    return state, {"finite": finite, "nonfinite": counts}


def recording_tx(tx: optax.GradientTransformation, sink: list) -> optax.GradientTransformation:
    """``tx`` that also appends the NaN/Inf counts of the gradients it receives to ``sink``.

    For a step body that calls ``tx.update`` inside code it does not own (the
    distillation steps): make one per trace, inside the traced function, and read
    ``sink`` in that same function after the update (the counts are values of that trace).
    """

    def update(updates, state, params=None, **extra):
        sink.append(nonfinite_counts(updates))
        return tx.update(updates, state, params, **extra)

    return optax.GradientTransformation(tx.init, update)


def run_guarded(
    update: Callable[[optax.GradientTransformation], tuple[TrainState, dict[str, Any]]],
    tx: optax.GradientTransformation,
    state: TrainState,
) -> tuple[TrainState, dict[str, Any]]:
    """``update(tx)`` (a step body returning ``(new_state, metrics with "loss")``), guarded.

    Traced code: runs ``update`` with :func:`recording_tx` of ``tx`` to see the
    gradients, then :func:`guard_update` against the input ``state``.
    """
    sink: list = []
    new_state, metrics = update(recording_tx(tx, sink))
    grad_counts = sink[0] if len(sink) == 1 else None
    new_state, guard = guard_update(state, new_state, metrics["loss"], grad_counts)
    return new_state, {**metrics, **guard}


def raise_if_nonfinite(metrics: Mapping[str, Any], state: TrainState, *, where: str) -> None:
    """Raises :class:`~jaxzip._errors.NonFiniteError` if a checked step met NaN or Inf.

    For a loop around a step built with ``check_finite=True``
    (:func:`make_train_step`, :func:`jaxzip.distill.make_train_step`,
    :func:`jaxzip.distill.make_vmapped_train_step`): call it after every step with
    that step's metrics and returned state. It fetches one bool from the device;
    only for a bad step does it fetch the counts. Such a step did not advance:
    ``state`` is the last finite one, and the error carries it as ``.state``.

    Args:
      metrics: the metrics of the step (with ``"finite"`` and ``"nonfinite"``).
      state: the state the step returned (for the params' paths).
      where: how to name the step in the message, e.g. ``"step 37"``.

    Raises:
      NonFiniteError: naming ``where``, the loss and the gradient and param
        leaves that were NaN/Inf, with their counts.
      ValueError: ``metrics`` does not come from a step with ``check_finite=True``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxzip.train import init_state, make_train_step
      >>> apply_fn = lambda params, x, *, train, key: x @ params["w"]
      >>> step = make_train_step(apply_fn, optax.sgd(0.1), check_finite=True)
      >>> state = init_state({"w": jnp.zeros((2, 2))}, optax.sgd(0.1))
      >>> bad = {"x": jnp.array([[jnp.nan, 1.0]]), "y": jnp.array([0])}
      >>> state, metrics = step(state, bad, jax.random.key(0))
      >>> try:
      ...     raise_if_nonfinite(metrics, state, where="step 1")
      ... except ValueError as err:
      ...     print(str(err).split("; the")[0], "|", err.paths, int(err.state.step))
      step 1: loss is NaN; gradient 'w' has 4 NaN; new param 'w' has 4 NaN | ('w',) 0
    """
    if not isinstance(metrics, Mapping) or "finite" not in metrics or "nonfinite" not in metrics:
        raise ValueError(
            f"{where}: metrics lack 'finite'/'nonfinite'; build the step with check_finite=True "
            f"(got keys {sorted(metrics) if isinstance(metrics, Mapping) else type(metrics)})"
        )
    finite = np.asarray(metrics["finite"])
    if finite.all():
        return
    counts = jax.device_get(metrics["nonfinite"])
    phrases, paths = [], []
    loss = np.asarray(counts["loss"]).reshape(-1, 2).sum(axis=0)
    if loss.any():
        phrases.append("loss is " + ("NaN" if loss[0] else "Inf"))
    for key, label in (("grads", "gradient"), ("params", "new param")):
        if key in counts:
            more, bad = describe_counts(state.params, counts[key], label=label)
            phrases += more
            paths += bad
    if len(phrases) > _SHOWN:
        phrases = [*phrases[:_SHOWN], f"and {len(phrases) - _SHOWN} more"]
    who = "" if finite.ndim == 0 else f" (students {np.flatnonzero(~finite).tolist()})"
    raise NonFiniteError(
        f"{where}{who}: {'; '.join(phrases)}; the step was not applied: the state holds "
        "the last finite params",
        paths=tuple(dict.fromkeys(paths)),
        state=state,
    )


def first_loss(where: str, metrics: Mapping[str, Any]) -> float:
    """The first step's ``"loss"`` (scored before its update: the initial state's loss)."""
    if "loss" not in metrics or jnp.ndim(metrics["loss"]) != 0:
        raise ValueError(
            f"{where}: max_loss_growth needs a scalar 'loss' in the step's metrics, "
            f"got keys {sorted(metrics)}"
        )
    return float(metrics["loss"])


def raise_if_diverged(
    where: str, record: Mapping[str, Any], start: float, growth: float, state: Any
) -> None:
    """Raises :class:`DivergedError` when the epoch's mean ``train_loss`` in ``record`` is over
    ``growth`` times ``max(start, _LOSS_FLOOR)`` (or NaN)."""
    loss = record.get("train_loss")
    limit = growth * max(start, _LOSS_FLOOR)
    if loss is not None and not loss <= limit:  # NaN fails too
        raise DivergedError(
            f"{where}: training diverged: epoch {record['epoch']}'s mean loss {loss:.4g} is over "
            f"{growth:g}x the first step's loss {start:.4g}",
            state=state,
        )
