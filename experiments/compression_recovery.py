"""Recovering a pruned + quantized LeNet-300-100: fine-tuning on labels vs distilling from dense.

Starting from dense LeNet-300-100 params (``--dense-params``, by default on
MNIST ``runs/lenet300100_mnist/params.npz`` from ``jaxzip run
experiments/lenet300100_mnist.toml`` when it exists; otherwise a dense model is
trained here for ``--dense-epochs`` epochs and saved as ``dense_params.npz`` in
``--out``), the script

1. prunes the kernels by magnitude to ``--sparsity`` (``--allocation``: one
   global threshold or the same sparsity per layer), biases untouched;
2. quantizes the kernels with ``--bits``-bit symmetric per-output-channel fake
   quantization (``jaxzip.quant.fake_quant_params``; a pruned zero stays zero);
   the model that is evaluated is always ``compress(params) =
   fake_quant(apply_mask(params, mask))``: this is the "damaged" model;
3. fine-tunes it for ``--epochs`` epochs two ways, from the same start
   (the masked dense params) with the same optimizer (SGD with Nesterov
   momentum, cosine decay, ``keep_masked(mask)`` so pruned weights stay exactly
   zero), the same batches and the same ``student_transform=compress`` (so the
   forward pass sees the compressed weights, with straight-through gradients):

   (a) **labels only**: ``kd_loss(temperature=1, alpha=0)``, which is plain
       cross-entropy against the labels;
   (b) **distillation** from the dense model: ``kd_loss(temperature=T,
       alpha)`` with the dense params as the teacher.

   Both arms train in one :func:`jaxzip.distill.make_vmapped_train_step` run
   (per-arm ``temperature`` and ``alpha``), which trains each exactly as its own
   :func:`jaxzip.distill.make_train_step` would, with one compile.

Reports validation and test error of the dense, damaged, (a) and (b) models in
``compression_recovery.json`` (in ``--out``) and as a table on stdout; the test
set is used only for that final report.

  JAXZIP_DATA_DIR=../shared/data python experiments/compression_recovery.py    # ~2 min, 2 CPUs
  python experiments/compression_recovery.py --dataset digits --epochs 1 --dense-epochs 1 \\
      --widths 32 16                                                         # seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

DEFAULT_DENSE = Path("runs/lenet300100_mnist/params.npz")
KERNELS = r".*/kernel"
ALLOCATIONS = {"global": jz.prune.Global(), "uniform": jz.prune.Uniform()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = common.parser(
        "Prune + quantize LeNet-300-100, then recover by fine-tuning on labels "
        "or by distilling from the dense model."
    )
    common.add_data_options(p)
    p.add_argument(
        "--dense-params",
        type=Path,
        default=None,
        help=f"dense params file (default on mnist: {DEFAULT_DENSE} if it exists, else a "
        "dense model is trained)",
    )
    p.add_argument("--widths", type=int, nargs="+", default=[300, 100], help="MLP hidden widths")
    p.add_argument("--dense-epochs", type=int, default=5, help="when training the dense model")
    p.add_argument("--sparsity", type=float, default=0.95, help="fraction of kernel weights pruned")
    p.add_argument("--allocation", choices=tuple(ALLOCATIONS), default="global")
    p.add_argument("--bits", type=int, default=4, help="kernel bit width (2 to 8)")
    p.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs of each arm")
    p.add_argument("--learning-rate", type=float, default=0.01, help="peak SGD rate, both arms")
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--alpha", type=float, default=0.9, help="weight of the soft (T^2 KL) term")
    common.add_run_options(p, out="runs/compression_recovery")
    args = p.parse_args(argv)
    common.require_at_least(p, args, 1, "dense_epochs", "epochs", "widths")
    common.require_fraction(p, args, "sparsity", one=False)
    common.require_fraction(p, args, "alpha")
    if not 2 <= args.bits <= 8:
        p.error(f"--bits must be in [2, 8], got {args.bits}")
    common.require_positive(p, args, "learning_rate", "temperature")
    common.require_file(p, args, "dense_params")
    return args


def errors_of(
    apply_fn: jz.models.ApplyFn, params: Any, splits: jz.data.Splits, batch_size: int
) -> dict[str, Any]:
    """Validation and test error rates, and the test error count (one eval batch shape)."""
    val = jz.train.evaluate(apply_fn, params, splits.val, batch_size=batch_size)
    test = jz.train.evaluate(apply_fn, params, splits.test, batch_size=batch_size)
    return {"val_error": val["error"], "test_error": test["error"], "test_errors": test["errors"]}


def dense_params_of(args: argparse.Namespace, splits: jz.data.Splits, model: Any) -> tuple:
    """The apply function, the dense params and where they came from (loaded, or trained)."""
    return common.load_or_fit(
        common.default_file(args.dense_params, args, DEFAULT_DENSE),
        model,
        splits.train,
        key=jax.random.key(args.seed),
        weight_decay=5e-4,
        epochs=args.dense_epochs,
        batch_size=args.batch_size,
        save_to=args.out / "dense_params.npz",
    )


def make_compress(mask: Any, bits: int) -> Callable[[Any], Any]:
    """``params -> fake_quant(apply_mask(params, mask))`` on the kernels."""
    rules = [(KERNELS, jz.quant.QuantSpec(bits=bits, axes=(-1,)))]

    def compress(params: Any) -> Any:
        return jz.quant.fake_quant_params(jz.prune.apply_mask(params, mask), rules)

    return jax.jit(compress)  # jitted for the evaluations; inlined inside the train step


def kernel_sparsity(params: Any) -> float:
    """The fraction of exactly-zero kernel weights."""
    kernels = [leaf for path, leaf in jz.paths.leaves_with_paths(params) if path.endswith("kernel")]
    zeros = sum(int(np.sum(np.asarray(k) == 0)) for k in kernels)
    return zeros / sum(np.size(k) for k in kernels)


ARMS = ("labels_only", "distilled")


def fine_tune(
    args: argparse.Namespace,
    splits: jz.data.Splits,
    apply_fn: jz.models.ApplyFn,
    start: Any,
    dense: Any,
    mask: Any,
    compress: Callable[[Any], Any],
) -> tuple[list[Any], list[list[float]]]:
    """Both recovery arms in one vmapped run; returns their final params and val errors per epoch.

    Arm ``i`` is exactly what ``make_train_step(..., loss=kd_loss(**hparams_i))``
    would train from ``start`` on the same batches (see
    :func:`jaxzip.distill.make_vmapped_train_step`); sharing one compiled step and
    one teacher forward pass per batch just makes it cheaper.
    """
    tx = optax.chain(
        common.cosine_optimizer(
            "sgd",
            args.learning_rate,
            epochs=args.epochs,
            train_size=len(splits.train),
            batch_size=args.batch_size,
        ),
        jz.prune.keep_masked(mask),
    )
    step = jz.distill.make_vmapped_train_step(
        apply_fn, apply_fn, tx, make_loss=jz.distill.kd_loss, student_transform=compress
    )
    hparams = {  # labels only: alpha = 0 leaves plain cross-entropy; distilled: T, alpha
        "temperature": np.array([1.0, args.temperature], np.float32),
        "alpha": np.array([0.0, args.alpha], np.float32),
    }
    key = jax.random.key(args.seed)
    states, history = common.distill_stacked(
        step,
        jz.distill.stack_states([jz.train.init_state(start, tx)] * len(ARMS)),
        dense,
        splits.train,
        hparams=hparams,
        keys=jax.random.split(jax.random.fold_in(key, 2), len(ARMS)),
        key=jax.random.fold_in(key, 3),
        epochs=args.epochs,
        batch_size=args.batch_size,
        val_errors=lambda params: jz.train.evaluate(
            apply_fn, compress(params), splits.val, batch_size=args.batch_size
        )["error"],
        describe=lambda errors: (
            "val error " + ", ".join(f"{n} {e:.4f}" for n, e in zip(ARMS, errors, strict=True))
        ),
    )
    return [s.params for s in jz.distill.unstack_states(states)], history


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole experiment; returns what goes to ``compression_recovery.json``."""
    total_start = time.perf_counter()
    splits = common.load_splits(args)
    args.out.mkdir(parents=True, exist_ok=True)
    model = jz.models.MLP(tuple(args.widths), num_classes=splits.train.num_classes)
    apply_fn, dense, source = dense_params_of(args, splits, model)
    mask = jz.prune.magnitude_mask(
        dense, sparsity=args.sparsity, where=KERNELS, allocation=ALLOCATIONS[args.allocation]
    )
    compress = make_compress(mask, args.bits)
    start = jz.prune.apply_mask(dense, mask)
    eval_size = args.batch_size
    models: dict[str, Any] = {
        "dense": errors_of(apply_fn, dense, splits, eval_size),
        "damaged": errors_of(apply_fn, compress(start), splits, eval_size),
    }
    models["dense"]["source"] = source
    models["damaged"]["kernel_sparsity"] = kernel_sparsity(compress(start))
    tune_start = time.perf_counter()
    finals, histories = fine_tune(args, splits, apply_fn, start, dense, mask, compress)
    for name, params, history in zip(ARMS, finals, histories, strict=True):
        final = compress(params)
        models[name] = errors_of(apply_fn, final, splits, eval_size)
        models[name]["val_error_history"] = history
        models[name]["kernel_sparsity"] = kernel_sparsity(final)
    return common.record(
        args,
        splits,
        experiment="compression_recovery",
        models=models,
        fine_tune_seconds=time.perf_counter() - tune_start,
        wall_seconds=time.perf_counter() - total_start,
    )


def table(results: dict[str, Any]) -> str:
    """The results as an aligned text table (errors in percent)."""
    s = results["settings"]
    rows = [
        [name, f"{100 * r['val_error']:.2f}", f"{100 * r['test_error']:.2f}", r["test_errors"]]
        for name, r in ((name, results["models"][name]) for name in ("dense", "damaged", *ARMS))
    ]
    title = (
        f"MLP{tuple(s['widths'])} on {results['dataset']}: {s['sparsity']:.0%} of kernel "
        f"weights pruned ({s['allocation']}), {s['bits']}-bit per-channel kernels"
    )
    return (
        title + "\n" + common.format_table(["model", "val_err%", "test_err%", "test_errors"], rows)
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment, writes ``compression_recovery.json`` and prints the table."""
    return common.main(
        argv, parse_args, run, lambda r: ({"compression_recovery.json": r}, table(r))
    )


if __name__ == "__main__":
    main()
