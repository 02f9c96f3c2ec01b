"""Byte-level language model on the King James Bible: train the reference transformer, distil.

Trains :class:`jaxzip.models.Transformer` (``--size reference``: 4 layers,
d_model 192, 4 heads, 1.9M params) on the training part of KJV
(:func:`jaxzip.data.load_kjv`: the last 10% of lines held out) with next-byte
cross-entropy: Adam, gradient clipping at 1, a linear warm-up then cosine decay
to 0, batches of ``--batch-size`` windows of ``--seq-len`` bytes at random
offsets (:func:`jaxzip.data.sample_windows`, one key per step). It reports the
held-out bits per byte on every non-overlapping window of the held-out text
(:func:`jaxzip.data.eval_windows`, :func:`jaxzip.train.evaluate`; only the tail
shorter than one window is left out) and writes ``teacher.npz`` and
``lm_train.json`` to ``--out``.

``--distill`` then trains a 2-layer student (the teacher's width) twice from the
same initialization on the same batches for ``--student-steps`` steps: on the
labels alone, and distilled from the teacher (:func:`jaxzip.distill.kd_loss`,
``--temperature``, ``--alpha``), and reports how much of the gap between the
label-trained student and the teacher the distilled one closes:
``(bpb_labels - bpb_distilled) / (bpb_labels - bpb_teacher)``. With
``--teacher PATH`` the teacher is loaded instead of trained. ``--student-init
alternate`` (or ``first``) starts both students from the teacher's embeddings,
head and blocks 0, 2 (or 0, 1), DistilBERT-style, instead of a random init.

  JAXZIP_DATA_DIR=../shared/data python experiments/lm_train.py --out runs/lm --distill
  python experiments/lm_train.py --size tiny --text FILE --sha256 HEX --out OUT --distill

(the second, on any text file, is what tests/test_lm_train_script.py runs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

import jaxzip as jz
from jaxzip.io import atomic_write_json

SIZES: dict[str, dict[str, int]] = {
    "reference": {"num_layers": 4, "d_model": 192, "num_heads": 4},
    "tiny": {"num_layers": 2, "d_model": 16, "num_heads": 2},
}
STUDENT_LAYERS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description="Train a byte-level transformer on KJV; optionally distil a 2-layer student.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-dir", default=None, help="directory holding kjv.txt.gz")
    p.add_argument(
        "--text",
        type=Path,
        default=None,
        help="train on this text file (raw or .gz) instead of KJV; needs --sha256",
    )
    p.add_argument("--sha256", default=None, help="SHA-256 of --text's (decompressed) content")
    p.add_argument("--size", choices=tuple(SIZES), default="reference")
    p.add_argument("--steps", type=int, default=1500, help="teacher steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=3e-3, help="peak rate")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument(
        "--eval-limit", type=int, default=0, help="held-out windows to score (0: all of them)"
    )
    p.add_argument(
        "--student-eval-limit",
        type=int,
        default=0,
        help="held-out windows scoring the students and the teacher beside them (0: all)",
    )
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--eval-every",
        type=int,
        default=250,
        help="steps between held-out checks on the first 64 windows (0: none)",
    )
    p.add_argument("--teacher", type=Path, default=None, help="load teacher params, skip training")
    p.add_argument("--distill", action="store_true", help="also train the 2-layer students")
    p.add_argument("--student-steps", type=int, default=600)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=1.0, help="weight of the soft (T^2 KL) term")
    p.add_argument(
        "--student-init",
        choices=("random", "alternate", "first"),
        default="random",
        help="both students start from a random init, or (DistilBERT-style) from the "
        "teacher's embeddings, final norm, head and its blocks 0, 2, 4... (alternate) "
        "or 0, 1 (first)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/lm"))
    args = p.parse_args(argv)
    common.require_at_least(
        p, args, 1, "steps", "batch_size", "seq_len", "eval_batch_size", "log_every"
    )
    if (args.text is None) != (args.sha256 is None):
        p.error("--text and --sha256 go together")
    common.require_at_least(p, args, 0, "eval_limit", "student_eval_limit", "eval_every")
    if not 0 < args.warmup_steps < args.steps:
        p.error("--warmup-steps must be positive and below --steps")
    if args.student_steps < 2:
        p.error("--student-steps must be at least 2")
    return args


def make_model(args: argparse.Namespace, num_layers: int | None = None) -> jz.models.Transformer:
    """The transformer of ``--size`` (with ``num_layers`` overridden for the student)."""
    config = dict(SIZES[args.size])
    if num_layers is not None:
        config["num_layers"] = num_layers
    return jz.models.Transformer(**config, max_len=args.seq_len)


def optimizer(args: argparse.Namespace, steps: int) -> optax.GradientTransformation:
    """Adam with global-norm clipping at 1 and warm-up + cosine decay over ``steps``.

    The warm-up is ``--warmup-steps``, at most a tenth of ``steps`` (at least 1).
    """
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=args.learning_rate,
        warmup_steps=max(1, min(args.warmup_steps, steps // 10)),
        decay_steps=steps,
        end_value=0.0,
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def teacher_init(student_params: Any, teacher_params: Any, how: str) -> Any:
    """The student's params copied from the teacher's (DistilBERT-style initialization).

    Every leaf outside the blocks (embeddings, final norm, head) is the
    teacher's; student block ``i`` is teacher block ``2 * i`` (``alternate``) or
    ``i`` (``first``). Shapes must agree (the student has the teacher's width).
    """
    out = dict(student_params)
    blocks = [k for k in out if k.startswith("block_")]
    teacher_blocks = [k for k in teacher_params if k.startswith("block_")]
    stride = 2 if how == "alternate" else 1
    if len(blocks) > len(teacher_blocks[::stride]):
        raise ValueError(
            f"--student-init {how}: the student's {len(blocks)} blocks need "
            f"{len(blocks) * stride - stride + 1} teacher blocks, the teacher has "
            f"{len(teacher_blocks)}"
        )
    for name in out:
        source = f"block_{int(name[6:]) * stride}" if name in blocks else name
        out[name] = teacher_params[source]
    if jax.tree.map(np.shape, out) != jax.tree.map(np.shape, student_params):
        raise ValueError(f"--student-init {how}: the teacher's leaves do not fit the student")
    return out


def batch_at(train_text: np.ndarray, args: argparse.Namespace, data_key: jax.Array, i: int):
    """The ``i``-th training batch: windows at offsets drawn from ``fold_in(data_key, i)``."""
    w = jz.data.sample_windows(
        train_text, seq_len=args.seq_len, num=args.batch_size, key=jax.random.fold_in(data_key, i)
    )
    return {"x": w.x, "y": w.y}


def run_steps(name: str, step_fn, state, train_text, args, data_key, steps: int, check, log):
    """Runs ``steps`` steps of ``step_fn(state, batch, key)``, printing loss and time.

    ``check(params)`` (a held-out figure) is logged every ``--eval-every`` steps.
    Returns the state, the wall seconds and the process CPU seconds of the loop.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    key = jax.random.key(args.seed + 1)
    for i in range(steps):
        state, metrics = step_fn(state, batch_at(train_text, args, data_key, i), key)
        if (i + 1) % args.log_every == 0 or i + 1 == steps:
            loss = float(metrics["loss"])
            log(
                f"[{name}] step {i + 1}/{steps}  loss {loss:.4f}  "
                f"({loss / math.log(2):.3f} bits)  {time.perf_counter() - start:.0f}s"
            )
        if args.eval_every and (i + 1) % args.eval_every == 0 and i + 1 < steps:
            log(f"[{name}] step {i + 1}: held-out (first 64 windows) {check(state.params):.4f} bpb")
    jax.block_until_ready(state)
    return state, time.perf_counter() - start, time.process_time() - cpu_start


def held_out_bpb(apply_fn, params, windows, args) -> float:
    """Held-out bits per byte over ``windows``."""
    r = jz.train.evaluate(apply_fn, params, windows, batch_size=args.eval_batch_size)
    return r["bits_per_token"]


def main(argv: list[str] | None = None, log=print) -> dict[str, Any]:
    """Runs the experiment; returns (and writes) the results."""
    args = parse_args(argv)
    splits = common.load_text_splits(args)
    windows = jz.data.eval_windows(
        splits.held_out, seq_len=args.seq_len, name=f"{splits.name}/held_out"
    )
    windows = common.first_windows(windows, args.eval_limit)
    log(f"{splits}; scoring {len(windows)} held-out windows of {args.seq_len} bytes")
    probe = jz.data.TokenWindows(
        x=windows.x[:64], y=windows.y[:64], vocab_size=windows.vocab_size, name="probe"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    data_key = jax.random.key(args.seed)
    init_key = jax.random.key(args.seed + 2)
    example = np.zeros((1, args.seq_len), np.int32)

    teacher = make_model(args)
    teacher_apply = jz.models.linen_apply_fn(teacher)
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.teacher is not None:
        like = jz.models.init_params(teacher, init_key, example)
        teacher_params = jz.train.load_params(args.teacher, like)
        results["teacher"] = {"params_file": str(args.teacher)}
    else:
        params = jz.models.init_params(teacher, init_key, example)
        tx = optimizer(args, args.steps)
        step = jz.train.make_train_step(teacher_apply, tx)
        state = jz.train.init_state(params, tx)
        state, seconds, cpu = run_steps(
            "teacher",
            step,
            state,
            splits.train,
            args,
            data_key,
            args.steps,
            lambda p: held_out_bpb(teacher_apply, p, probe, args),
            log,
        )
        teacher_params = state.params
        jz.train.save_params(args.out / "teacher.npz", teacher_params)
        results["teacher"] = {
            "params_file": str(args.out / "teacher.npz"),
            "steps": args.steps,
            "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu, 1),
        }
    results["teacher"]["params"] = jz.models.param_count(teacher_params)
    results["teacher"]["held_out_bpb"] = held_out_bpb(teacher_apply, teacher_params, windows, args)
    results["held_out"] = {"windows": len(windows), "bytes_scored": int(windows.y.size)}
    log(f"teacher: held-out {results['teacher']['held_out_bpb']:.4f} bits per byte")

    if args.distill:
        results["students"] = distill(
            args, splits, windows, probe, teacher_params, teacher_apply, log
        )
    atomic_write_json(args.out / "lm_train.json", results)
    log(f"wrote {args.out / 'lm_train.json'}")
    return results


def distill(args, splits, windows, probe, teacher_params, teacher_apply, log) -> dict[str, Any]:
    """Trains the 2-layer student on labels and distilled, same init and batches.

    All three models are scored on the first ``--student-eval-limit`` held-out
    windows (all of them for 0).
    """
    windows = common.first_windows(windows, args.student_eval_limit)
    student = make_model(args, num_layers=STUDENT_LAYERS)
    apply_fn = jz.models.linen_apply_fn(student)
    example = np.zeros((1, args.seq_len), np.int32)
    params = jz.models.init_params(student, jax.random.key(args.seed + 3), example)
    if args.student_init != "random":
        params = teacher_init(params, teacher_params, args.student_init)
    data_key = jax.random.fold_in(jax.random.key(args.seed), 1)
    tx = optimizer(args, args.student_steps)
    out: dict[str, Any] = {
        "params": jz.models.param_count(params),
        "steps": args.student_steps,
        "init": args.student_init,
        "temperature": args.temperature,
        "alpha": args.alpha,
        "windows_scored": len(windows),
    }

    def check(p):
        return held_out_bpb(apply_fn, p, probe, args)

    def train_student(name: str, step) -> None:  # the same steps, data and init for both
        state, seconds, cpu = run_steps(
            name,
            step,
            jz.train.init_state(params, tx),
            splits.train,
            args,
            data_key,
            args.student_steps,
            check,
            log,
        )
        out[name] = {
            "held_out_bpb": held_out_bpb(apply_fn, state.params, windows, args),
            "train_seconds": round(seconds, 1),
            "train_cpu_seconds": round(cpu, 1),
        }
        jz.train.save_params(args.out / f"student_{name}.npz", state.params)

    train_student("labels", jz.train.make_train_step(apply_fn, tx))
    loss = jz.distill.kd_loss(temperature=args.temperature, alpha=args.alpha)
    kd_step = jz.distill.make_train_step(apply_fn, teacher_apply, tx, loss=loss)
    train_student("distilled", lambda state, batch, key: kd_step(state, teacher_params, batch, key))
    teacher_bpb = held_out_bpb(teacher_apply, teacher_params, windows, args)
    out["teacher_held_out_bpb"] = teacher_bpb
    gap = out["labels"]["held_out_bpb"] - teacher_bpb
    closed = out["labels"]["held_out_bpb"] - out["distilled"]["held_out_bpb"]
    out["gap_closed"] = closed / gap if gap > 0 else None
    log(
        f"students: labels {out['labels']['held_out_bpb']:.4f}, distilled "
        f"{out['distilled']['held_out_bpb']:.4f}, teacher {teacher_bpb:.4f} bits per byte; "
        f"gap closed {out['gap_closed'] if gap > 0 else 'n/a (no gap)'}"
    )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
