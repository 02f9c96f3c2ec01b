"""Speed of a global magnitude mask over an N-parameter tree, against copying its bytes.

Builds a tree of several float32 leaves holding ``--params`` parameters in all,
times the jitted ``jz.prune.magnitude_mask(..., allocation=Global())`` and a
NumPy copy of the same bytes, and prints both medians and the ratio measured in
this run. Target: ratio <= 5.

Run: ``python experiments/benchmarks/global_mask.py`` (default 100_000_000
params); ``--params 1_000_000 --repeats 3`` for a quick check.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxzip.prune as jp


def _tree(n: int, leaves: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    weights = rng.random(leaves) + 0.5
    sizes = np.floor(weights / weights.sum() * n).astype(int)
    sizes[-1] += n - sizes.sum()
    out = {}
    for i, size in enumerate(sizes):
        cols = 100 if size % 100 == 0 else 1
        out[f"layer_{i}"] = {
            "kernel": jnp.asarray(rng.standard_normal((size // cols, cols), np.float32))
        }
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=100_000_000)
    ap.add_argument("--leaves", type=int, default=8)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    params = _tree(args.params, args.leaves, args.seed)
    mask_fn = jax.jit(
        lambda p: jp.magnitude_mask(p, sparsity=args.sparsity, allocation=jp.Global())
    )
    mask = jax.block_until_ready(mask_fn(params))  # compile
    kept = sum(int(jnp.sum(m)) for m in jax.tree.leaves(mask))
    assert args.params - kept == round(args.sparsity * args.params), "inexact sparsity"

    mask_times, copy_times = [], []
    host = [np.asarray(x) for x in jax.tree.leaves(params)]
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(mask_fn(params))
        mask_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        copies = [x.copy() for x in host]
        copy_times.append(time.perf_counter() - t0)
        del copies
    m, c = statistics.median(mask_times), statistics.median(copy_times)
    print(f"device: {jax.devices()[0].platform}, params {args.params:,} in {args.leaves} leaves")
    print(f"global magnitude mask median: {m * 1e3:.2f} ms")
    print(f"numpy copy of the same bytes median: {c * 1e3:.2f} ms")
    print(f"ratio: {m / c:.2f} (target <= 5)")


if __name__ == "__main__":
    main()
