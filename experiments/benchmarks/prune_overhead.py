"""Overhead of ``gradual_pruning`` in a jitted train step, against the same dense step.

Trains an MLP on random data with ``optax.adamw`` alone and with
``optax.chain(optax.adamw(...), jz.prune.gradual_pruning(...))`` (mask recomputed
every ``--update-every`` steps), and prints the median step time of each and the
ratio measured in this run (steps alternate, after an untimed warm-up).
Target: ratio <= 1.10.

Run: ``python experiments/benchmarks/prune_overhead.py`` (defaults: LeNet-300-100
widths, batch 128, 300 timed steps); ``--steps 50 --batch 32`` for a quick check.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxzip.prune as jp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


def _init(widths: list[int], seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"Dense_{i}": {
            "kernel": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), jnp.float32),
            "bias": jnp.zeros(b, jnp.float32),
        }
        for i, (a, b) in enumerate(itertools.pairwise(widths))
    }


def _loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    n = len(params)
    for i in range(n):
        x = x @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
        if i < n - 1:
            x = jax.nn.relu(x)
    return optax.softmax_cross_entropy_with_integer_labels(x, y).mean()


def _make_step(tx: optax.GradientTransformation, x: jax.Array, y: jax.Array):
    @jax.jit
    def step(params, opt_state):
        grads = jax.grad(_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return step


def _time_interleaved(txs: list, params: dict, x, y, steps: int, warmup: int = 20) -> list[float]:
    """Median step time of each transform, alternating steps so load drifts hit all equally.

    The first ``warmup`` steps of each are run untimed; the order within each round
    alternates so neither transform always runs first.
    """
    steps_fns = [_make_step(tx, x, y) for tx in txs]
    states = [
        jax.block_until_ready(f(params, tx.init(params)))
        for f, tx in zip(steps_fns, txs, strict=True)
    ]
    times: list[list[float]] = [[] for _ in txs]
    for r in range(warmup + steps):
        order = range(len(txs)) if r % 2 == 0 else reversed(range(len(txs)))
        for i in order:
            t0 = time.perf_counter()
            states[i] = jax.block_until_ready(steps_fns[i](*states[i]))
            if r >= warmup:
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv: list[str] | None = None) -> None:
    ap = common.parser(__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[784, 300, 100, 10])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--update-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    params = _init(args.widths, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x = jnp.asarray(rng.normal(size=(args.batch, args.widths[0])), jnp.float32)
    y = jnp.asarray(rng.integers(0, args.widths[-1], size=args.batch), jnp.int32)
    dense_tx = optax.adamw(1e-3)
    schedule = jp.polynomial_sparsity(
        0.9, begin_step=0, end_step=args.steps, update_every=args.update_every
    )
    pruned_tx = optax.chain(
        optax.adamw(1e-3),
        jp.gradual_pruning(schedule, update_every=args.update_every, where=r".*/kernel"),
    )
    dense, pruned = _time_interleaved([dense_tx, pruned_tx], params, x, y, args.steps, args.warmup)
    print(f"device: {jax.devices()[0].platform}, widths {args.widths}, batch {args.batch}")
    print(f"dense step median:          {dense * 1e3:.3f} ms")
    print(f"gradual_pruning step median: {pruned * 1e3:.3f} ms")
    print(f"ratio: {pruned / dense:.3f} (target <= 1.10); {args.steps} timed steps each")


if __name__ == "__main__":
    main()
