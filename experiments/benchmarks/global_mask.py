"""Speed of a global magnitude mask over an N-parameter tree, against copying its bytes.

Builds a tree of several float32 leaves holding ``--params`` parameters in all,
times the jitted ``jz.prune.magnitude_mask(..., allocation=Global())`` and a
NumPy copy of the same bytes, and prints both medians and the ratio measured in
this run. Target: ratio <= 5. Mask and copy alternate (their order swapping every
repeat) after one untimed warm-up of each, so load drifts on a shared machine hit
both. ``np.copy`` allocates fresh pages, as the mask's own output does; the time of
``np.copyto`` into buffers allocated once is printed as well (not the target).

Run: ``python experiments/benchmarks/global_mask.py`` (default 100_000_000
params); ``--params 1_000_000 --repeats 3`` for a quick check.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxzip.prune as jp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


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
    ap = common.parser(__doc__.splitlines()[0])
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

    host = [np.asarray(x) for x in jax.tree.leaves(params)]
    reused = [np.empty_like(x) for x in host]
    jax.block_until_ready(mask_fn(params))  # warm-up
    del mask
    mask_times, copy_times, copyto_times = [], [], []

    def time_mask() -> None:
        t0 = time.perf_counter()
        jax.block_until_ready(mask_fn(params))
        mask_times.append(time.perf_counter() - t0)

    def time_copy() -> None:
        t0 = time.perf_counter()
        copies = [x.copy() for x in host]
        copy_times.append(time.perf_counter() - t0)
        del copies
        t0 = time.perf_counter()
        for dst, x in zip(reused, host, strict=True):
            np.copyto(dst, x)
        copyto_times.append(time.perf_counter() - t0)

    time_copy()  # warm-up
    copy_times.clear()
    copyto_times.clear()
    for i in range(args.repeats):
        for fn in (time_mask, time_copy) if i % 2 == 0 else (time_copy, time_mask):
            fn()
    m, c = statistics.median(mask_times), statistics.median(copy_times)
    print(f"device: {jax.devices()[0].platform}, params {args.params:,} in {args.leaves} leaves")
    print(f"global magnitude mask median: {m * 1e3:.2f} ms")
    print(f"numpy copy of the same bytes median: {c * 1e3:.2f} ms")
    print(f"ratio: {m / c:.2f} (target <= 5)")
    c2 = statistics.median(copyto_times)
    print(f"(np.copyto into reused buffers median: {c2 * 1e3:.2f} ms; mask / copyto: {m / c2:.2f})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak resident memory of this process: {peak:.2f} GiB; repeats: {args.repeats}")


if __name__ == "__main__":
    main()
