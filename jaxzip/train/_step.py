"""``make_train_step``: one jitted, state-donating step of softmax cross-entropy training."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip._finite import nonfinite_counts
from jaxzip.models._apply import ApplyFn
from jaxzip.train._augment import RandomShift
from jaxzip.train._guard import guard_update
from jaxzip.train._state import TrainState

Batch = Mapping[str, Any]
TrainStep = Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def check_batch(batch: Any, where: str) -> tuple[Any, Any]:
    """Returns ``(batch["x"], batch["y"])`` after checking them (outside any trace)."""
    if not isinstance(batch, Mapping):
        raise TypeError(
            f"{where}: batch must be a mapping with keys 'x' and 'y', got {type(batch).__name__}"
        )
    missing = [k for k in ("x", "y") if k not in batch]
    if missing:
        raise ValueError(
            f"{where}: batch is missing key(s) {missing}; expected keys 'x' (inputs) and "
            f"'y' (integer labels), got keys {sorted(map(str, batch))}"
        )
    x, y = batch["x"], batch["y"]
    x_shape, y_shape = np.shape(x), np.shape(y)
    if len(y_shape) not in (1, 2):
        raise ValueError(
            f"{where}: batch['y'] must have shape (N,) (one label per example) or (N, T) "
            f"(one label per token), got shape {y_shape}"
        )
    if not x_shape or x_shape[0] != y_shape[0]:
        raise ValueError(
            f"{where}: batch['x'] must have a leading axis of the batch size {y_shape[0]} "
            f"(that of batch['y']), got shape {x_shape}"
        )
    if len(y_shape) == 2 and x_shape[:2] != y_shape:
        raise ValueError(
            f"{where}: with per-token labels batch['y'] of shape {y_shape}, batch['x'] must "
            f"start with the same (N, T), got shape {x_shape}"
        )
    check_integer_labels(where, "batch['y']", y)
    return x, y


def check_integer_labels(where: str, name: str, y: Any) -> None:
    """Raises ``ValueError`` unless ``y`` (called ``name`` in the message) has an integer dtype."""
    dtype = jnp.result_type(y)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{where}: {name} must hold integer labels, got dtype {dtype}")


def check_step_factory(where: str, tx: Any, check_finite: Any, **apply_fns: Any) -> None:
    """Raises ``TypeError`` unless each of ``apply_fns`` is callable, ``tx`` an optax
    transformation and ``check_finite`` a bool: the arguments every step factory takes."""
    for name, fn in apply_fns.items():
        if not callable(fn):
            raise TypeError(f"{where}: {name} must be callable (an ApplyFn), got {fn!r}")
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(f"{where}: tx must be an optax GradientTransformation, got {tx!r}")
    if not isinstance(check_finite, bool):
        raise TypeError(f"{where}: check_finite must be a bool, got {check_finite!r}")


def check_logits_fit(where: str, logits: Any, y: Any) -> None:
    """Raises ``ValueError`` unless ``logits`` has shape ``(*y.shape, C)`` (static shapes)."""
    l_shape, y_shape = np.shape(logits), np.shape(y)
    if l_shape[:-1] != y_shape or len(l_shape) < 2:
        want = "(N, C)" if len(y_shape) == 1 else "(N, T, C)"
        raise ValueError(
            f"{where}: the model's logits must have shape {want} for labels of shape "
            f"{y_shape}, got logits of shape {l_shape}"
        )


def loss_and_accuracy(logits: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy with integer labels, and the fraction of correct argmaxes.

    Labels ``(N,)`` go with logits ``(N, C)``; per-token labels ``(N, T)`` with
    logits ``(N, T, C)``, and both means are then over all ``N * T`` tokens.
    """
    check_logits_fit("train step", logits, y)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    accuracy = (jnp.argmax(logits, axis=-1) == y).mean()
    return loss, accuracy


def make_train_step(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    augment: RandomShift | None = None,
    check_finite: bool = False,
) -> TrainStep:
    """Builds ``step(state, batch, key) -> (state, metrics)``: one jitted optimizer step.

    The loss is the mean softmax cross-entropy of ``apply_fn(params, batch["x"],
    train=True, key=k)`` against the integer labels ``batch["y"]``: classifier
    batches (labels ``(N,)``, logits ``(N, C)``) or sequence batches (labels
    ``(N, T)``, logits ``(N, T, C)``, the loss and accuracy averaged over tokens),
    where ``k`` is
    ``key`` folded with ``state.step`` (so one key serves the whole run and every
    step gets fresh dropout). The step is compiled once per batch shape and
    donates ``state``: do not use a state after passing it in (use the returned one).
    With ``augment``, the inputs are augmented inside the step from a key split off ``k``.
    Params and batches placed on a ``jax.sharding.Mesh`` (e.g. kernels split over
    a model axis, the batch over a data axis) train as placed: the jitted step
    follows their shardings and computes what one device would.
    The batch is checked before tracing; keys other than ``"x"`` and ``"y"`` are ignored.

    With ``check_finite=True`` the step also counts the NaN and Inf values of the
    loss, of every gradient leaf and of every new param leaf (one fused reduction
    per leaf), and applies the update only if all are finite: a bad step returns
    the state it was given (``step`` not advanced). The metrics gain
    ``"finite"`` (bool scalar) and ``"nonfinite"`` (``{"loss", "grads",
    "params"}`` int32 arrays of shape ``(leaves, 2)``: NaN and Inf counts per leaf,
    in flattening order); :func:`raise_if_nonfinite` turns them into an error
    naming the paths. Off (the default), the step is exactly the unchecked one.

    Args:
      apply_fn: the model, ``apply_fn(params, x, *, train, key) -> logits``.
      tx: the optax optimizer (schedules, weight decay, masks are part of it).
      augment: an optional augmentation applied to ``batch["x"]`` inside the step,
        e.g. :class:`RandomShift`.
      check_finite: guard the update against NaN/Inf and report per-leaf counts.

    Returns:
      ``step(state, batch, key)`` returning the new :class:`TrainState` and
      ``{"loss": scalar, "accuracy": scalar}`` (device arrays, for the batch),
      plus ``"finite"`` and ``"nonfinite"`` with ``check_finite``.

    Raises:
      TypeError: ``apply_fn`` is not callable, ``tx`` is not an optax
        ``GradientTransformation`` or ``check_finite`` is not a bool. The step
        raises ``TypeError``/``ValueError`` for a batch that is not a mapping with
        ``"x"`` and integer ``"y"`` (``(N,)`` or ``(N, T)``) of one batch size,
        logits whose shape does not fit the labels, or a ``key`` that is not a
        JAX array.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxzip.train import init_state
      >>> apply_fn = lambda params, x, *, train, key: x.reshape(len(x), -1) @ params["w"]
      >>> tx = optax.sgd(0.5)
      >>> step = make_train_step(apply_fn, tx)
      >>> state = init_state({"w": jnp.zeros((2, 2))}, tx)
      >>> batch = {"x": jnp.array([[1.0, 0.0], [0.0, 1.0]]), "y": jnp.array([0, 1])}
      >>> for _ in range(3):
      ...     state, metrics = step(state, batch, jax.random.key(0))
      >>> int(state.step), float(metrics["accuracy"])
      (3, 1.0)
    """
    check_step_factory("make_train_step", tx, check_finite, apply_fn=apply_fn)
    if augment is not None and not callable(augment):
        raise TypeError(
            f"make_train_step: augment must be callable (e.g. RandomShift), got {augment!r}"
        )

    def loss_fn(params, x, y, key):
        logits = apply_fn(params, x, train=True, key=key)
        loss, accuracy = loss_and_accuracy(logits, y)
        return loss, accuracy

    def _step(state: TrainState, x, y, key):
        key = jax.random.fold_in(key, state.step)
        if augment is not None:
            key, augment_key = jax.random.split(key)
            x = augment(x, key=augment_key)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, accuracy), grads = grad_fn(state.params, x, y, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
        metrics = {"loss": loss, "accuracy": accuracy}
        if check_finite:
            new_state, guard = guard_update(state, new_state, loss, nonfinite_counts(grads))
            metrics.update(guard)
        return new_state, metrics

    jitted = jax.jit(_step, donate_argnums=0)

    def step(
        state: TrainState, batch: Batch, key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        if not isinstance(state, TrainState):
            raise TypeError(
                f"train step: state must be a TrainState (see init_state), got {type(state)!r}"
            )
        x, y = check_batch(batch, "train step")
        if not isinstance(key, jax.Array):
            raise TypeError(
                "train step: key must be a PRNG key such as jax.random.key(seed), "
                f"got {type(key).__name__}"
            )
        return jitted(state, x, y, key)

    return step
