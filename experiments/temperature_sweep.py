"""Distillation temperature sweep: one small MNIST student per T, all trained in ONE vmapped run.

Hinton et al. (2015) report that small students (30 units or fewer per hidden
layer) distil best at moderate temperatures (2.5 to 4) and worse above 8. This
script distils ``MLP(--student-widths)`` from a fixed teacher at every
temperature of ``--temperatures`` at once: the students are stacked
(:func:`jaxzip.distill.stack_states`) and trained by
:func:`jaxzip.distill.make_vmapped_train_step` with per-student hyperparameters
``{"temperature": [T_1, ..., T_K, 1], "alpha": [alpha, ..., alpha, 0]}``; the
last student, with ``alpha = 0``, learns from the labels alone (the baseline).
Every student starts from the same initialization and sees the same batches,
so they differ only in T. The teacher runs once per batch for all of them.

The teacher is ``MLP(--teacher-widths, dropout_rate=--teacher-dropout)``, read
from ``--teacher-params`` (default, on MNIST when it exists:
``runs/hinton_distill/teacher_params.npz`` from ``experiments/hinton_distill.py``)
or trained here for ``--teacher-epochs`` epochs (and saved to
``teacher_params.npz`` in ``--out``). The students use Adam by default: its
per-parameter step size does not grow with the ``T**2``-scaled soft loss, so one
learning rate serves every temperature (SGD at high T needs a smaller rate).

Writes ``temperature_sweep.json`` (validation error per epoch and final
validation / test errors per T, the baseline and the teacher) and
``temperature_sweep.png`` (validation and test error against T) to ``--out``;
prints a table. The test set is used once, at the end.

  JAXZIP_DATA_DIR=../shared/data python experiments/temperature_sweep.py      # ~3 min, 2 CPUs
  python experiments/temperature_sweep.py --dataset digits --epochs 1 --teacher-epochs 1 \\
      --teacher-widths 32 --student-widths 8                                 # seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

DEFAULT_TEACHER = Path("runs/hinton_distill/teacher_params.npz")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = common.parser("Distil a small student at several temperatures in one vmapped run.")
    common.add_data_options(p)
    p.add_argument(
        "--temperatures", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    )
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the soft (T^2 KL) term")
    p.add_argument("--epochs", type=int, default=15, help="student epochs")
    p.add_argument("--student-widths", type=int, nargs="+", default=[30, 30])
    p.add_argument("--teacher-widths", type=int, nargs="+", default=[1200, 1200])
    p.add_argument("--teacher-dropout", type=float, default=0.3)
    p.add_argument(
        "--teacher-params",
        type=Path,
        default=None,
        help=f"teacher params file (default on mnist: {DEFAULT_TEACHER} if it exists, "
        "else a teacher is trained)",
    )
    p.add_argument("--teacher-epochs", type=int, default=3, help="when training a teacher")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--learning-rate", type=float, default=3e-3, help="students' peak rate")
    common.add_run_options(p, out="runs/temperature_sweep")
    args = p.parse_args(argv)
    common.require_at_least(p, args, 1, "epochs", "teacher_epochs", "teacher_widths")
    common.require_positive(p, args, "temperatures", "learning_rate")
    common.require_fraction(p, args, "alpha")
    common.require_fraction(p, args, "teacher_dropout", one=False)
    common.require_at_least(p, args, 1, "student_widths")
    common.require_file(p, args, "teacher_params")
    return args


def errors_of(
    apply_fn: jz.models.ApplyFn, params: Any, ds: jz.data.Dataset, batch_size: int
) -> dict[str, Any]:
    """Error rate and count of misclassified examples on ``ds`` (evaluated in ``batch_size``s)."""
    r = jz.train.evaluate(apply_fn, params, ds, batch_size=batch_size)
    return {"error": r["error"], "errors": r["errors"]}


def teacher_of(args: argparse.Namespace, splits: jz.data.Splits) -> tuple[Any, Any, str]:
    """The teacher's apply function, params and where they came from (loaded or trained)."""
    model = jz.models.MLP(
        tuple(args.teacher_widths),
        num_classes=splits.train.num_classes,
        dropout_rate=args.teacher_dropout,
    )
    return common.load_or_fit(
        common.default_file(args.teacher_params, args, DEFAULT_TEACHER),
        model,
        splits.train,
        key=jax.random.key(args.seed),
        epochs=args.teacher_epochs,
        batch_size=args.batch_size,
        save_to=args.out / "teacher_params.npz",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole sweep; returns what goes to ``temperature_sweep.json``."""
    total_start = time.perf_counter()
    splits = common.load_splits(args)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher_apply, teacher_params, source = teacher_of(args, splits)
    teacher = {
        "val": errors_of(teacher_apply, teacher_params, splits.val, args.batch_size),
        "test": errors_of(teacher_apply, teacher_params, splits.test, args.batch_size),
        "source": source,
        "seconds": time.perf_counter() - start,
    }
    common.log(f"teacher ({source}): val error {teacher['val']['error']:.4f}")

    student = jz.models.MLP(tuple(args.student_widths), num_classes=splits.train.num_classes)
    student_apply = jz.models.linen_apply_fn(student)
    key = jax.random.fold_in(jax.random.key(args.seed), 2)
    init = jz.models.init_params(student, key, splits.train.x[:1])
    temps = [float(t) for t in args.temperatures]
    k = len(temps) + 1  # the last student: labels only (alpha = 0)
    hparams = {
        "temperature": np.array([*temps, 1.0], np.float32),
        "alpha": np.array([args.alpha] * len(temps) + [0.0], np.float32),
    }
    tx = common.cosine_optimizer(
        args.optimizer,
        args.learning_rate,
        epochs=args.epochs,
        train_size=len(splits.train),
        batch_size=args.batch_size,
    )
    step = jz.distill.make_vmapped_train_step(
        student_apply, teacher_apply, tx, make_loss=jz.distill.kd_loss
    )

    def describe(errors: list[float]) -> str:
        best = min(range(len(temps)), key=lambda i: errors[i])
        return (
            f"best val error {errors[best]:.4f} at T={temps[best]:g}, labels only {errors[-1]:.4f}"
        )

    start = time.perf_counter()
    states, val_history = common.distill_stacked(
        step,
        jz.distill.stack_states([jz.train.init_state(init, tx)] * k),
        teacher_params,
        splits.train,
        hparams=hparams,
        keys=jax.random.split(jax.random.fold_in(key, 1), k),
        key=jax.random.fold_in(key, 2),
        epochs=args.epochs,
        batch_size=args.batch_size,
        val_errors=lambda params: errors_of(student_apply, params, splits.val, args.batch_size)[
            "error"
        ],
        describe=describe,
    )
    students_seconds = time.perf_counter() - start
    rows = [
        {
            "temperature": temps[i] if i < len(temps) else None,
            "alpha": float(hparams["alpha"][i]),
            "val": errors_of(student_apply, s.params, splits.val, args.batch_size),
            "test": errors_of(student_apply, s.params, splits.test, args.batch_size),
            "val_error_history": val_history[i],
        }
        for i, s in enumerate(jz.distill.unstack_states(states))
    ]
    sweep, baseline = rows[:-1], rows[-1]
    best = min(sweep, key=lambda r: r["val"]["error"])
    return common.record(
        args,
        splits,
        experiment="temperature_sweep",
        teacher=teacher,
        sweep=sweep,
        labels_only=baseline,
        best_temperature_by_val=best["temperature"],
        students_seconds=students_seconds,
        wall_seconds=time.perf_counter() - total_start,
    )


def table(results: dict[str, Any]) -> str:
    """The results as an aligned text table (errors in percent, test error counts)."""
    named = [(f"T={r['temperature']:g}", r) for r in results["sweep"]]
    named += [("labels only", results["labels_only"]), ("teacher", results["teacher"])]
    rows = [
        [
            name,
            f"{100 * r['val']['error']:.2f}",
            f"{100 * r['test']['error']:.2f}",
            r["test"]["errors"],
        ]
        for name, r in named
    ]
    return (
        common.format_table(["student", "val_err%", "test_err%", "test_errors"], rows)
        + f"\nbest T by validation error: {results['best_temperature_by_val']:g}"
    )


def plot(results: dict[str, Any]) -> bytes:
    """Validation and test error (%) against T, with the baselines, as PNG bytes."""
    temps = [r["temperature"] for r in results["sweep"]]
    fig, ax = common.pyplot().subplots(figsize=(6, 4), dpi=120)
    for split, style in (("val", "o-"), ("test", "s-")):
        errors = [100 * r[split]["error"] for r in results["sweep"]]
        ax.plot(temps, errors, style, label=f"distilled, {split}")
    for name, label, style in (("labels_only", "labels only", "--"), ("teacher", "teacher", ":")):
        color = "gray" if style == "--" else "black"
        error = 100 * results[name]["test"]["error"]
        ax.axhline(error, color=color, linestyle=style, label=f"{label}, test")
    ax.set_xscale("log", base=2)
    ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("error (%)")
    widths = results["settings"]["student_widths"]
    ax.set_title(f"KD temperature sweep: MLP{tuple(widths)} on {results['dataset']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return common.png_bytes(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the sweep, writes the json and png, prints the table."""

    def outputs(results: dict[str, Any]) -> tuple[dict[str, Any], str]:
        files = {"temperature_sweep.json": results, "temperature_sweep.png": plot(results)}
        return files, table(results)

    return common.main(argv, parse_args, run, outputs)


if __name__ == "__main__":
    main()
