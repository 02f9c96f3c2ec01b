"""Benchmark: int8 per-channel quantization of an N-parameter tree vs a numpy copy of its bytes.

Usage:
  python experiments/benchmarks/quantize_params.py [--params 100_000_000] [--repeats 5]

Quantizes a tree of float32 Dense kernels ``(4096, cols)`` holding ``--params``
parameters with ``QuantSpec(bits=8, axes=(-1,))`` under ``jax.jit`` (the
library does not jit for you), and copies the same bytes with ``numpy.copy``.
Prints the median times and the ratio (target: <= 3x). Compilation is excluded
(one warm-up call). Needs about 3x the tree's bytes of memory.
"""

from __future__ import annotations

import argparse
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
    rules = [(r".*/kernel", jzq.QuantSpec(bits=8, axes=(-1,)))]
    quant = jax.jit(lambda p: jzq.quantize_params(p, rules))

    def run_quant() -> None:
        jax.block_until_ready(quant(params))

    def run_copy() -> None:
        for a in jax.tree.leaves(host):
            np.copy(a)

    run_quant()  # compile
    run_copy()
    tq = common.median_seconds(run_quant, args.repeats)
    tc = common.median_seconds(run_copy, args.repeats)
    print(f"params: {n:,} float32 ({4 * n / 1e6:.1f} MB) on {jax.devices()[0].platform}")
    print(f"quantize_params int8 per-channel (jit): median {tq * 1e3:.1f} ms")
    print(f"numpy copy of the same bytes:          median {tc * 1e3:.1f} ms")
    print(f"ratio: {tq / tc:.2f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
