"""Benchmark: int8 Dense inference (``jzq.int_dense``) vs float32 matmul on CPU.

Usage:
  python experiments/benchmarks/int8_dense.py [--batch 256] [--in 800] [--out 500] [--repeats 20]

Both are jitted; operands are prepared (quantized) outside the timed region;
compilation is excluded. Prints median times and the ratio int8 / float32.
Whether int8 is faster depends on the backend: XLA's CPU integer matmul may not
use the fast int8 instructions a hand-written kernel would, so the ratio can
exceed 1; it is printed as measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxzip.quant as jzq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--in", dest="n_in", type=int, default=800)
    ap.add_argument("--out", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)

    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (args.batch, args.n_in))
    w = jax.random.normal(kw, (args.n_in, args.out)) * 0.05
    b = jnp.zeros((args.out,))
    xq = jzq.quantize(x, jzq.QuantSpec(bits=8))
    wq = jzq.quantize(w, jzq.QuantSpec(bits=8, axes=(-1,)))

    f_float = jax.jit(lambda a, k, c: a @ k + c)
    f_int = jax.jit(lambda a, k, c: jzq.int_dense(a, k, bias=c))
    f_float(x, w, b).block_until_ready()
    f_int(xq, wq, b).block_until_ready()
    err = float(jnp.max(jnp.abs(f_int(xq, wq, b) - (jzq.dequantize(xq) @ jzq.dequantize(wq) + b))))

    tf = common.median_seconds(lambda: jax.block_until_ready(f_float(x, w, b)), args.repeats)
    ti = common.median_seconds(lambda: jax.block_until_ready(f_int(xq, wq, b)), args.repeats)
    print(
        f"Dense ({args.batch} x {args.n_in}) @ ({args.n_in} x {args.out}) on {jax.devices()[0].platform}"
    )
    print(f"float32: median {tf * 1e3:.3f} ms")
    print(f"int8 (int32 accumulate + rescale): median {ti * 1e3:.3f} ms")
    print(f"ratio int8 / float32: {ti / tf:.2f}x; max |int - dequantized float| = {err:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
