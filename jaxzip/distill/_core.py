"""The traced body shared by the distillation train steps, and its checks before tracing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip._types import Params
from jaxzip.distill._common import Loss, logits_of, masked_mean, per_example
from jaxzip.models._apply import ApplyFn
from jaxzip.paths import leaves_with_paths
from jaxzip.train import TrainState
from jaxzip.train._guard import run_guarded
from jaxzip.train._step import check_batch, check_step_factory

Transform = Callable[[Params], Params]
Metrics = dict[str, jax.Array]


def check_factory_args(
    where: str, student_apply: Any, teacher_apply: Any, tx: Any, transform: Any, check_finite: Any
) -> None:
    """Raises ``TypeError`` for arguments of a step factory that cannot work."""
    check_step_factory(
        where, tx, check_finite, student_apply=student_apply, teacher_apply=teacher_apply
    )
    if transform is not None and not callable(transform):
        raise TypeError(
            f"{where}: student_transform must be None or a callable params -> params, "
            f"got {transform!r}"
        )


def check_step_inputs(where: str, state: Any, batch: Any, key: Any) -> tuple[Any, Any, Any]:
    """Checks state, batch and key before tracing; returns ``(x, y, mask)``.

    ``mask`` is ``batch["mask"]`` (boolean ``(N,)``, False for padding) or all True,
    so a batch with or without a mask compiles to the same program.
    """
    if not isinstance(state, TrainState):
        raise TypeError(
            f"{where}: state must be a jaxzip.train.TrainState (see init_state), "
            f"got {type(state).__name__}"
        )
    x, y = check_batch(batch, where)
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"{where}: key must be a PRNG key such as jax.random.key(seed), "
            f"got {type(key).__name__}"
        )
    n = np.shape(y)[0]
    mask = batch.get("mask") if isinstance(batch, Mapping) else None
    if mask is None:
        return x, y, np.ones((n,), bool)
    if np.shape(mask) != (n,) or jnp.result_type(mask) != jnp.bool_:
        raise ValueError(
            f"{where}: batch['mask'] must be a boolean array of shape ({n},), got shape "
            f"{np.shape(mask)} and dtype {jnp.result_type(mask)}"
        )
    return x, y, mask


def check_transform(where: str, transform: Transform, params_shapes: Params) -> None:
    """Checks with ``jax.eval_shape`` that ``transform`` keeps the params' structure, shapes
    and dtypes (so it fails here, with the path, rather than deep inside the compile)."""
    try:
        out = jax.eval_shape(transform, params_shapes)
    except Exception as err:
        raise ValueError(f"{where}: student_transform failed on the student params: {err}") from err
    want, got = jax.tree.structure(params_shapes), jax.tree.structure(out)
    if want != got:
        raise ValueError(
            f"{where}: student_transform must return params of the same tree structure; "
            f"expected {want}, got {got}"
        )
    for (path, a), b in zip(leaves_with_paths(params_shapes), jax.tree.leaves(out), strict=True):
        if (a.shape, a.dtype) != (b.shape, b.dtype):
            raise ValueError(
                f"{where}: student_transform changed params leaf {path!r} from "
                f"{a.dtype}{list(a.shape)} to {b.dtype}{list(b.shape)}"
            )


def make_transform_check(where: str, transform: Transform | None) -> Callable[[Params], None]:
    """``check(params_shapes)``: :func:`check_transform` once per params structure and shapes
    (the steps call it on every call, before the jitted step; nothing without a transform)."""
    checked: set[Any] = set()

    def check(params_shapes: Params) -> None:
        if transform is None:
            return
        signature = shape_key(params_shapes)
        if signature not in checked:
            check_transform(where, transform, params_shapes)
            checked.add(signature)

    return check


def shape_key(params: Params) -> tuple[Any, ...]:
    """A hashable summary of a params tree's structure, shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(params)
    return (
        treedef,
        tuple((tuple(getattr(a, "shape", np.shape(a))), jnp.result_type(a)) for a in leaves),
    )


def teacher_forward(teacher_apply: ApplyFn, teacher_params: Params, x: jax.Array) -> Any:
    """The teacher's outputs in inference mode, without gradient."""
    return jax.lax.stop_gradient(teacher_apply(teacher_params, x, train=False, key=None))


def student_update(
    student_apply: ApplyFn,
    tx: optax.GradientTransformation,
    transform: Transform | None,
    loss: Loss,
    state: TrainState,
    teacher_out: Any,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    key: jax.Array,
    *,
    check_finite: bool,
) -> tuple[TrainState, Metrics]:
    """One optimizer step of the student against fixed teacher outputs (traced code).

    With ``check_finite`` the update is guarded (``jaxzip.train``'s NaN/Inf guard):
    applied only if the loss, gradients and new params are finite.
    """
    if check_finite:

        def update(opt: optax.GradientTransformation) -> tuple[TrainState, Metrics]:
            return student_update(
                student_apply,
                opt,
                transform,
                loss,
                state,
                teacher_out,
                x,
                y,
                mask,
                key,
                check_finite=False,
            )

        return run_guarded(update, tx, state)
    key = jax.random.fold_in(key, state.step)

    def loss_fn(params):
        used = params if transform is None else transform(params)
        student_out = student_apply(used, x, train=True, key=key)
        per_example, terms = loss(student_out, teacher_out, y, mask=mask)
        return masked_mean(per_example, mask), (terms, logits_of("train step", student_out))

    (value, (terms, logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {name: masked_mean(v, mask) for name, v in terms.items()}
    metrics["loss"] = value
    correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)
    metrics["accuracy"] = masked_mean(per_example(correct), mask)  # per token for sequences
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics
