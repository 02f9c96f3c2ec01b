"""Benchmark: K students distilled in one vmapped step vs K sequential runs of the plain step.

Usage:
  python experiments/benchmarks/vmap_students.py [--students 8] [--steps 20] [--repeats 5]

Both sides distill K = ``--students`` LeNet-300-100 students (``MLP((300, 100))``,
784 inputs, 10 classes) from one teacher with ``kd_loss(temperature=4, alpha=0.9)``
and SGD, batch 128:

* **vmapped**: :func:`jaxzip.distill.make_vmapped_train_step` over the stacked
  states (:func:`jaxzip.distill.stack_states`), one call per step for all K (the
  teacher runs once per batch);
* **sequential**: :func:`jaxzip.distill.make_train_step`, K runs one after the
  other, each of ``--steps`` steps (the teacher runs in every call).

By default it measures two teachers in the same run: Hinton et al.'s
``MLP((1200, 1200))`` (the teacher of issue 5's experiment and KD-step
benchmark) and a teacher the students' own size. Which one matters: on a CPU,
where batch-128 matmuls already keep the cores busy, what vmapping saves is the
K - 1 repeated teacher forward passes, so the ratio is bounded by
about ``K * (t + s) / (t + K * s)`` with ``t`` the teacher's forward FLOPs and
``s`` a student's forward-and-backward FLOPs; this estimate is printed beside
the measured ratio. ``--teacher-widths`` measures one teacher.

The students start from different params; all see the same batch. Inputs,
labels and params are random numpy draws (the speed does not depend on them;
drawing them with numpy spares compiling the initializers). Throughput is
``K * steps * batch / seconds`` in examples per second (median over repeats,
the two sides alternating so that both see the same machine load), and the
ratio vmapped / sequential is printed (target >= 2x). Compilation is excluded
(each side's first call is a warm-up) and reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common

TARGET_RATIO = 2.0
NUM_CLASSES = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--students", type=int, default=8, help="K")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="steps per student per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--student-widths", type=int, nargs="+", default=[300, 100])
    p.add_argument(
        "--teacher-widths",
        type=int,
        nargs="+",
        default=None,
        help="one teacher's hidden widths (default: both 1200 1200 and the students' widths)",
    )
    args = p.parse_args(argv)
    for name in ("students", "batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min((args.teacher_widths or []) + args.student_widths) < 1:
        p.error("--teacher-widths and --student-widths must be positive")
    return args


def mlp_flops(params: Any) -> dict[str, Any]:
    """:func:`jaxzip.prune.flops` of one 28x28 image through an MLP's Dense layers."""
    layers = [f"Dense_{i}" for i in range(len(params))]
    return jz.prune.flops(params, None, (28, 28, 1), layers=layers)


def ratio_bound(teacher_params: Any, student_params: Any, k: int) -> float:
    """What vmapping K students can gain when the step is compute-bound: the
    teacher's forward pass is shared, each student's forward and backward is not.

    A student's step counts each layer's forward matmul, its weight gradient, and
    its input gradient except the first layer's (the input is data, so XLA does
    not compute it).
    """
    t, student = mlp_flops(teacher_params)["dense"], mlp_flops(student_params)
    s = 3 * student["dense"] - student["layers"]["Dense_0"]["dense"]
    return k * (t + s) / (t + k * s)


def teachers(args: argparse.Namespace) -> list[list[int]]:
    """The teachers' widths to measure: ``--teacher-widths``, or Hinton's and the students'."""
    if args.teacher_widths is not None:
        return [args.teacher_widths]
    return [[1200, 1200], list(args.student_widths)]


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def measure(args: argparse.Namespace, teacher_widths: list[int]) -> dict[str, Any]:
    """Runs the benchmark against one teacher; returns the figures :func:`report` prints."""
    k, steps = args.students, args.steps
    teacher, teacher_apply = common.mlp(teacher_widths, NUM_CLASSES)
    student, student_apply = common.mlp(args.student_widths, NUM_CLASSES)
    batch = common.random_batch(args.batch_size, num_classes=NUM_CLASSES)
    x = batch["x"]
    teacher_params = common.random_params(teacher, x[:1], seed=0)
    inits = [common.random_params(student, x[:1], seed=1 + i) for i in range(k)]
    tx = optax.sgd(0.01)
    hp = {"temperature": 4.0, "alpha": 0.9}
    keys = jax.random.split(jax.random.key(0), k)

    vstep = jz.distill.make_vmapped_train_step(
        student_apply, teacher_apply, tx, make_loss=jz.distill.kd_loss
    )
    hparams = {name: np.full((k,), v, np.float32) for name, v in hp.items()}
    stacked = jz.distill.stack_states([jz.train.init_state(p, tx) for p in inits])
    step = jz.distill.make_train_step(
        student_apply, teacher_apply, tx, loss=jz.distill.kd_loss(**hp)
    )
    states = [jz.train.init_state(p, tx) for p in inits]
    student_keys = list(keys)  # indexed once, outside the timed loops

    def run_vmapped() -> Any:
        nonlocal stacked
        metrics = None
        for _ in range(steps):
            stacked, metrics = vstep(stacked, teacher_params, batch, keys, hparams)
        return metrics

    def run_sequential() -> Any:
        metrics = []
        for i in range(k):
            m = None
            for _ in range(steps):
                states[i], m = step(states[i], teacher_params, batch, student_keys[i])
            metrics.append(m)
        return metrics

    t0 = time.perf_counter()  # first calls: trace + compile + one step
    stacked, metrics = vstep(stacked, teacher_params, batch, keys, hparams)
    jax.block_until_ready(metrics)
    compile_v = time.perf_counter() - t0
    t0 = time.perf_counter()
    states[0], metrics = step(states[0], teacher_params, batch, student_keys[0])
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    times_v, times_s = [], []
    for _ in range(args.repeats):
        times_v.append(_timed(run_vmapped))
        times_s.append(_timed(run_sequential))
    examples = k * steps * args.batch_size
    tv, ts = statistics.median(times_v), statistics.median(times_s)
    return {
        "teacher_widths": list(teacher_widths),
        "platform": jax.devices()[0].platform,
        "vmapped_examples_per_s": examples / tv,
        "sequential_examples_per_s": examples / ts,
        "ratio": ts / tv,
        "ratio_bound": ratio_bound(teacher_params, inits[0], k),
        "vmapped_compile_seconds": compile_v,
        "sequential_compile_seconds": compile_s,
    }


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    """The figures of :func:`measure` as printed lines."""
    return "\n".join(
        [
            f"{args.students} students MLP{tuple(args.student_widths)} distilled from "
            f"MLP{tuple(r['teacher_widths'])}, batch {args.batch_size}, {args.steps} steps each, "
            f"random data, on {r['platform']}",
            f"vmapped (make_vmapped_train_step): {r['vmapped_examples_per_s']:,.0f} examples/s",
            f"sequential (make_train_step x {args.students}): "
            f"{r['sequential_examples_per_s']:,.0f} examples/s",
            f"ratio: {r['ratio']:.2f}x (target >= {TARGET_RATIO:.0f}x; "
            f"compute-bound estimate {r['ratio_bound']:.2f}x)",
            f"compile (first call, excluded above): vmapped {r['vmapped_compile_seconds']:.2f} s, "
            f"sequential {r['sequential_compile_seconds']:.2f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its figures."""
    args = parse_args(argv)
    print("\n\n".join(report(args, measure(args, widths)) for widths in teachers(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
