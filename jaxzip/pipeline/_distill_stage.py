"""The ``distill`` stage: a student trained by knowledge distillation from the current model."""

from __future__ import annotations

from jaxzip import distill as jz_distill
from jaxzip import models as jz_models
from jaxzip import train as jz_train
from jaxzip.config import (
    ExperimentConfig,
    augment_of,
    make_module,
    make_train_tx,
    run_key,
)
from jaxzip.pipeline._core_stages import (
    arch_apply_fn,
    checkpoint_in,
    init_checked,
    student_arch,
)
from jaxzip.pipeline._stage_utils import (
    MAX_LOSS_GROWTH,
    divergence_hint,
    val_figures,
    with_hint,
)
from jaxzip.pipeline._state import RunState

__all__ = ["distill_stage"]


def distill_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: trains the ``[distill]`` student from the current model (the teacher).

    Reads ``splits``, ``apply_fn`` and ``params`` (the teacher) from ``state``;
    returns the student's ``apply_fn``, ``params`` and ``arch``, and the report
    ``distill`` (per-epoch loss and accuracy). Metrics: the
    teacher's and the student's param counts and the student's val accuracy, and on
    text its val bits per byte (list ``evaluate_dense`` before ``distill`` for the
    teacher's). With progress on, one line per epoch goes to stderr.

    Raises:
      ValueError: the config has no ``[distill]`` section.
    """
    d, t, splits = cfg.distill, cfg.train, state.splits
    arch = student_arch(cfg, state.splits)
    module = make_module(arch, splits.train.num_classes)
    student_apply = arch_apply_fn(arch, splits)
    teacher_apply, teacher_params = state.apply_fn, state.params
    key, x = run_key(cfg, "distill/init"), splits.train.x[:1]
    sizes = "d_model/distill.num_layers" if d.model == "transformer" else "widths"
    init, _ = init_checked(module, key, x, fields=f"distill.model/distill.{sizes}")
    params = init(key, x)
    steps_per_epoch = len(splits.train) // t.batch_size
    tx = make_train_tx(
        t, learning_rate=d.learning_rate, epochs=d.epochs, steps_per_epoch=steps_per_epoch
    )
    with with_hint(
        divergence_hint("distill.learning_rate", d.learning_rate, clip_norm=t.clip_norm)
    ):
        student_state, history = jz_distill.fit(
            student_apply,
            params,
            tx,
            splits.train,
            teacher_apply=teacher_apply,
            teacher_params=teacher_params,
            loss=jz_distill.kd_loss(temperature=d.temperature, alpha=d.alpha),
            augment=augment_of(d),
            check_finite=True,
            epochs=d.epochs,
            batch_size=t.batch_size,
            key=run_key(cfg, "distill"),
            progress=bool(state.progress),
            max_loss_growth=MAX_LOSS_GROWTH,
            checkpoint=checkpoint_in(state, "distill"),
        )
    bs = t.eval_batch_size
    student = jz_train.evaluate(student_apply, student_state.params, splits.val, batch_size=bs)
    metrics = {
        "teacher_param_count": jz_models.param_count(teacher_params),
        "student_param_count": jz_models.param_count(student_state.params),
        **{f"student_{k}": v for k, v in val_figures(student).items()},
        "distill_epochs": d.epochs,
    }
    report = {"student": arch, "history": history, **metrics}
    updates = {
        "apply_fn": student_apply,
        "params": student_state.params,
        "arch": arch,
        "reports": {"distill": report},
    }
    return updates, metrics
