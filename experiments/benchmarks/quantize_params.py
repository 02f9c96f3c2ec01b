"""Benchmark: int8 per-channel and int4 per-group quantization of an N-parameter tree vs a copy.

Usage:
  python experiments/benchmarks/quantize_params.py [--params 100_000_000] [--repeats 5]

Quantizes a tree of float32 Dense kernels ``(4096, cols)`` holding ``--params``
parameters under ``jax.jit`` (the library does not jit for you) with
``QuantSpec(bits=8, axes=(-1,))`` (one scale per output column) and with
``QuantSpec(bits=4, axes=(-1,), group_size=64)`` (one scale per 64 inputs of a
column), and copies the same bytes with ``numpy.copy``. The three are timed in
turn in each of ``--repeats`` rounds (so load from other jobs falls on all of
them alike); prints the median times and the ratios to the copy (issue 17's
target: int8 <= 3x, int4 per group no slower than that). Compilation is
excluded (one warm-up call). Needs about 3x the tree's bytes of memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import jax
import numpy as np

import jaxzip.quant as jzq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


def _tree(n: int, rows: int = 4096) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    cols_total = max(1, n // rows)
    per_leaf = max(1, min(cols_total, 4096))
    tree, i = {}, 0
    while cols_total > 0:
        c = min(per_leaf, cols_total)
        tree[f"Dense_{i}"] = {"kernel": rng.standard_normal((rows, c), dtype=np.float32)}
        cols_total -= c
        i += 1
    return tree


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=lambda s: int(s.replace("_", "")), default=100_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    host = _tree(args.params)
    n = sum(a.size for a in jax.tree.leaves(host))
    params = jax.device_put(host)
    specs = {
        "int8 per-channel": jzq.QuantSpec(bits=8, axes=(-1,)),
        "int4 g64": jzq.QuantSpec(bits=4, axes=(-1,), group_size=64),
    }
    runs = {}
    for name, spec in specs.items():
        quant = jax.jit(lambda p, spec=spec: jzq.quantize_params(p, [(r".*/kernel", spec)]))
        runs[name] = lambda quant=quant: jax.block_until_ready(quant(params))

    def run_copy() -> None:
        for a in jax.tree.leaves(host):
            np.copy(a)

    runs["numpy copy"] = run_copy
    for fn in runs.values():
        fn()  # compile / warm up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(common.median_seconds(fn, 1))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"params: {n:,} float32 ({4 * n / 1e6:.1f} MB) on {jax.devices()[0].platform}")
    for name in specs:
        print(f"quantize_params {name} (jit): median {med[name] * 1e6:.1f} us")
    print(f"numpy copy of the same bytes: median {med['numpy copy'] * 1e6:.1f} us")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tc = med["numpy copy"]
    int8, int4 = med["int8 per-channel"] / tc, med["int4 g64"] / tc
    print(f"ratio int4 g64: {int4:.2f}x the copy, {int4 / int8:.2f}x int8 (target <= 3x)")
    print(f"ratio: {int8:.2f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
