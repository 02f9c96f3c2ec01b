"""Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network": MNIST.

Three models, all MLPs on flattened images, trained with SGD (Nesterov
momentum 0.9) and a cosine learning-rate decay (the teacher from
``--learning-rate``, both students from ``--student-learning-rate``: the
``T**2``-scaled soft loss at T = 20 acts like logit matching, whose gradients are
unbounded, and it diverges at the teacher's 0.1); ``--student-optimizer adam``
trains both students with Adam instead:

* the **teacher**, ``MLP((1200, 1200), dropout_rate=...)`` trained with random
  shifts of up to ``--shift`` pixels (``--shift 0``: dropout only; the paper: 67
  test errors, with dropout, weight constraints and 2-pixel jitter), optionally
  with dropout on its input pixels too (``--teacher-input-dropout``) and a
  per-unit weight constraint (``--max-norm``);
* the **student alone**, ``MLP((800, 800))`` with no dropout and no augmentation
  (the paper: 146 errors);
* the **distilled student**, the same student from the same initialization with
  the same optimizer and epochs, trained on ``kd_loss(temperature=T, alpha)``
  against the teacher's logits (the teacher's params go into every step), with
  no augmentation either, so the comparison is about the soft targets alone
  (the paper, T = 20: 74 errors).

``--student-shift N`` leaves the paper's protocol: both students then train on
images shifted by up to N pixels, and the teacher labels the distilled
student's shifted images (consistent views), so the transfer set is no longer
the unshifted training set.

The headline is the fraction of the alone-vs-teacher error gap that distillation
closes, ``(alone - distilled) / (alone - teacher)``. The test set is used once,
at the end; validation accuracy per epoch is recorded for every model. With
``--validation-only`` the test set is never evaluated: the errors and the
closure are counted on the 10% validation split instead (``val_errors``), for
choosing settings without looking at the test set (``target_met`` is then null:
the target is about test errors). Results
go to ``hinton_distill.json`` in ``--out`` with the teacher's params
(``teacher_params.npz``, reusable with ``--teacher-params``) and the students'
(``student_alone_params.npz``, ``student_distilled_params.npz``); a table goes to
stdout. Each student's ``teacher_agreement`` is the fraction of images where its
class is the teacher's (the fidelity of the distillation), on the training set
(the transfer set) and on the scored split.

  JAXZIP_DATA_DIR=../shared/data python experiments/hinton_distill.py         # ~9 min, 2 CPUs
  python experiments/hinton_distill.py --dataset digits --epochs-teacher 1 \\
      --epochs-student 1 --teacher-widths 32 32 --student-widths 16 16        # seconds
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

PAPER_ERRORS = {"teacher": 67, "student_alone": 146, "student_distilled": 74}
"""Test errors reported by Hinton et al. (2015) for 1200-1200 / 800-800 MLPs, T = 20."""


NUMBERS = (
    ("--temperature", float, 20.0, "distillation temperature T"),
    ("--alpha", float, 0.9, "weight of the soft (T^2 KL) term; 1 - alpha weights the hard labels"),
    ("--teacher-dropout", float, 0.3, "dropout on hidden units"),
    (
        "--teacher-input-dropout",
        float,
        0.0,
        "teacher's dropout on input pixels (Srivastava et al.'s nets: 0.2)",
    ),
    ("--shift", int, 2, "teacher's random shift in pixels (0: no shifts)"),
    (
        "--student-shift",
        int,
        0,
        "both students' random shift in pixels (0: none, the paper's protocol); the "
        "distilled student's teacher sees the same shifted images",
    ),
    (
        "--max-norm",
        float,
        0.0,
        "teacher only: after each update, scale every unit's incoming weight vector "
        "back to this L2 norm when it grows past it (the paper's weight constraint; 0: off)",
    ),
    ("--learning-rate", float, 0.1, "teacher's peak SGD rate"),
    (
        "--student-learning-rate",
        float,
        0.02,
        "peak rate of both students (SGD: the T^2-scaled soft loss diverges at 0.1)",
    ),
    (
        "--clip-norm",
        float,
        0.0,
        "clip both students' gradients to this global norm before the optimizer (0: off)",
    ),
)
"""The numeric options: ``(flag, type, default, help)``."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = common.parser(
        "Hinton et al.'s MNIST distillation: a 1200-1200 dropout teacher, an "
        "800-800 student alone, and the same student distilled at temperature T."
    )
    common.add_data_options(p)
    p.add_argument("--epochs-teacher", type=int, default=25)
    p.add_argument("--epochs-student", type=int, default=25)
    p.add_argument("--teacher-widths", type=int, nargs="+", default=[1200, 1200])
    p.add_argument("--student-widths", type=int, nargs="+", default=[800, 800])
    for flag, kind, default, text in NUMBERS:
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument(
        "--student-optimizer",
        choices=("sgd", "adam"),
        default="sgd",
        help="both students' optimizer (the teacher's is always SGD), cosine-decayed from "
        "--student-learning-rate",
    )
    p.add_argument(
        "--teacher-params",
        type=Path,
        default=None,
        help="reuse a teacher saved by an earlier run (teacher_params.npz) instead of training",
    )
    common.add_run_options(p, out="runs/hinton_distill", progress=True)
    p.add_argument(
        "--validation-only",
        action="store_true",
        help="count errors on the validation split and never evaluate the test set",
    )
    args = p.parse_args(argv)
    common.require_at_least(p, args, 0, "shift", "student_shift", "max_norm", "clip_norm")
    common.require_at_least(
        p, args, 1, "epochs_teacher", "epochs_student", "teacher_widths", "student_widths"
    )
    common.require_fraction(p, args, "teacher_dropout", "teacher_input_dropout", one=False)
    common.require_fraction(p, args, "alpha")
    common.require_positive(p, args, "temperature", "learning_rate", "student_learning_rate")
    return args


def max_norm(limit: float) -> optax.GradientTransformation:
    """A constraint chained after an optimizer: each 2-D kernel's columns (one unit's
    incoming weights) are projected onto the L2 ball of radius ``limit`` after the
    update, as Srivastava et al.'s dropout nets (and Hinton et al.'s teacher) did.

    The returned updates are ``project(params + updates) - params``, so
    ``optax.apply_updates`` lands on the projected params. Biases are left alone.
    """

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("max_norm: expected params in tx.update(updates, state, params)")

        def project(u: jax.Array, w: jax.Array) -> jax.Array:
            if w.ndim != 2:
                return u
            new = w + u
            norms = jnp.sqrt(jnp.sum(jnp.square(new), axis=0, keepdims=True))
            return new * jnp.minimum(1.0, limit / jnp.maximum(norms, 1e-12)) - w

        return jax.tree.map(project, updates, params), state

    return optax.GradientTransformation(init, update)


def optimizer(
    args: argparse.Namespace,
    learning_rate: float,
    epochs: int,
    n_train: int,
    clip_norm: float,
    max_norm_limit: float = 0.0,
    name: str = "sgd",
) -> optax.GradientTransformation:
    """SGD with Nesterov momentum (or Adam: ``name="adam"``) and a cosine decay from
    ``learning_rate`` over the run.

    With ``clip_norm`` > 0 (the students' ``--clip-norm``) the gradients are first
    clipped to that global norm; with ``max_norm_limit`` > 0 (the teacher's
    ``--max-norm``) the updated weights are constrained by :func:`max_norm`.
    """
    tx = common.cosine_optimizer(
        name, learning_rate, epochs=epochs, train_size=n_train, batch_size=args.batch_size
    )
    if clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
    return tx if max_norm_limit <= 0 else optax.chain(tx, max_norm(max_norm_limit))


def student_optimizer(args: argparse.Namespace, n_train: int) -> optax.GradientTransformation:
    """Both students' optimizer: ``--student-optimizer`` from ``--student-learning-rate``
    over ``--epochs-student``, after ``--clip-norm`` clipping."""
    return optimizer(
        args,
        args.student_learning_rate,
        args.epochs_student,
        n_train,
        args.clip_norm,
        name=args.student_optimizer,
    )


def shifts(pixels: int) -> jz.train.RandomShift | None:
    """Random shifts of up to ``pixels`` (``--shift`` for the teacher, ``--student-shift``
    for both students), or None for 0: no augmentation."""
    return jz.train.RandomShift(pixels=pixels) if pixels else None


def gap_closure(errors: dict[str, int]) -> float | None:
    """``(alone - distilled) / (alone - teacher)`` of error counts keyed by
    ``teacher``, ``student_alone`` and ``student_distilled``; None when the teacher
    is not better than the student alone.

    >>> gap_closure({"teacher": 67, "student_alone": 146, "student_distilled": 74})
    0.9113924050632911
    """
    gap = errors["student_alone"] - errors["teacher"]
    return (errors["student_alone"] - errors["student_distilled"]) / gap if gap > 0 else None


def scored_split(args: argparse.Namespace, splits: jz.data.Splits) -> tuple[str, jz.data.Dataset]:
    """Where errors are counted: ``("test", splits.test)``, or the validation split
    with ``--validation-only``."""
    return ("val", splits.val) if args.validation_only else ("test", splits.test)


@functools.partial(jax.jit, static_argnames="apply_fn")
def predict(apply_fn: jz.models.ApplyFn, params: Any, x: jax.Array) -> jax.Array:
    """The class ``apply_fn`` gives each image (compiled once per model and batch shape)."""
    return jnp.argmax(apply_fn(params, x, train=False, key=None), axis=-1)


def teacher_labelled(
    apply_fn: jz.models.ApplyFn, params: Any, ds: jz.data.Dataset, batch_size: int = 1000
) -> jz.data.Dataset:
    """``ds`` with the teacher's predicted classes as its labels, so that a student's
    accuracy on it (:func:`jaxzip.train.evaluate`) is its top-1 agreement with the
    teacher, the fidelity of the distillation."""
    y = np.concatenate(
        [
            np.asarray(predict(apply_fn, params, ds.x[i : i + batch_size]), np.int32)
            for i in range(0, len(ds), batch_size)
        ]
    )
    return jz.data.Dataset(x=ds.x, y=y, num_classes=ds.num_classes, name=f"{ds.name}@teacher")


def summary(
    apply_fn: jz.models.ApplyFn,
    params: Any,
    name: str,
    ds: jz.data.Dataset,
    val_acc: list[float],
) -> dict[str, Any]:
    """Errors/accuracy on the scored split ``ds`` called ``name`` (from
    :func:`scored_split`: the one use of the test set) and the validation history."""
    scored = jz.train.evaluate(apply_fn, params, ds)
    return {
        f"{name}_errors": round((1.0 - float(scored["accuracy"])) * len(ds)),
        f"{name}_accuracy": float(scored["accuracy"]),
        "val_accuracy": val_acc,
    }


def train_plain(
    args: argparse.Namespace,
    splits: jz.data.Splits,
    apply_fn: jz.models.ApplyFn,
    params: Any,
    key: jax.Array,
    *,
    teacher: bool,
) -> tuple[Any, list[float]]:
    """Cross-entropy training with :func:`jaxzip.train.fit`, with the teacher's settings
    (``--learning-rate``, ``--epochs-teacher``, ``--shift``, ``--max-norm``, SGD) or the
    students' (``--student-learning-rate``, ``--epochs-student``, ``--student-shift``,
    ``--clip-norm``, ``--student-optimizer``); returns (params, val accuracies)."""
    epochs = args.epochs_teacher if teacher else args.epochs_student
    if teacher:
        tx = optimizer(args, args.learning_rate, epochs, len(splits.train), 0.0, args.max_norm)
    else:
        tx = student_optimizer(args, len(splits.train))
    state, history = jz.train.fit(
        apply_fn,
        params,
        tx,
        splits.train,
        epochs=epochs,
        batch_size=args.batch_size,
        key=key,
        val_ds=splits.val,
        progress=args.progress,
        augment=shifts(args.shift if teacher else args.student_shift),
    )
    return state.params, [float(h["val_accuracy"]) for h in history]


def train_distilled(
    args: argparse.Namespace,
    splits: jz.data.Splits,
    student_apply: jz.models.ApplyFn,
    teacher_apply: jz.models.ApplyFn,
    params: Any,
    teacher_params: Any,
    key: jax.Array,
) -> tuple[Any, list[float]]:
    """Distillation from the teacher's logits; returns (params, val accuracies)."""
    epochs = args.epochs_student
    tx = student_optimizer(args, len(splits.train))
    loss = jz.distill.kd_loss(temperature=args.temperature, alpha=args.alpha)
    step = jz.distill.make_train_step(
        student_apply, teacher_apply, tx, loss=loss, augment=shifts(args.student_shift)
    )
    state, history = jz.train.run_epochs(
        lambda state, batch, key: step(state, teacher_params, batch, key),
        jz.train.init_state(params, tx),
        splits.train,
        key=key,  # the student alone's key: the same batches
        epochs=epochs,
        batch_size=args.batch_size,
        evaluate=lambda state: {
            "val_accuracy": float(
                jz.train.evaluate(student_apply, state.params, splits.val)["accuracy"]
            )
        },
        progress=args.progress,
        desc="distill",
    )
    val_acc = [h["val_accuracy"] for h in history]
    return state.params, val_acc


def log(name: str, result: dict[str, Any], split: str) -> None:
    """One progress line per model on stderr (``split``: where errors were counted)."""
    common.log(
        f"{name}: {result[f'{split}_errors']} {split} errors, val accuracy "
        f"{result['val_accuracy'][-1]:.4f} ({result['seconds']:.1f}s)"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole experiment; returns what goes to ``hinton_distill.json``."""
    total_start = time.perf_counter()
    splits = common.load_splits(args)
    split, scored = scored_split(args, splits)
    classes = splits.train.num_classes
    teacher = jz.models.MLP(
        tuple(args.teacher_widths),
        num_classes=classes,
        dropout_rate=args.teacher_dropout,
        input_dropout_rate=args.teacher_input_dropout,
    )
    student = jz.models.MLP(tuple(args.student_widths), num_classes=classes)
    teacher_apply, student_apply = (
        jz.models.linen_apply_fn(teacher),
        jz.models.linen_apply_fn(student),
    )
    root, named_key = jax.random.key(args.seed), jz.train.named_key
    key_t, key_s = jax.random.split(root)  # the inits
    example = splits.train.x[:1]
    teacher_init = jz.models.init_params(teacher, key_t, example)
    student_init = jz.models.init_params(student, key_s, example)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}

    start = time.perf_counter()
    if args.teacher_params is not None:
        teacher_params = jz.train.load_params(args.teacher_params, teacher_init)
        val = jz.train.evaluate(teacher_apply, teacher_params, splits.val)
        teacher_val = [float(val["accuracy"])]
    else:
        teacher_params, teacher_val = train_plain(
            args, splits, teacher_apply, teacher_init, named_key(root, "teacher"), teacher=True
        )
        jz.train.save_params(args.out / "teacher_params.npz", teacher_params)
    results["teacher"] = summary(teacher_apply, teacher_params, split, scored, teacher_val)
    results["teacher"]["seconds"] = time.perf_counter() - start
    results["teacher"]["reused_from"] = (
        None if args.teacher_params is None else str(args.teacher_params)
    )
    log("teacher", results["teacher"], split)
    # the teacher's own answers on the transfer set and on the scored split
    agreement_sets = {
        "train": teacher_labelled(teacher_apply, teacher_params, splits.train),
        split: teacher_labelled(teacher_apply, teacher_params, scored),
    }

    def finish(name: str, params: Any, val_acc: list[float], start: float) -> None:
        results[name] = summary(student_apply, params, split, scored, val_acc)
        results[name]["seconds"] = time.perf_counter() - start
        results[name]["teacher_agreement"] = {
            where: jz.train.evaluate(student_apply, params, ds)["accuracy"]
            for where, ds in agreement_sets.items()
        }
        jz.train.save_params(args.out / f"{name}_params.npz", params)
        log(name.replace("_", " "), results[name], split)

    start = time.perf_counter()
    params, val_acc = train_plain(
        args, splits, student_apply, student_init, named_key(root, "students"), teacher=False
    )
    finish("student_alone", params, val_acc, start)

    start = time.perf_counter()
    params, val_acc = train_distilled(
        args,
        splits,
        student_apply,
        teacher_apply,
        student_init,
        teacher_params,
        named_key(root, "students"),
    )
    finish("student_distilled", params, val_acc, start)

    errors = {name: results[name][f"{split}_errors"] for name in PAPER_ERRORS}
    closure = gap_closure(errors)
    # the target is about test errors; a validation run does not claim it
    met = None if split == "val" else closure is not None and closure >= 0.8
    return common.record(
        args,
        experiment="hinton_distill",
        dataset=args.dataset,
        evaluated_on=split,
        models=results,
        gap_closure=closure,
        target_closure=0.8,
        target_met=met,
        paper_test_errors=PAPER_ERRORS,
        wall_seconds=time.perf_counter() - total_start,
        **{f"{split}_size": len(scored), f"{split}_errors": errors},
    )


def table(results: dict[str, Any]) -> str:
    """The results as an aligned text table."""
    split = results["evaluated_on"]
    rows = []
    for name, paper in PAPER_ERRORS.items():
        r = results["models"][name]
        rows.append(
            [
                name,
                r[f"{split}_errors"],
                paper,
                f"{r['val_accuracy'][-1]:.4f}",
                f"{r['seconds']:.1f}",
            ]
        )
    lines = [common.format_table(["model", f"{split}_errors", "paper", "val_acc", "seconds"], rows)]
    for name in ("student_alone", "student_distilled"):
        agree = results["models"][name]["teacher_agreement"]
        lines.append(
            f"{name} agrees with the teacher on {agree['train']:.2%} of train, "
            f"{agree[split]:.2%} of {split}"
        )
    closure = results["gap_closure"]
    text = "n/a (teacher not better than student alone)" if closure is None else f"{closure:.3f}"
    lines.append(f"gap closure (alone - distilled) / (alone - teacher): {text} (target >= 0.8)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment, writes ``hinton_distill.json`` and prints the table."""
    return common.main(argv, parse_args, run, lambda r: ({"hinton_distill.json": r}, table(r)))


if __name__ == "__main__":
    main()
