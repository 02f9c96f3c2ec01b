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
from jaxzip._io import atomic_write_json

DEFAULT_DENSE = Path("runs/lenet300100_mnist/params.npz")
KERNELS = r".*/kernel"
ALLOCATIONS = {"global": jz.prune.Global(), "uniform": jz.prune.Uniform()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(
        description="Prune + quantize LeNet-300-100, then recover by fine-tuning on labels "
        "or by distilling from the dense model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    p.add_argument("--data-dir", default=None, help="directory holding mnist/")
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
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="seed for the split and the shuffles")
    p.add_argument("--out", type=Path, default=Path("runs/compression_recovery"))
    args = p.parse_args(argv)
    for name in ("dense_epochs", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not 0.0 <= args.sparsity < 1.0:
        p.error(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if not 2 <= args.bits <= 8:
        p.error(f"--bits must be in [2, 8], got {args.bits}")
    if min(args.widths) < 1:
        p.error(f"--widths must be positive, got {args.widths}")
    if min(args.learning_rate, args.temperature) <= 0:
        p.error("--learning-rate and --temperature must be > 0")
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha must be in [0, 1], got {args.alpha}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    if args.dense_params is not None and not args.dense_params.is_file():
        p.error(f"--dense-params: no file at {str(args.dense_params)!r}")
    return args


def errors_of(
    apply_fn: jz.models.ApplyFn, params: Any, splits: jz.data.Splits, batch_size: int
) -> dict[str, Any]:
    """Validation and test error rates, and the test error count (one eval batch shape)."""
    val = jz.train.evaluate(apply_fn, params, splits.val, batch_size=batch_size)
    test = jz.train.evaluate(apply_fn, params, splits.test, batch_size=batch_size)
    return {"val_error": val["error"], "test_error": test["error"], "test_errors": test["errors"]}


def dense_params_of(args: argparse.Namespace, splits: jz.data.Splits, apply_fn, model) -> tuple:
    """The dense params and where they came from (loaded, or trained here)."""
    init = jz.models.init_params(model, jax.random.key(args.seed), splits.train.x[:1])
    path = args.dense_params
    if path is None and args.dataset == "mnist" and DEFAULT_DENSE.is_file():
        path = DEFAULT_DENSE
    if path is not None:
        return jz.train.load_params(path, init), str(path)
    steps = args.dense_epochs * (len(splits.train) // args.batch_size)
    tx = jz.train.make_optimizer(
        name="sgd", learning_rate=0.1, schedule="cosine", total_steps=steps, weight_decay=5e-4
    )
    state, _ = jz.train.fit(
        apply_fn,
        init,
        tx,
        splits.train,
        epochs=args.dense_epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=False,
    )
    jz.train.save_params(args.out / "dense_params.npz", state.params)
    return state.params, f"trained here for {args.dense_epochs} epochs"


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
    steps = args.epochs * (len(splits.train) // args.batch_size)
    tx = optax.chain(
        jz.train.make_optimizer(
            name="sgd", learning_rate=args.learning_rate, schedule="cosine", total_steps=steps
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
    states = jz.distill.stack_states([jz.train.init_state(start, tx)] * len(ARMS))
    keys = jax.random.split(jax.random.key(args.seed + 1), len(ARMS))
    history: list[list[float]] = [[] for _ in ARMS]
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        for batch in jz.data.batches(
            splits.train, args.batch_size, seed=args.seed + 1, epoch=epoch, drop_last=True
        ):
            states, _ = step(states, dense, batch, keys, hparams)
        for i, s in enumerate(jz.distill.unstack_states(states)):
            val = jz.train.evaluate(
                apply_fn, compress(s.params), splits.val, batch_size=args.batch_size
            )
            history[i].append(val["error"])
        print(
            f"epoch {epoch + 1}/{args.epochs}: val error "
            + ", ".join(f"{name} {h[-1]:.4f}" for name, h in zip(ARMS, history, strict=True))
            + f" ({time.perf_counter() - epoch_start:.1f}s)",
            file=sys.stderr,
            flush=True,
        )
    return [s.params for s in jz.distill.unstack_states(states)], history


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole experiment; returns what goes to ``compression_recovery.json``."""
    total_start = time.perf_counter()
    splits = jz.data.load_splits(
        args.dataset, data_dir=args.data_dir, val_fraction=0.1, seed=args.seed, progress=False
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model = jz.models.MLP(tuple(args.widths), num_classes=splits.train.num_classes)
    apply_fn = jz.models.linen_apply_fn(model)
    dense, source = dense_params_of(args, splits, apply_fn, model)
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
    return {
        "experiment": "compression_recovery",
        "dataset": args.dataset,
        "val_size": len(splits.val),
        "test_size": len(splits.test),
        "models": models,
        "fine_tune_seconds": time.perf_counter() - tune_start,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "wall_seconds": time.perf_counter() - total_start,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }


def table(results: dict[str, Any]) -> str:
    """The results as an aligned text table (errors in percent)."""
    s = results["settings"]
    lines = [
        f"MLP{tuple(s['widths'])} on {results['dataset']}: {s['sparsity']:.0%} of kernel "
        f"weights pruned ({s['allocation']}), {s['bits']}-bit per-channel kernels",
        "model        val_err%  test_err%  test_errors",
        "-----------  --------  ---------  -----------",
    ]
    for name in ("dense", "damaged", "labels_only", "distilled"):
        r = results["models"][name]
        lines.append(
            f"{name:<11}  {100 * r['val_error']:>8.2f}  {100 * r['test_error']:>9.2f}  "
            f"{r['test_errors']:>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the experiment, writes ``compression_recovery.json`` and prints the table."""
    args = parse_args(argv)
    results = run(args)
    atomic_write_json(args.out / "compression_recovery.json", results)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
