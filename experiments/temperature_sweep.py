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
import io
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import jaxzip as jz
from jaxzip._io import atomic_write_bytes, atomic_write_json

DEFAULT_TEACHER = Path("runs/hinton_distill/teacher_params.npz")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description="Distil a small student at several temperatures in one vmapped run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    p.add_argument("--data-dir", default=None, help="directory holding mnist/")
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
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="seed for the split, inits and shuffles")
    p.add_argument("--out", type=Path, default=Path("runs/temperature_sweep"))
    args = p.parse_args(argv)
    for name in ("epochs", "teacher_epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.temperatures) <= 0:
        p.error(f"--temperatures must all be > 0, got {args.temperatures}")
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha must be in [0, 1], got {args.alpha}")
    if not 0.0 <= args.teacher_dropout < 1.0:
        p.error(f"--teacher-dropout must be in [0, 1), got {args.teacher_dropout}")
    if min(args.teacher_widths + args.student_widths) < 1:
        p.error("--teacher-widths and --student-widths must be positive")
    if args.learning_rate <= 0:
        p.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.teacher_params is not None and not args.teacher_params.is_file():
        p.error(f"--teacher-params: no file at {str(args.teacher_params)!r}")
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
    apply_fn = jz.models.linen_apply_fn(model)
    init = jz.models.init_params(model, jax.random.key(args.seed), splits.train.x[:1])
    path = args.teacher_params
    if path is None and args.dataset == "mnist" and DEFAULT_TEACHER.is_file():
        path = DEFAULT_TEACHER
    if path is not None:
        return apply_fn, jz.train.load_params(path, init), str(path)
    steps = args.teacher_epochs * (len(splits.train) // args.batch_size)
    tx = jz.train.make_optimizer(
        name="sgd", learning_rate=0.1, schedule="cosine", total_steps=steps
    )
    state, _ = jz.train.fit(
        apply_fn,
        init,
        tx,
        splits.train,
        epochs=args.teacher_epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
    )
    jz.train.save_params(args.out / "teacher_params.npz", state.params)
    return apply_fn, state.params, f"trained here for {args.teacher_epochs} epochs"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole sweep; returns what goes to ``temperature_sweep.json``."""
    total_start = time.perf_counter()
    splits = jz.data.load_splits(
        args.dataset, data_dir=args.data_dir, val_fraction=0.1, seed=args.seed, progress=False
    )
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    teacher_apply, teacher_params, source = teacher_of(args, splits)
    teacher = {
        "val": errors_of(teacher_apply, teacher_params, splits.val, args.batch_size),
        "test": errors_of(teacher_apply, teacher_params, splits.test, args.batch_size),
        "source": source,
        "seconds": time.perf_counter() - start,
    }
    print(f"teacher ({source}): val error {teacher['val']['error']:.4f}", file=sys.stderr)

    student = jz.models.MLP(tuple(args.student_widths), num_classes=splits.train.num_classes)
    student_apply = jz.models.linen_apply_fn(student)
    init = jz.models.init_params(student, jax.random.key(args.seed + 1), splits.train.x[:1])
    temps = [float(t) for t in args.temperatures]
    k = len(temps) + 1  # the last student: labels only (alpha = 0)
    hparams = {
        "temperature": np.array([*temps, 1.0], np.float32),
        "alpha": np.array([args.alpha] * len(temps) + [0.0], np.float32),
    }
    steps_per_epoch = len(splits.train) // args.batch_size
    tx = jz.train.make_optimizer(
        name=args.optimizer,
        learning_rate=args.learning_rate,
        schedule="cosine",
        total_steps=args.epochs * steps_per_epoch,
    )
    step = jz.distill.make_vmapped_train_step(
        student_apply, teacher_apply, tx, make_loss=jz.distill.kd_loss
    )
    states = jz.distill.stack_states([jz.train.init_state(init, tx)] * k)
    keys = jax.random.split(jax.random.key(args.seed + 2), k)
    val_history: list[list[float]] = [[] for _ in range(k)]
    start = time.perf_counter()
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        for batch in jz.data.batches(
            splits.train, args.batch_size, seed=args.seed, epoch=epoch, drop_last=True
        ):
            states, _ = step(states, teacher_params, batch, keys, hparams)
        for i, s in enumerate(jz.distill.unstack_states(states)):
            val_history[i].append(
                errors_of(student_apply, s.params, splits.val, args.batch_size)["error"]
            )
        best = min(range(len(temps)), key=lambda i: val_history[i][-1])
        print(
            f"epoch {epoch + 1}/{args.epochs}: best val error {val_history[best][-1]:.4f} at "
            f"T={temps[best]:g}, labels only {val_history[-1][-1]:.4f} "
            f"({time.perf_counter() - epoch_start:.1f}s)",
            file=sys.stderr,
            flush=True,
        )
    students_seconds = time.perf_counter() - start
    finals = jz.distill.unstack_states(states)
    rows = []
    for i, s in enumerate(finals):
        rows.append(
            {
                "temperature": temps[i] if i < len(temps) else None,
                "alpha": float(hparams["alpha"][i]),
                "val": errors_of(student_apply, s.params, splits.val, args.batch_size),
                "test": errors_of(student_apply, s.params, splits.test, args.batch_size),
                "val_error_history": val_history[i],
            }
        )
    sweep, baseline = rows[:-1], rows[-1]
    best = min(sweep, key=lambda r: r["val"]["error"])
    return {
        "experiment": "temperature_sweep",
        "dataset": args.dataset,
        "val_size": len(splits.val),
        "test_size": len(splits.test),
        "teacher": teacher,
        "sweep": sweep,
        "labels_only": baseline,
        "best_temperature_by_val": best["temperature"],
        "students_seconds": students_seconds,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": time.perf_counter() - total_start,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }


def table(results: dict[str, Any]) -> str:
    """The results as an aligned text table (errors in percent, test error counts)."""
    lines = [
        "student          val_err%  test_err%  test_errors",
        "---------------  --------  ---------  -----------",
    ]
    named = [(f"T={r['temperature']:g}", r) for r in results["sweep"]]
    named += [("labels only", results["labels_only"]), ("teacher", results["teacher"])]
    for name, r in named:
        lines.append(
            f"{name:<15}  {100 * r['val']['error']:>8.2f}  {100 * r['test']['error']:>9.2f}  "
            f"{r['test']['errors']:>11}"
        )
    lines.append(f"best T by validation error: {results['best_temperature_by_val']:g}")
    return "\n".join(lines)


def plot(results: dict[str, Any]) -> bytes:
    """Validation and test error (%) against T, with the baselines, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    temps = [r["temperature"] for r in results["sweep"]]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for split, style in (("val", "o-"), ("test", "s-")):
        ax.plot(temps, [100 * r[split]["error"] for r in results["sweep"]], style,
                label=f"distilled, {split}")  # fmt: skip
    ax.axhline(100 * results["labels_only"]["test"]["error"], color="gray", linestyle="--",
               label="labels only, test")  # fmt: skip
    ax.axhline(100 * results["teacher"]["test"]["error"], color="black", linestyle=":",
               label="teacher, test")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(temps, [f"{t:g}" for t in temps])
    ax.set_xlabel("temperature T")
    ax.set_ylabel("error (%)")
    widths = results["settings"]["student_widths"]
    ax.set_title(f"KD temperature sweep: MLP{tuple(widths)} on {results['dataset']}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the sweep, writes the json and png, prints the table."""
    args = parse_args(argv)
    results = run(args)
    atomic_write_json(args.out / "temperature_sweep.json", results)
    atomic_write_bytes(args.out / "temperature_sweep.png", plot(results))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
