"""Training K students in one compiled program: stacked states and a vmapped step."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxzip.distill._common import Loss
from jaxzip.distill._core import (
    Metrics,
    Transform,
    check_factory_args,
    check_step_inputs,
    make_transform_check,
    shape_key,
    student_update,
    teacher_forward,
)
from jaxzip.models._apply import ApplyFn
from jaxzip.train import TrainState

VmappedStep = Callable[..., tuple[TrainState, Metrics]]


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """Stacks K train states of one structure into one, each leaf gaining a leading K axis.

    Args:
      states: a non-empty sequence of :class:`jaxzip.train.TrainState` (e.g. from
        ``init_state`` of params initialized with different seeds).

    Returns:
      A ``TrainState`` whose ``step`` has shape ``(K,)``.

    Raises:
      TypeError: an element is not a TrainState.
      ValueError: ``states`` is empty or the states differ in structure or shapes.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jaxzip.train import init_state
      >>> tx = optax.sgd(0.1)
      >>> stacked = stack_states([init_state(jnp.zeros(3), tx), init_state(jnp.ones(3), tx)])
      >>> stacked.step.shape, stacked.params.shape
      ((2,), (2, 3))
    """
    states = list(states)
    if not states:
        raise ValueError("stack_states: states must be a non-empty sequence of TrainState")
    for i, s in enumerate(states):
        if not isinstance(s, TrainState):
            raise TypeError(f"stack_states: states[{i}] must be a TrainState, got {type(s)!r}")
    first = shape_key(states[0])
    for i, s in enumerate(states[1:], start=1):
        if shape_key(s) != first:
            raise ValueError(
                f"stack_states: states[{i}] differs from states[0] in tree structure, shapes "
                "or dtypes; every student must have the same architecture and optimizer"
            )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def unstack_states(states: TrainState) -> list[TrainState]:
    """Splits a stacked state (from :func:`stack_states`) back into K states.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jaxzip.train import init_state
      >>> tx = optax.sgd(0.1)
      >>> len(unstack_states(stack_states([init_state(jnp.zeros(3), tx)] * 2)))
      2
    """
    if not isinstance(states, TrainState) or np.ndim(states.step) != 1:
        raise ValueError("unstack_states: expected a TrainState stacked by stack_states")
    return [jax.tree.map(lambda a, i=i: a[i], states) for i in range(np.shape(states.step)[0])]


def _check_vmapped_inputs(where, states, keys, hparams, make_loss) -> dict[str, np.ndarray]:
    if np.ndim(states.step) != 1:
        raise ValueError(f"{where}: states must be stacked by stack_states (step of shape (K,))")
    k = np.shape(states.step)[0]
    if not isinstance(keys, jax.Array) or np.shape(keys) != (k,):
        raise ValueError(
            f"{where}: keys must be {k} PRNG keys, e.g. jax.random.split(key, {k}), got "
            f"{type(keys).__name__} of shape {np.shape(keys)}"
        )
    if not isinstance(hparams, Mapping):
        raise TypeError(f"{where}: hparams must be a mapping name -> (K,) array, got {hparams!r}")
    values = {}
    for name, v in hparams.items():
        arr = np.asarray(v, np.float32)
        if arr.shape != (k,):
            raise ValueError(
                f"{where}: hparams[{name!r}] must have shape ({k},) (one per student), "
                f"got {arr.shape}"
            )
        values[name] = arr
    for i in range(k):  # the loss factory validates each student's values
        make_loss(**{name: float(v[i]) for name, v in values.items()})
    return values


def make_vmapped_train_step(
    student_apply: ApplyFn,
    teacher_apply: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    make_loss: Callable[..., Loss],
    student_transform: Transform | None = None,
    check_finite: bool = False,
) -> VmappedStep:
    """Builds ``step(states, teacher_params, batch, keys, hparams)`` training K students at once.

    The teacher runs once per batch; the student update of
    :func:`make_train_step` is ``jax.vmap``-ed over the stacked ``states``, the
    per-student ``keys`` and the per-student loss hyperparameters ``hparams``
    (``make_loss(**{name: hparams[name][i]})`` is the i-th student's loss), so
    students with different seeds, temperatures or weights train in one compiled
    program. Student ``i`` follows exactly what ``make_train_step(...,
    loss=make_loss(**hparams_i))`` would do with ``keys[i]``. Same conventions:
    jitted, donates ``states``, checks inputs (and each student's
    hyperparameters, through ``make_loss``) before tracing. With
    ``check_finite=True`` each student's update is guarded as in
    :func:`make_train_step` (a student meeting NaN/Inf keeps its state while the
    others advance); ``"finite"`` has shape ``(K,)`` and the counts a leading K axis.
    There is no ``augment``: the one teacher pass per batch serves all K students,
    so augment the batch before the step if they should share augmented images.

    Args:
      student_apply: the student's apply function (one architecture for all K).
      teacher_apply: the teacher's apply function.
      tx: the optax optimizer (shared; its state is per student).
      make_loss: a loss factory taking the hyperparameters as keywords, e.g.
        :func:`kd_loss` with ``hparams={"temperature": ..., "alpha": ...}``.
      student_transform: optional ``params -> params`` applied per student.
      check_finite: guard each student's update against NaN/Inf and report counts.

    Returns:
      ``step(states, teacher_params, batch, keys, hparams)`` returning the new
      stacked state and metrics of shape ``(K,)``.

    Raises:
      TypeError: a callable argument is not callable. The step raises
        ``TypeError``/``ValueError`` for unstacked states, keys or hyperparameters
        not of length K, values the factory rejects, or a bad batch.

    Example:
      Three students at temperatures 1, 2 and 4; the second one's update is
      that of :func:`make_train_step` with ``kd_loss(temperature=2.0, alpha=0.5)``:

      >>> import jax, jax.numpy as jnp, optax
      >>> from jaxzip.distill import kd_loss, make_train_step
      >>> from jaxzip.train import init_state
      >>> linear, tx = (lambda params, x, *, train, key: x @ params), optax.sgd(1.0)
      >>> teacher, batch = 3.0 * jnp.eye(2), {"x": jnp.eye(2), "y": jnp.array([0, 1])}
      >>> step = make_vmapped_train_step(linear, linear, tx, make_loss=kd_loss)
      >>> states = stack_states([init_state(jnp.zeros((2, 2)), tx)] * 3)
      >>> hparams = {"temperature": jnp.array([1.0, 2.0, 4.0]), "alpha": jnp.array([0.5] * 3)}
      >>> keys = jax.random.split(jax.random.key(0), 3)
      >>> states, metrics = step(states, teacher, batch, keys, hparams)
      >>> metrics["loss"].shape
      (3,)
      >>> one = make_train_step(linear, linear, tx, loss=kd_loss(temperature=2.0, alpha=0.5))
      >>> state, m = one(init_state(jnp.zeros((2, 2)), tx), teacher, batch, keys[1])
      >>> [bool(jnp.allclose(a, b)) for a, b in [(states.params[1], state.params),
      ...                                         (metrics["loss"][1], m["loss"])]]
      [True, True]
    """
    where = "make_vmapped_train_step"
    check_factory_args(where, student_apply, teacher_apply, tx, student_transform, check_finite)
    if not callable(make_loss):
        raise TypeError(f"{where}: make_loss must be a loss factory such as kd_loss")

    def _step(states, teacher_params, x, y, mask, keys, hparams):
        teacher_out = teacher_forward(teacher_apply, teacher_params, x)

        def one(state, key, hp):
            return student_update(
                student_apply,
                tx,
                student_transform,
                make_loss(**hp),
                state,
                teacher_out,
                x,
                y,
                mask,
                key,
                check_finite=check_finite,
            )

        return jax.vmap(one)(states, keys, hparams)

    jitted = jax.jit(_step, donate_argnums=0)
    step_where = "distill vmapped train step"
    check_params = make_transform_check(step_where, student_transform)

    def step(
        states: TrainState,
        teacher_params: Any,
        batch: Mapping[str, Any],
        keys: jax.Array,
        hparams: Mapping[str, ArrayLike],
    ) -> tuple[TrainState, Metrics]:
        x, y, mask = check_step_inputs(step_where, states, batch, keys)
        values = _check_vmapped_inputs(step_where, states, keys, hparams, make_loss)
        check_params(
            jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(np.shape(a)[1:], jnp.result_type(a)), states.params
            )
        )
        return jitted(states, teacher_params, x, y, mask, keys, values)

    return step
