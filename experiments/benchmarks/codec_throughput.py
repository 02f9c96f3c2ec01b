"""Benchmark: encode/decode throughput of jaxzip.codec, and how close ANS streams get to entropy.

Usage:
  python experiments/benchmarks/codec_throughput.py [--params 10_000_000] [--repeats 5]
      [--lenet5-file runs/lenet5_deep_compression/model.jz]

1. Builds an N-parameter tree of float32 kernels (10 leaves), prunes 90% by
   magnitude and shares the rest through 5-bit k-means codebooks (Deep
   Compression's format), then times ``jz.codec.encode`` and ``jz.codec.decode``
   (medians over ``--repeats``) and prints MB of float32 parameters per second,
   beside a numpy copy of the same float32 bytes measured in the same run.
2. Times decoding the LeNet-5 Deep Compression file, if it exists.
3. For every k-means leaf, ANS-codes its nonzero codebook indices alone and
   prints the stream's bytes against the indices' empirical entropy (the
   frequency table, positions and header are side information, reported
   separately by ``jaxzip inspect``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


def _tree(n: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    rows = 1000
    cols = max(1, n // (10 * rows))
    return {
        f"Dense_{i}": {"kernel": rng.standard_normal((rows, cols), dtype=np.float32)}
        for i in range(10)
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--lenet5-file", type=Path, default=Path("runs/lenet5_deep_compression/model.jz")
    )
    args = ap.parse_args(argv)

    params = jax.tree.map(jax.numpy.asarray, _tree(args.params))
    n = sum(int(x.size) for x in jax.tree.leaves(params))
    mask = jz.prune.magnitude_mask(params, sparsity=0.9, where=r".*/kernel")
    params = jz.prune.apply_mask(params, mask)
    books = jax.block_until_ready(
        jz.quant.kmeans_params(params, bits=5, where=r".*/kernel", mask=mask)
    )
    data = jz.codec.encode(books)
    host = [np.asarray(x) for x in jax.tree.leaves(_tree(args.params))]
    mb = 4 * n / 1e6

    t_enc = common.median_seconds(lambda: jz.codec.encode(books), args.repeats)
    t_dec = common.median_seconds(lambda: jz.codec.decode(data), args.repeats)
    t_copy = common.median_seconds(lambda: [np.copy(a) for a in host], args.repeats)
    print(f"tree: {n:,} float32 params ({mb:.1f} MB), 90% pruned, 5-bit k-means")
    print(f"file: {len(data):,} bytes (ratio {4 * n / len(data):.1f}x)")
    print(f"encode: median {t_enc * 1e3:.1f} ms = {mb / t_enc:.1f} MB/s of float32 params")
    print(f"decode: median {t_dec * 1e3:.1f} ms = {mb / t_dec:.1f} MB/s of float32 params")
    print(f"numpy copy of the float32 bytes: median {t_copy * 1e3:.1f} ms = {mb / t_copy:.1f} MB/s")
    print(f"ratios to the copy: encode {t_enc / t_copy:.1f}x, decode {t_dec / t_copy:.1f}x")

    if args.lenet5_file.is_file():
        blob = args.lenet5_file.read_bytes()
        t5 = common.median_seconds(lambda: jz.codec.decode(blob), args.repeats)
        print(f"decode {args.lenet5_file} ({len(blob):,} bytes): median {t5 * 1e3:.1f} ms")
        tree = jz.codec.decode(blob)
    else:
        print(f"({args.lenet5_file} not found: run experiments/lenet5_deep_compression.toml)")
        tree = books

    print("ANS stream of each k-means leaf's nonzero indices vs their empirical entropy:")
    for path, book in _kmeans_leaves(tree):
        idx = np.asarray(book.indices)[np.asarray(book.mask)]
        present, counts = jz.codec.symbol_counts(idx)
        bound = jz.codec.entropy_bits(counts) / 8
        stream = len(jz.codec.ans_encode(idx, present, counts))
        over = (stream - bound) / bound if bound else 0.0
        print(
            f"  {path}: {idx.size:,} symbols, stream {stream:,} B, entropy {bound:,.1f} B, "
            f"+{100 * over:.2f}%"
        )
    return 0


def _kmeans_leaves(tree, prefix=""):
    if isinstance(tree, jz.quant.KMeansArray):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _kmeans_leaves(v, f"{prefix}/{k}" if prefix else str(k))


if __name__ == "__main__":
    raise SystemExit(main())
