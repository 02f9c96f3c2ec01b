"""Benchmark: the jitted KD train step's achieved FLOP/s against the machine's f32 matmul peak.

Usage:
  python experiments/benchmarks/kd_step.py [--batch-size 128] [--steps 20] [--repeats 5]

The step is :func:`jaxzip.distill.make_train_step` with
``kd_loss(temperature=20, alpha=0.9)`` and plain SGD, distilling Hinton et al.'s
teacher ``MLP((1200, 1200))`` into the student ``MLP((800, 800))`` on 784 inputs
(28x28x1) and 10 classes. Inputs and labels are random (the speed does not depend
on them), generated once on the device; so are the params (numpy draws of
Dense-layer scale, which spares compiling the initializers).

FLOPs counted (analytically, matmuls only; one multiply-add is 2 FLOPs):

* teacher forward: ``2 * B * sum(in * out)`` over its Dense layers;
* student forward + backward: ``3x`` its forward ``2 * B * sum(in * out)`` (the
  backward pass is two matmuls per layer, one for the weight gradient and one
  for the input gradient; counting the first layer's unneeded input gradient
  too is the usual ``3x`` convention).

Biases, ReLUs, softmaxes, the loss and the SGD update are not counted (together
well under 1% here). XLA's own count (``cost_analysis()["flops"]`` of the
compiled step) is printed beside it when the backend provides one; XLA skips
the first layer's input gradient, so its count is lower by about
``2 * B * 784 * 800`` (10% here).

The peak is the median FLOP/s of a jitted square f32 matmul (``--matmul-size``;
2048 suits a CPU, use 8192 on a GPU or TPU) measured in the same run, with the
same default matmul precision as the step (on GPUs that may mean TF32 for both).

Printed: the step's median time, its achieved FLOP/s, the peak and the fraction
(target >= 70%), and the compile cost: ``lower + compile`` of the step timed
explicitly, and the wall time of a fresh step's first call (trace + compile +
run). Compilation is excluded from the timed steps (one warm-up call).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common

TARGET_FRACTION = 0.7
IN_FEATURES = 28 * 28
NUM_CLASSES = 10


def dense_dims(widths: Sequence[int]) -> list[tuple[int, int]]:
    """``(in, out)`` of each Dense layer of ``MLP(widths)`` on 784 inputs and 10 classes."""
    sizes = [IN_FEATURES, *widths, NUM_CLASSES]
    return list(itertools.pairwise(sizes))


def forward_flops(widths: Sequence[int], batch_size: int) -> int:
    """Matmul FLOPs of one forward pass: ``2 * B * sum(in * out)``."""
    return 2 * batch_size * sum(i * o for i, o in dense_dims(widths))


def step_flops(teacher_widths: Sequence[int], student_widths: Sequence[int], batch: int) -> int:
    """Teacher forward plus 3x the student forward (see the module docstring)."""
    return forward_flops(teacher_widths, batch) + 3 * forward_flops(student_widths, batch)


def xla_flops(compiled: Any) -> float | None:
    """``cost_analysis()["flops"]`` of a compiled function, or None if unavailable."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per device program
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def matmul_peak(n: int, repeats: int) -> float:
    """FLOP/s of a jitted ``(n, n) @ (n, n)`` float32 matmul (median of ``repeats``)."""
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.standard_normal((n, n), np.float32))
    b = jnp.asarray(rng.standard_normal((n, n), np.float32))
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))  # compile
    inner = max(1, 4 * 1024**3 // (2 * n**3))  # ~4 GFLOP per timed call: tiny n is not all overhead

    def run() -> None:
        out = None
        for _ in range(inner):
            out = matmul(a, b)
        jax.block_until_ready(out)

    return inner * 2 * n**3 / common.median_seconds(run, repeats)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n peak matmul")
    p.add_argument("--teacher-widths", type=int, nargs="+", default=[1200, 1200])
    p.add_argument("--student-widths", type=int, nargs="+", default=[800, 800])
    args = p.parse_args(argv)
    for name in ("batch_size", "steps", "repeats", "matmul_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if min(args.teacher_widths + args.student_widths) < 1:
        p.error("--teacher-widths and --student-widths must be positive")
    return args


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the benchmark; returns the figures that :func:`main` prints."""
    teacher, teacher_apply = common.mlp(args.teacher_widths, NUM_CLASSES)
    student, student_apply = common.mlp(args.student_widths, NUM_CLASSES)
    batch = common.random_batch(args.batch_size, num_classes=NUM_CLASSES)
    x = batch["x"]
    teacher_params = common.random_params(teacher, x[:1], seed=1)
    student_params = common.random_params(student, x[:1], seed=2)
    tx = optax.sgd(0.01)
    loss = jz.distill.kd_loss(temperature=20.0, alpha=0.9)
    key = jax.random.key(2)

    # XLA's view of the same step: lower + compile the step function itself, timed.
    probe = jz.distill.make_train_step(student_apply, teacher_apply, tx, loss=loss)
    state = jz.train.init_state(student_params, tx)
    t0 = time.perf_counter()
    lowered = jax.jit(probe).lower(state, teacher_params, batch, key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    # A fresh step: its first call traces, compiles and runs.
    step = jz.distill.make_train_step(student_apply, teacher_apply, tx, loss=loss)
    t3 = time.perf_counter()
    state, metrics = step(state, teacher_params, batch, key)
    jax.block_until_ready((state, metrics))
    first_call = time.perf_counter() - t3
    state, metrics = step(state, teacher_params, batch, key)  # second warm-up call
    jax.block_until_ready(metrics)

    def run_steps() -> None:
        nonlocal state
        m = None
        for _ in range(args.steps):
            state, m = step(state, teacher_params, batch, key)
        jax.block_until_ready(m)

    step_time = common.median_seconds(run_steps, args.repeats) / args.steps
    flops = step_flops(args.teacher_widths, args.student_widths, args.batch_size)
    peak = matmul_peak(args.matmul_size, args.repeats)
    achieved = flops / step_time
    return {
        "platform": jax.devices()[0].platform,
        "device": str(jax.devices()[0].device_kind),
        "flops": flops,
        "xla_flops": xla_flops(compiled),
        "step_seconds": step_time,
        "achieved": achieved,
        "peak": peak,
        "fraction": achieved / peak,
        "lower_seconds": t1 - t0,
        "compile_seconds": t2 - t1,
        "first_call_seconds": first_call,
        "final_loss": float(metrics["loss"]),
    }


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    """The figures of :func:`measure` as printed lines."""
    xla = "n/a" if r["xla_flops"] is None else f"{r['xla_flops'] / 1e9:.4f} GFLOP"
    ratio = "" if r["xla_flops"] is None else f" (analytic/XLA {r['flops'] / r['xla_flops']:.3f})"
    return "\n".join(
        [
            f"KD step: teacher MLP{tuple(args.teacher_widths)} -> student "
            f"MLP{tuple(args.student_widths)}, batch {args.batch_size}, SGD, T=20, alpha=0.9, "
            f"on {r['platform']} ({r['device']})",
            f"FLOPs per step: analytic {r['flops'] / 1e9:.4f} GFLOP, XLA cost_analysis {xla}"
            f"{ratio}",
            f"step time: median {r['step_seconds'] * 1e3:.3f} ms "
            f"({args.steps} steps x {args.repeats} repeats)",
            f"achieved: {r['achieved'] / 1e9:.2f} GFLOP/s",
            f"f32 matmul peak ({args.matmul_size}x{args.matmul_size}): {r['peak'] / 1e9:.2f} GFLOP/s",
            f"fraction of peak: {r['fraction']:.1%} (target >= {TARGET_FRACTION:.0%})",
            f"compile: lower {r['lower_seconds']:.3f} s + compile {r['compile_seconds']:.3f} s; "
            f"first call of a fresh step {r['first_call_seconds']:.3f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its figures."""
    args = parse_args(argv)
    print(report(args, measure(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
