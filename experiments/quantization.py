"""Weight quantization of LeNet-300-100 / LeNet-5 on MNIST: PTQ, QAT, binary/ternary, k-means.

Parts (``--parts``, comma-separated; all by default):

* ``ptq``: every kernel quantized after training (biases stay float) at 8/4/2 bits,
  per-tensor / per-channel / per-group (groups of up to ``--group-size`` inputs), with
  absmax, percentile and MSE-searched clipping. Targets: int8 per-channel (absmax)
  <= 0.1 pp worse than float; int4 per-channel with MSE clipping <= 0.5 pp.
* ``qat``: per-channel fake quantization (straight-through gradient) as a param
  transform in the train step, at 4 and 2 bits, ``--epochs`` of fine-tuning from the
  float model; the error reported is the real quantized model's. Target: 4 bits
  <= 0.2 pp.
* ``binary``: binary (XNOR-Net) and ternary (TWN) kernels, post-training and after
  ``--epochs`` of straight-through fine-tuning.
* ``kmeans``: Deep Compression's weight sharing after pruning to ``--sparsity``
  (5-bit codebooks for Dense, 8-bit for Conv), centroid fine-tuning; sparsity must be
  kept exactly. Target: test error <= 1.64% (LeNet-300-100) / 0.80% (LeNet-5).

The float model comes from ``--params`` (a ``params.npz`` from ``jaxzip run
experiments/lenet300100_mnist.toml``) or is trained here for ``--train-epochs``.
A table goes to stdout (progress to stderr); ``quantization.json`` and
``quantization.md`` go to ``--out``.

  JAXZIP_DATA_DIR=../shared/data python experiments/quantization.py \\
      --model lenet_300_100 --params runs/lenet300100_mnist/params.npz
  python experiments/quantization.py --dataset digits --model small_cnn --train-epochs 10 \\
      --epochs 1 --prune-rounds 1 --prune-epochs 1                    # seconds
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import jax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for the imports below
import _common as common
from quantization.common import Context, finetune, format_table, log, sgd
from quantization.kmeans import run_kmeans
from quantization.ptq import run_ptq
from quantization.qat import run_binary, run_qat

PARTS = {"ptq": run_ptq, "qat": run_qat, "binary": run_binary, "kmeans": run_kmeans}
MODELS = ("lenet_300_100", "lenet5", "small_cnn", "mlp")
MLP_WIDTHS = (32,)
"""``--model mlp``: a tiny MLP for quick checks on digits."""
KMEANS_TARGETS = {"lenet_300_100": 0.0164, "lenet5": 0.0080}
"""Deep Compression's published test errors (Han et al. 2016, Table 2 and 3)."""


def _parts(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in PARTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(PARTS)}, got {text!r}"
        )
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = common.parser("Weight quantization experiments: PTQ grid, QAT, binary/ternary, k-means.")
    a = p.add_argument
    a("--model", choices=MODELS, default="lenet_300_100")
    a("--params", type=Path, default=None, help="the float model's params.npz")
    a("--train-epochs", type=int, default=0, help="train the float model here (no --params)")
    a("--parts", type=_parts, default=tuple(PARTS), help="comma-separated parts to run")
    a("--dataset", choices=("mnist", "digits"), default="mnist")
    a("--data-dir", default=None, help="directory holding mnist/ (default: jaxzip's lookup)")
    a("--epochs", type=int, default=3, help="fine-tuning epochs (QAT, binary, centroids)")
    a("--qat-lr", type=float, default=0.01, help="peak SGD learning rate for QAT / binary")
    a("--qat-calibration", choices=("absmax", "percentile", "mse"), default="mse")
    a("--group-size", type=int, default=32, help="largest per-group size (must tile inputs)")
    a("--percentile", type=float, default=99.9, help="the percentile calibration's percentile")
    a("--pruned-params", type=Path, default=None, help="a pruned params.npz for the kmeans part")
    a("--sparsity", type=float, default=0.925, help="kernel sparsity when pruning here")
    a("--prune-rounds", type=int, default=4)
    a("--prune-epochs", type=int, default=2, help="retraining epochs per pruning round")
    a("--prune-lr", type=float, default=0.02, help="peak SGD learning rate when retraining")
    a("--dense-bits", type=int, default=5, help="k-means index bits for Dense kernels")
    a("--conv-bits", type=int, default=8, help="k-means index bits for Conv kernels")
    a("--kmeans-lr", type=float, default=1e-4, help="Adam learning rate for the centroids")
    a("--seed", type=int, default=0, help="seed for the split, init and shuffles")
    a("--out", type=Path, default=None, help="output directory (default runs/quantization_<model>)")
    a("--progress", action="store_true", help="show training progress bars")
    args = p.parse_args(argv)
    if args.params is None and args.train_epochs < 1:
        p.error("give --params PATH, or --train-epochs N (>= 1) to train the float model here")
    common.require_at_least(p, args, 1, "epochs", "prune_rounds", "group_size")
    common.require_at_least(p, args, 0, "seed", "prune_epochs", "train_epochs")
    common.require_fraction(p, args, "sparsity", one=False)
    for name in ("dense_bits", "conv_bits"):
        if not 1 <= getattr(args, name) <= 8:
            p.error(f"--{name.replace('_', '-')} must be in 1..8, got {getattr(args, name)}")
    if args.out is None:
        args.out = Path(f"runs/quantization_{args.model}")
    return args


def make_context(args: argparse.Namespace) -> Context:
    """Loads the data and the float model (or trains it for ``--train-epochs``)."""
    data_dir = args.data_dir if args.dataset != "digits" else None
    splits = jz.data.load_splits(
        args.dataset, data_dir=data_dir, val_fraction=0.1, seed=args.seed, progress=False
    )
    extra = {"widths": MLP_WIDTHS} if args.model == "mlp" else {}
    model = jz.config.make_model(args.model, num_classes=splits.train.num_classes, **extra)
    apply_fn = jz.models.linen_apply_fn(model)
    # jitted: one compilation instead of many small eager ones
    init = jax.jit(lambda key: jz.models.init_params(model, key, splits.train.x[:1]))
    params = init(jax.random.key(args.seed))
    augment = jz.train.RandomShift(pixels=2) if args.dataset == "mnist" else None
    ctx = Context(
        args=args, splits=splits, apply_fn=apply_fn, params=params, float_error=1.0, augment=augment
    )
    if args.params is not None:
        params = jz.train.load_params(args.params, params)
    else:
        log(f"training the float {args.model} for {args.train_epochs} epoch(s)")
        tx = sgd(ctx, 0.1, args.train_epochs)
        params = finetune(ctx, params, tx, epochs=args.train_epochs)
    error = float(jz.train.evaluate(apply_fn, params, splits.test)["error"])
    return Context(
        args=args,
        splits=splits,
        apply_fn=apply_fn,
        params=params,
        float_error=error,
        augment=augment,
    )


def _find(rows: list[dict[str, Any]], **want: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in want.items())), None)


def check_targets(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The issue's targets that the rows can answer, each with its value and verdict."""
    checks = [
        (
            "int8 per-channel absmax PTQ drop <= 0.1 pp",
            "drop_pp",
            0.1,
            {"part": "ptq", "bits": 8, "granularity": "per-channel", "calibration": "absmax"},
        ),
        (
            "int4 per-channel MSE-clip PTQ drop <= 0.5 pp",
            "drop_pp",
            0.5,
            {"part": "ptq", "bits": 4, "granularity": "per-channel", "calibration": "mse"},
        ),
        ("4-bit per-channel QAT drop <= 0.2 pp", "drop_pp", 0.2, {"part": "qat", "bits": 4}),
    ]
    if model in KMEANS_TARGETS:
        limit = KMEANS_TARGETS[model]
        checks.append(
            (
                f"pruned + k-means + fine-tune test error <= {100 * limit:.2f}%",
                "test_error",
                limit,
                {"part": "kmeans", "method": "+ centroid fine-tune"},
            )
        )
    out = []
    for name, field, limit, want in checks:
        row = _find(rows, **want)
        if row is not None:
            value = row[field]
            out.append({"target": name, "value": value, "limit": limit, "met": value <= limit})
    kmeans_rows = [r for r in rows if r["part"] == "kmeans" and "sparsity_exact" in r]
    if kmeans_rows:
        exact = all(r["sparsity_exact"] for r in kmeans_rows)
        out.append(
            {
                "target": "k-means keeps the pruned sparsity exactly",
                "value": exact,
                "limit": True,
                "met": exact,
            }
        )
    return out


def _shown(target: dict[str, Any]) -> str:
    value = target["value"]
    if isinstance(value, bool):
        return str(value)
    return f"{100 * value:.2f}%" if "test error" in target["target"] else f"{value:+.2f} pp"


def main(argv: list[str] | None = None) -> int:
    """Runs the selected parts; prints the table; writes the JSON and Markdown results."""
    args = parse_args(argv)
    command = "python experiments/quantization.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    start = time.perf_counter()
    ctx = make_context(args)
    log(f"float {args.model} on {args.dataset}: test error {100 * ctx.float_error:.2f}%")
    rows, timings = [], {}
    for name in args.parts:
        log(f"part {name}:")
        t0 = time.perf_counter()
        rows += PARTS[name](ctx)
        timings[name] = round(time.perf_counter() - t0, 2)
        log(f"part {name} done in {timings[name]:.1f}s")
    targets = check_targets(rows, args.model)
    results = common.record(
        args,
        command=command,
        model=args.model,
        dataset=args.dataset,
        float_test_error=ctx.float_error,
        rows=rows,
        targets=targets,
        seconds_per_part=timings,
        wall_time_s=round(time.perf_counter() - start, 2),
    )
    results["settings"]["parts"] = list(args.parts)
    notes = (
        f"Test error on {args.dataset} test ({len(ctx.splits.test)} images); drop = percentage "
        "points vs float. Kernels quantized, biases float, symmetric grids. percentile = "
        f"{args.percentile}th of |w|; mse = clip ratio searched for the lowest MSE; per-group = "
        f"groups of up to {args.group_size} inputs (a divisor of the layer's inputs)."
    )
    md = f"`{command}`\n\n{notes}\n\n{format_table(rows, ctx.float_error, markdown=True)}\n"
    lines = [format_table(rows, ctx.float_error)]
    lines += [f"{'MET ' if t['met'] else 'MISS'}  {t['target']}: {_shown(t)}" for t in targets]
    common.finish(args.out, {"quantization.json": results, "quantization.md": md}, "\n".join(lines))
    log(f"wrote {args.out / 'quantization.json'} and quantization.md ({results['wall_time_s']}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
