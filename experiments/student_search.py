"""Automatic student construction: distilled students of a width family under a size budget.

The teacher is Hinton et al.'s ``MLP((1200, 1200), dropout_rate=0.3)`` on MNIST,
read from ``--teacher-params`` (``runs/hinton_distill/teacher_params.npz``, saved by
``experiments/hinton_distill.py``) or, without that flag, trained for
``--teacher-epochs`` epochs. Each student is the family scaled by a width
multiplier (MLP hidden widths, or CNN channels with ``--family small_cnn`` /
``lenet5``); students over the budget are skipped, the rest are distilled from
the teacher (:func:`jaxzip.auto.search_students`) and ranked on the
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
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax

import jaxzip as jz
from jaxzip.auto import (
    CNNFamily,
    MLPFamily,
    StudentSearchResult,
    plot_students,
    search_students,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

FAMILIES = ("mlp", "small_cnn", "lenet5")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options (bad values exit with status 2)."""
    p = common.parser(
        "Search width multipliers of a student family under a size budget, "
        "distilling each candidate from the teacher."
    )
    common.add_data_options(p)
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
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam, cosine decay")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the soft term")
    common.add_run_options(p, out="runs/student_search", progress=True)
    args = p.parse_args(argv)
    if args.budget_params is None and args.budget_bytes is None:
        args.budget_params = 300_000
    common.require_at_least(p, args, 1, "teacher_epochs", "epochs", "budget_params", "budget_bytes")
    common.require_at_least(p, args, 1, "teacher_widths")
    common.require_positive(p, args, "multipliers")
    if len(set(args.multipliers)) != len(args.multipliers):
        p.error(f"--multipliers must be distinct, got {args.multipliers}")
    common.require_fraction(p, args, "teacher_dropout", one=False)
    common.require_fraction(p, args, "alpha")
    common.require_positive(p, args, "learning_rate", "teacher_learning_rate", "temperature")
    common.require_file(p, args, "teacher_params")
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
    apply_fn, params, _ = common.load_or_fit(
        args.teacher_params,
        model,
        splits.train,
        key=jax.random.key(args.seed),
        optimizer="adam",
        learning_rate=args.teacher_learning_rate,
        epochs=args.teacher_epochs,
        batch_size=args.batch_size,
        save_to=args.out / "teacher_params.npz",
        progress=args.progress,
    )
    seconds = 0.0 if args.teacher_params is not None else time.perf_counter() - start
    return apply_fn, params, seconds


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
    splits = common.load_splits(args)
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
        key=jax.random.fold_in(jax.random.key(args.seed), 2),
        progress=args.progress,
    )
    best = result.best
    best_test = None
    if best is not None:
        module = family.build(best.multiplier, splits.train.num_classes)
        apply_fn = jz.models.linen_apply_fn(module)
        best_test = jz.train.evaluate(apply_fn, result.best_params, splits.test)["accuracy"]
    teacher_test = jz.train.evaluate(teacher_apply, teacher_params, splits.test)["accuracy"]
    summary = common.record(
        args,
        experiment="student_search",
        dataset=args.dataset,
        teacher_params=jz.models.param_count(teacher_params),
        teacher_trained_seconds=teacher_seconds,
        teacher_test_accuracy=teacher_test,
        best_test_accuracy=best_test,
        wall_seconds=time.perf_counter() - total_start,
    )
    return result, summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the search and writes the JSON, PNG, Markdown table and best student's file."""
    args = parse_args(argv)
    result, summary = run(args)
    data = json.loads(result.to_json()) | summary
    text = table(result, summary)
    files = {
        "student_search.json": data,
        "student_search.png": common.png_bytes(plot_students(result), dpi=120),
        "student_search.md": text,
    }
    if result.best_params is not None:
        jz.codec.save(args.out / "best_student.jz", result.best_params)
    common.finish(args.out, files, text.removesuffix("\n"))
    print(f"wrote {args.out} in {summary['wall_seconds']:.1f}s", file=sys.stderr)
    return data


if __name__ == "__main__":
    main()
