"""Benchmark: compile time of a W8A8 model whose layers are one stack, against the same layers in a loop.

Usage:
  python experiments/benchmarks/stack_compile.py [--layers 4,16,32] [--width 256] [--repeats 3]

For each depth, the same residual MLP blocks (``h + gelu(h @ w1) @ w2``, then a
head) are built two ways: as one stack that ``jax.lax.scan`` slices (stacked
``(layers, n, n)`` kernels, as ``nn.scan`` builds them) and as a Python loop over
the layers. Each is converted with :func:`jaxzip.quant.w8a8` (int8 kernels per
output channel, dynamic int8 activations), and the time to trace, lower and
compile the converted function (``jax.jit(fn).lower(q, x).compile()``) is the
median of ``--repeats``. The stack's program is traced once per scan body (its
size does not grow with the depth); the loop's holds every layer. Also printed:
the length of each program (lines of its printed jaxpr), and the largest difference between the two
builds' outputs (they compute the same model). One JSON line at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


def scan_model(params: Any, x: jax.Array) -> jax.Array:
    """The blocks as one stack scanned over its first axis, then the head."""

    def block(h: jax.Array, w: Any) -> tuple[jax.Array, None]:
        return h + jax.nn.gelu(h @ w["w1"]) @ w["w2"], None

    return jax.lax.scan(block, x, params["stack"])[0] @ params["head"]


def loop_model(params: Any, x: jax.Array) -> jax.Array:
    """The same blocks in a Python loop."""
    for w in params["layers"]:
        x = x + jax.nn.gelu(x @ w["w1"]) @ w["w2"]
    return x @ params["head"]


def _params(layers: int, width: int) -> tuple[Any, Any]:
    k1, k2, k3 = jax.random.split(jax.random.key(layers), 3)
    scale = width**-0.5
    stack = {
        "w1": jax.random.normal(k1, (layers, width, width)) * scale,
        "w2": jax.random.normal(k2, (layers, width, width)) * scale / layers,
    }
    head = jax.random.normal(k3, (width, 10)) * scale
    looped = [{k: v[i] for k, v in stack.items()} for i in range(layers)]
    return {"stack": stack, "head": head}, {"layers": looped, "head": head}


def measure(model: Any, params: Any, x: jax.Array, repeats: int) -> dict[str, Any]:
    """W8A8 conversion of one build: compile time (median), program length, outputs."""
    fn, q = jz.quant.w8a8(model, params, layouts=jz.layout.trace_layouts(model, params, x))
    # a new function each time, so that neither JAX's trace cache nor its compile cache hits
    fresh = lambda: jax.jit(lambda q, x: fn(q, x)).lower(q, x).compile()  # noqa: E731
    seconds = common.median_seconds(fresh, repeats)
    return {
        "compile_s": seconds,
        "jaxpr_lines": len(str(jax.make_jaxpr(fn)(q, x)).splitlines()),
        "out": jax.jit(fn)(q, x),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measures each depth; prints the table and one JSON line; returns the figures."""
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--layers", default="4,16,32", help="comma-separated depths")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    try:
        depths = [int(v) for v in args.layers.split(",")]
    except ValueError:
        p.error(f"--layers: expected comma-separated integers, got {args.layers!r}")
    if not depths or min(depths) < 1:
        p.error(f"--layers: expected depths of at least 1, got {args.layers!r}")
    common.require_positive(p, args, "width", "batch", "repeats")
    x = jax.random.normal(jax.random.key(0), (args.batch, args.width))
    result: dict[str, Any] = {}
    print(
        "layers  stack compile s  loop compile s  loop / stack  jaxpr lines stack / loop  max |diff|"
    )
    for layers in depths:
        common.log(f"{layers} layers ...")
        stacked, looped = _params(layers, args.width)
        s = measure(scan_model, stacked, x, args.repeats)
        lp = measure(loop_model, looped, x, args.repeats)
        diff = float(jnp.max(jnp.abs(s.pop("out") - lp.pop("out"))))
        ratio = lp["compile_s"] / s["compile_s"]
        result[str(layers)] = {"stack": s, "loop": lp, "ratio": ratio, "max_abs_diff": diff}
        print(
            f"{layers:6d}  {s['compile_s']:15.3f}  {lp['compile_s']:14.3f}  {ratio:11.2f}x"
            f"  {s['jaxpr_lines']:>13d} / {lp['jaxpr_lines']:<10d}  {diff:.2e}"
        )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
