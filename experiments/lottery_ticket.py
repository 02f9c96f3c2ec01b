"""The lottery-ticket experiment (Frankle & Carbin, ICLR 2019) on LeNet-300-100 / MNIST.

Iterative magnitude pruning: train; prune 20% of each hidden layer's remaining
weights and 10% of the output layer's (the paper's rates); then either

* rewind the surviving weights to their initial values (the "winning ticket"), or
* re-initialize them randomly with the same mask (the control),

and retrain with the pruned weights held at zero (``jaxzip.prune.keep_masked``).
The ticket's next round prunes from the ticket's trained weights. Test accuracy
against the fraction of weights remaining goes to ``lottery_ticket.png`` and
``lottery_ticket.json`` in ``--out``; a table goes to stdout.

  JAXZIP_DATA_DIR=../shared/data python experiments/lottery_ticket.py          # ~5 min, 2 CPUs
  python experiments/lottery_ticket.py --dataset digits --rounds 2 --epochs 1  # seconds

Training is Adam at 1.2e-3 with batches of 60, as in the paper, for ``--epochs``
epochs per round (the paper trains 50K iterations; a few epochs show the same
ordering at this scale). Biases are never pruned; they are rewound with the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import optax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

KERNELS = r".*/kernel"
OUTPUT_LAYER = "Dense_2/kernel"
"""LeNet-300-100's classifier, pruned at half the hidden layers' rate as in the paper."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    p = common.parser(
        "Lottery tickets on LeNet-300-100: iterative magnitude pruning with "
        "rewinding to initialization vs random re-initialization."
    )
    common.add_data_options(p)
    p.add_argument("--rounds", type=int, default=7, help="pruning rounds after the dense run")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per round")
    p.add_argument(
        "--rate",
        type=float,
        default=0.2,
        help="fraction of the remaining hidden-layer weights pruned per round "
        "(the output layer: half of it)",
    )
    p.add_argument("--learning-rate", type=float, default=1.2e-3, help="Adam's learning rate")
    common.add_run_options(p, out="runs/lottery_ticket", batch_size=60, progress=True)
    args = p.parse_args(argv)
    common.require_at_least(p, args, 1, "rounds", "epochs")
    common.require_fraction(p, args, "rate", zero=False, one=False)
    return args


def round_allocation(rate: float, r: int) -> jz.prune.Explicit:
    """Round ``r``'s cumulative per-layer sparsities: ``1 - (1 - rate)^r`` (output: rate / 2)."""
    return jz.prune.Explicit(
        [(OUTPUT_LAYER, 1.0 - (1.0 - rate / 2) ** r), (KERNELS, 1.0 - (1.0 - rate) ** r)]
    )


def train(ctx: dict[str, Any], params: Any, mask: Any, key: jax.Array) -> dict[str, Any]:
    """Trains masked ``params`` for ``--epochs``; returns the trained params and accuracies."""
    args, splits, apply_fn = ctx["args"], ctx["splits"], ctx["apply_fn"]
    # copy the mask: the train step donates its state, the mask's buffers included
    tx = optax.chain(
        optax.adam(args.learning_rate), jz.prune.keep_masked(jax.tree.map(lambda m: m.copy(), mask))
    )
    state, history = jz.train.fit(
        apply_fn,
        jz.prune.apply_mask(params, mask),
        tx,
        splits.train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        key=key,
        val_ds=splits.val,
        progress=args.progress,
    )
    test = jz.train.evaluate(apply_fn, state.params, splits.test)
    return {
        "params": state.params,
        "test_accuracy": float(test["accuracy"]),
        "val_accuracy": [float(h["val_accuracy"]) for h in history],
    }


def remaining(mask: Any) -> dict[str, float]:
    """Fractions of the kernel weights and of all parameters the mask keeps."""
    kernels = jz.prune.mask_stats(mask, where=KERNELS)
    overall = jz.prune.mask_stats(mask)
    return {
        "kernels": kernels["nonzeros"] / kernels["size"],
        "overall": overall["nonzeros"] / overall["size"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole experiment; returns what goes to ``lottery_ticket.json``."""
    splits = common.load_splits(args)
    model = jz.models.lenet_300_100(num_classes=splits.train.num_classes)
    key = jax.random.key(args.seed)
    init = jax.jit(lambda k: jz.models.init_params(model, k, splits.train.x[:1]))
    ctx = {"args": args, "splits": splits, "apply_fn": jz.models.linen_apply_fn(model)}
    params0 = init(key)
    mask = jax.tree.map(lambda p: jax.numpy.ones(p.shape, bool), params0)

    start = time.perf_counter()
    train_key = jax.random.fold_in(key, 0)  # training; fold_in(key, r >= 1): round r's re-init
    dense = train(ctx, params0, mask, train_key)
    rows = [{"round": 0, "remaining": remaining(mask), "ticket": dense, "random": dense}]
    log(rows[-1], time.perf_counter() - start)
    trained = dense["params"]
    for r in range(1, args.rounds + 1):
        start = time.perf_counter()
        new = jz.prune.magnitude_mask(
            jz.prune.apply_mask(trained, mask),
            where=KERNELS,
            allocation=round_allocation(args.rate, r),
        )
        mask = jz.prune.mask_and(mask, new)
        round_key = jax.random.fold_in(train_key, r)
        ticket = train(ctx, jz.prune.rewind(trained, params0, mask), mask, round_key)
        reinit = train(ctx, init(jax.random.fold_in(key, r)), mask, round_key)
        rows.append({"round": r, "remaining": remaining(mask), "ticket": ticket, "random": reinit})
        log(rows[-1], time.perf_counter() - start)
        trained = ticket["params"]
    for row in rows:
        for arm in ("ticket", "random"):
            row[arm] = {k: v for k, v in row[arm].items() if k != "params"}
    return common.record(
        args, experiment="lottery_ticket", dataset=args.dataset, model="lenet_300_100", rounds=rows
    )


def log(row: dict[str, Any], seconds: float) -> None:
    """One progress line per round on stderr."""
    common.log(
        f"round {row['round']}: {100 * row['remaining']['kernels']:.1f}% of kernel weights "
        f"remain; test accuracy ticket {row['ticket']['test_accuracy']:.4f}, random "
        f"re-init {row['random']['test_accuracy']:.4f} ({seconds:.1f}s)"
    )


def table(results: dict[str, Any]) -> str:
    """The results as an aligned text table."""
    rows = [
        [
            row["round"],
            f"{100 * row['remaining']['kernels']:.1f}%",
            f"{row['ticket']['test_accuracy']:.4f}",
            f"{row['random']['test_accuracy']:.4f}",
        ]
        for row in results["rounds"]
    ]
    return common.format_table(["round", "remaining", "ticket_test_acc", "random_test_acc"], rows)


def plot(results: dict[str, Any]) -> bytes:
    """Test accuracy vs percent of kernel weights remaining, as PNG bytes."""
    import matplotlib.ticker

    rows = results["rounds"]
    x = [100 * r["remaining"]["kernels"] for r in rows]
    fig, ax = common.pyplot().subplots(figsize=(6, 4), dpi=120)
    ax.plot(
        x,
        [100 * r["ticket"]["test_accuracy"] for r in rows],
        "o-",
        label="winning ticket (rewound to init)",
    )
    ax.plot(
        x,
        [100 * r["random"]["test_accuracy"] for r in rows],
        "s--",
        label="random re-initialization",
    )
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{v:.3g}" for v in x])  # each round keeps ~80%: evenly spaced in log
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.invert_xaxis()
    ax.set_xlabel("percent of weights remaining (kernels)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Lottery tickets: LeNet-300-100 on {results['dataset']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return common.png_bytes(fig)


def main(argv: list[str] | None = None) -> int:
    """Runs the experiment and writes the json, the png and the table."""
    args = parse_args(argv)
    results = run(args)
    files = {"lottery_ticket.json": results, "lottery_ticket.png": plot(results)}
    common.finish(args.out, files, table(results))
    print(f"wrote {args.out / 'lottery_ticket.json'}, {args.out / 'lottery_ticket.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
