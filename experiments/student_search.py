"""Automatic student construction: distilled students of a width family under a size budget.

The teacher is Hinton et al.'s ``MLP((1200, 1200), dropout_rate=0.3)`` on MNIST,
read from ``--teacher-params`` (``runs/hinton_distill/teacher_params.npz``, saved by
``experiments/hinton_distill.py``) or, without that flag, trained for
``--teacher-epochs`` epochs. Each student is the family scaled by a width
multiplier (MLP hidden widths, or CNN channels with ``--family small_cnn`` /
``lenet5``); students over the budget are skipped, the rest are distilled from
the teacher (:func:`jaxzip.auto._students.search_students`) and ranked on the
validation split. The test set is used once, for the teacher and the best student.
The split is ``load_splits(..., val_fraction=0.1, seed=--seed)``, as in
``hinton_distill.py``: reuse a teacher with the ``--seed`` it was trained with, so
that its training examples never reach the validation set.

Writes to ``--out``: ``student_search.json`` (every candidate), ``student_search.png``
(validation accuracy against parameters, with the budget), ``student_search.md``
(the table), ``best_student.jz`` (the best student's params, a jaxzip.codec file)
and, when trained here, ``teacher_params.npz``.

  JAXZIP_DATA_DIR=../shared/data python experiments/student_search.py \\
      --teacher-params runs/hinton_distill/teacher_params.npz                # a few min, 2 CPUs
  python experiments/student_search.py --dataset digits --teacher-widths 32 \\
      --teacher-epochs 3 --teacher-learning-rate 0.01 --multipliers 0.25 0.5 1 \\
      --budget-params 1500 --epochs 2                                        # seconds
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax

import jaxzip as jz
from jaxzip._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from jaxzip.auto import (
    CNNFamily,
    MLPFamily,
    StudentSearchResult,
    plot_students,
    search_students,
)

FAMILIES = ("mlp", "small_cnn", "lenet5")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options (bad values exit with status 2)."""
    p = argparse.ArgumentParser(
        description="Search width multipliers of a student family under a size budget, "
        "distilling each candidate from the teacher.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    p.add_argument("--data-dir", default=None, help="directory holding mnist/")
    p.add_argument("--teacher-params", type=Path, default=None, help="teacher_params.npz to reuse")
    p.add_argument("--teacher-widths", type=int, nargs="+", default=[1200, 1200])
    p.add_argument("--teacher-dropout", type=float, default=0.3)
    p.add_argument("--teacher-epochs", type=int, default=3, help="when training the teacher")
    p.add_argument("--teacher-learning-rate", type=float, default=1e-3, help="Adam, cosine")
    p.add_argument(
        "--family",
        choices=FAMILIES,
        default="mlp",
        help="mlp: the teacher's hidden widths scaled; small_cnn, lenet5: those CNNs' channels",
    )
    p.add_argument("--multipliers", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.25, 0.5])
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-params", type=int, default=None, help="default: 300000")
    budget.add_argument("--budget-bytes", type=int, default=None, help="float32 bytes")
    p.add_argument("--epochs", type=int, default=10, help="distillation epochs per student")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam, cosine decay")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the soft term")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/student_search"))
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    if args.budget_params is None and args.budget_bytes is None:
        args.budget_params = 300_000
    for name in ("teacher_epochs", "epochs", "batch_size", "budget_params", "budget_bytes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if min(args.teacher_widths) < 1:
        p.error(f"--teacher-widths must be positive, got {args.teacher_widths}")
    if min(args.multipliers) <= 0 or len(set(args.multipliers)) != len(args.multipliers):
        p.error(f"--multipliers must be distinct and > 0, got {args.multipliers}")
    if not 0.0 <= args.teacher_dropout < 1.0 or not 0.0 <= args.alpha <= 1.0:
        p.error("--teacher-dropout must be in [0, 1) and --alpha in [0, 1]")
    if min(args.learning_rate, args.teacher_learning_rate, args.temperature) <= 0:
        p.error("--learning-rate, --teacher-learning-rate and --temperature must be > 0")
    if args.teacher_params is not None and not args.teacher_params.is_file():
        p.error(f"--teacher-params: no file at {str(args.teacher_params)!r}")
    return args


def family_of(args: argparse.Namespace) -> MLPFamily | CNNFamily:
    """The student family named by ``--family``."""
    if args.family == "mlp":
        return MLPFamily(widths=tuple(args.teacher_widths))
    return CNNFamily.small_cnn() if args.family == "small_cnn" else CNNFamily.lenet5()


def teacher_of(args: argparse.Namespace, splits: jz.data.Splits) -> tuple[Any, Any, float]:
    """The teacher's ``(apply_fn, params, seconds)``: loaded, or trained and saved to ``--out``."""
    start = time.perf_counter()
    model = jz.models.MLP(
        tuple(args.teacher_widths),
        num_classes=splits.train.num_classes,
        dropout_rate=args.teacher_dropout,
    )
    apply_fn = jz.models.linen_apply_fn(model)
    key, example = jax.random.key(args.seed), splits.train.x[:1]
    if args.teacher_params is not None:
        like = jax.eval_shape(lambda: jz.models.init_params(model, key, example))
        return apply_fn, jz.train.load_params(args.teacher_params, like), 0.0
    init = jax.jit(lambda k: jz.models.init_params(model, k, example))(key)
    steps = args.teacher_epochs * (len(splits.train) // args.batch_size)
    tx = jz.train.make_optimizer(
        name="adam", learning_rate=args.teacher_learning_rate, schedule="cosine", total_steps=steps
    )
    state, _ = jz.train.fit(
        apply_fn,
        init,
        tx,
        splits.train,
        epochs=args.teacher_epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=args.progress,
    )
    jz.train.save_params(args.out / "teacher_params.npz", state.params)
    return apply_fn, state.params, time.perf_counter() - start


def table(result: StudentSearchResult, summary: dict[str, Any]) -> str:
    """The candidates as a Markdown table (the best in bold), with the teacher's line."""
    budget = (
        f"{result.budget_params:,} params"
        if result.budget_params is not None
        else f"{result.budget_bytes:,} float32 bytes"
    )
    lines = [
        f"Students of `{summary['settings']['family']}` under a budget of {budget} "
        f"(teacher: {summary['teacher_params']:,} params, val {result.teacher_val_accuracy:.4f}, "
        f"test {summary['teacher_test_accuracy']:.4f}).",
        "",
        "| multiplier | widths | params | f32 KB | .jz KB | val acc | seconds | note |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    best = result.best
    for r in result.records:
        acc = "" if r.val_accuracy is None else f"{r.val_accuracy:.4f}"
        enc = "" if r.encoded_bytes is None else f"{r.encoded_bytes / 1000:.1f}"
        note = "best" if r is best else (r.skipped or "")
        mult = f"**{r.multiplier:g}**" if r is best else f"{r.multiplier:g}"
        lines.append(
            f"| {mult} | {'-'.join(map(str, r.widths))} | {r.params:,} | "
            f"{r.f32_bytes / 1000:.1f} | {enc} | {acc} | {r.seconds:.1f} | {note} |"
        )
    if best is None:
        lines.append("\nNo candidate fits the budget (feasible: false).")
    else:
        lines.append(f"\nBest student's test accuracy: {summary['best_test_accuracy']:.4f}.")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> tuple[StudentSearchResult, dict[str, Any]]:
    """The whole experiment: the search result and the summary that joins it in the JSON."""
    total_start = time.perf_counter()
    splits = jz.data.load_splits(
        args.dataset, data_dir=args.data_dir, val_fraction=0.1, seed=args.seed, progress=False
    )
    args.out.mkdir(parents=True, exist_ok=True)
    teacher_apply, teacher_params, teacher_seconds = teacher_of(args, splits)
    family = family_of(args)
    result = search_students(
        family,
        teacher_apply=teacher_apply,
        teacher_params=teacher_params,
        train_ds=splits.train,
        val_ds=splits.val,
        multipliers=args.multipliers,
        budget_params=args.budget_params,
        budget_bytes=args.budget_bytes,
        loss=jz.distill.kd_loss(temperature=args.temperature, alpha=args.alpha),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        progress=args.progress,
    )
    best = result.best
    best_test = None
    if best is not None:
        module = family.build(best.multiplier, splits.train.num_classes)
        apply_fn = jz.models.linen_apply_fn(module)
        best_test = jz.train.evaluate(apply_fn, result.best_params, splits.test)["accuracy"]
    summary = {
        "experiment": "student_search",
        "dataset": args.dataset,
        "teacher_params": jz.models.param_count(teacher_params),
        "teacher_trained_seconds": teacher_seconds,
        "teacher_test_accuracy": jz.train.evaluate(teacher_apply, teacher_params, splits.test)[
            "accuracy"
        ],
        "best_test_accuracy": best_test,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": time.perf_counter() - total_start,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }
    return result, summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the search and writes the JSON, PNG, Markdown table and best student's file."""
    args = parse_args(argv)
    result, summary = run(args)
    data = json.loads(result.to_json()) | summary
    atomic_write_json(args.out / "student_search.json", data)
    buf = io.BytesIO()
    plot_students(result).savefig(buf, format="png", dpi=120)
    atomic_write_bytes(args.out / "student_search.png", buf.getvalue())
    text = table(result, summary)
    atomic_write_text(args.out / "student_search.md", text)
    if result.best_params is not None:
        jz.codec.save(args.out / "best_student.jz", result.best_params)
    print(text, end="")
    print(f"wrote {args.out} in {summary['wall_seconds']:.1f}s", file=sys.stderr)
    return data


if __name__ == "__main__":
    main()
