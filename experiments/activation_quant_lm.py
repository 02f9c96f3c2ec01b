"""W8A8, SmoothQuant and AWQ on the byte-level KJV language model: held-out bits per byte.

Loads (``--teacher PATH``, params saved by ``experiments/lm_train.py``) or
trains (Adam, warm-up + cosine, ``--steps``) :class:`jaxzip.models.Transformer`
of ``--size``, then scores on the held-out KJV windows (bits per byte):

* ``fp32``: the float model;
* ``w8a8_dynamic`` / ``w8a8_static``: :func:`jaxzip.quant.w8a8`, int8 kernels
  per output channel and int8 activations per token (dynamic) or per tensor
  (static, absmax over the calibration windows), integer matmuls;
* ``smoothquant_w8a8_static`` / ``_dynamic``: :func:`jaxzip.quant.smooth_quant`
  (``--alpha``) then W8A8 with the scales as ``in_scales``;
* ``w4_rtn`` / ``w4_awq``: weight-only ``--awq-bits`` round-to-nearest per
  output channel (groups of ``--group-size`` inputs), without and with
  :func:`jaxzip.quant.awq` scales (activations float).

Calibration windows (``--calib-windows`` of ``--seq-len`` bytes, in batches of
8) come from the training text. Results go to ``--out/activation_quant_lm.json``.

  JAXZIP_DATA_DIR=../shared/data python experiments/activation_quant_lm.py --out runs/aq
  python experiments/activation_quant_lm.py --size tiny --steps 30 --eval-limit 20 --out OUT
"""

from __future__ import annotations

import argparse
import re
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="directory holding kjv.txt.gz")
    p.add_argument("--size", choices=tuple(SIZES), default="reference")
    p.add_argument("--teacher", type=Path, default=None, help="params file; else train")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--calib-windows", type=int, default=64)
    p.add_argument("--alpha", type=float, default=0.5, help="SmoothQuant migration strength")
    p.add_argument("--awq-bits", type=int, default=4)
    p.add_argument("--group-size", type=int, default=32)
    p.add_argument("--eval-limit", type=int, default=0, help="held-out windows (0: all)")
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/activation_quant_lm"))
    args = p.parse_args(argv)
    common.require_at_least(
        p, args, 1, "steps", "batch_size", "seq_len", "calib_windows", "eval_batch_size"
    )
    common.require_at_least(p, args, 0, "eval_limit")
    return args


def train(model, apply_fn, splits, args, log) -> Any:
    """Trains the model from scratch: Adam, clipping at 1, warm-up + cosine."""
    params = jz.models.init_params(
        model, jax.random.key(args.seed + 2), np.zeros((1, args.seq_len), np.int32)
    )
    warmup = max(1, min(100, args.steps // 10))
    sched = optax.warmup_cosine_decay_schedule(0.0, args.learning_rate, warmup, args.steps)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
    step = jz.train.make_train_step(apply_fn, tx)
    state = jz.train.init_state(params, tx)
    data_key, step_key = jax.random.key(args.seed), jax.random.key(args.seed + 1)
    t0 = time.time()
    for i in range(args.steps):
        w = jz.data.sample_windows(
            splits.train,
            seq_len=args.seq_len,
            num=args.batch_size,
            key=jax.random.fold_in(data_key, i),
        )
        state, metrics = step(state, {"x": w.x, "y": w.y}, jax.random.fold_in(step_key, i))
        if (i + 1) % 100 == 0 or i + 1 == args.steps:
            log(f"step {i + 1}: loss {float(metrics['loss']):.4f} ({time.time() - t0:.0f}s)")
    return state.params


def main(argv: list[str] | None = None, log=print) -> dict[str, Any]:
    """Runs the comparison; returns (and writes) the results."""
    args = parse_args(argv)
    splits = jz.data.load_kjv(args.data_dir)
    windows = jz.data.eval_windows(splits.held_out, seq_len=args.seq_len, name="kjv/held_out")
    windows = common.first_windows(windows, args.eval_limit)
    model = jz.models.Transformer(**SIZES[args.size], max_len=args.seq_len)
    apply_fn = jz.models.linen_apply_fn(model)
    if args.teacher is not None:
        like = jz.models.init_params(
            model, jax.random.key(0), np.zeros((1, args.seq_len), np.int32)
        )
        params = jz.train.load_params(args.teacher, like)
    else:
        params = train(model, apply_fn, splits, args, log)
        args.out.mkdir(parents=True, exist_ok=True)
        jz.train.save_params(args.out / "teacher.npz", params)

    calib_w = jz.data.sample_windows(
        splits.train,
        seq_len=args.seq_len,
        num=args.calib_windows,
        key=jax.random.key(args.seed + 100),
    )
    calib = [np.asarray(calib_w.x[i : i + 8]) for i in range(0, args.calib_windows, 8)]

    def model_fn(p, x, *, train=False, key=None):  # defaults, so layouts can trace (p, x)
        return apply_fn(p, x, train=train, key=key)

    layouts = jz.layout.trace_layouts(model_fn, params, calib[0])
    results: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "params": jz.models.param_count(params),
        "kernels": len(layouts),
        "held_out_windows": len(windows),
        "bits_per_byte": {},
    }

    def score(name: str, fn, p) -> None:
        t0 = time.time()
        r = jz.train.evaluate(fn, p, windows, batch_size=args.eval_batch_size)
        results["bits_per_byte"][name] = r["bits_per_token"]
        log(f"{name}: {r['bits_per_token']:.4f} bits per byte ({time.time() - t0:.0f}s)")

    score("fp32", model_fn, params)
    fn, q = jz.quant.w8a8(model_fn, params, layouts=layouts)
    score("w8a8_dynamic", fn, q)
    fn, q = jz.quant.w8a8(model_fn, params, layouts=layouts, calib_batches=calib)
    score("w8a8_static", fn, q)
    sm = jz.quant.smooth_quant(model_fn, params, calib, layouts=layouts, alpha=args.alpha)
    sp, s = sm.params, sm.in_scales
    results["smoothquant_folded"] = len(sm.folded)
    fn, q = jz.quant.w8a8(model_fn, sp, layouts=layouts, calib_batches=calib, in_scales=s)
    score("smoothquant_w8a8_static", fn, q)
    fn, q = jz.quant.w8a8(model_fn, sp, layouts=layouts, in_scales=s)
    score("smoothquant_w8a8_dynamic", fn, q)

    r = jz.quant.awq(
        model_fn, params, calib, layouts=layouts, bits=args.awq_bits, group_size=args.group_size
    )
    rules = [(re.escape(p), spec) for p, spec in r.spec.items()]
    plain = jz.quant.make_scaled_apply(model_fn, layouts=layouts)
    score("w4_rtn", plain, jz.quant.quantize_params(params, rules))
    scaled = jz.quant.make_scaled_apply(model_fn, layouts=layouts, in_scales=r.in_scales)
    score("w4_awq", scaled, jz.quant.quantize_params(r.params, rules))
    results["awq_alpha"] = r.alpha
    results["awq_folded"] = len(r.folded)
    results["awq_layer_error_ratio"] = {p: r.error[p] / r.rtn_error[p] for p in r.error}
    fp = results["bits_per_byte"]["fp32"]
    results["relative_increase"] = {k: v / fp - 1 for k, v in results["bits_per_byte"].items()}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "activation_quant_lm.json", results)
    log(f"wrote {args.out / 'activation_quant_lm.json'}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
