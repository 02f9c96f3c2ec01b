"""Compiled temporary memory of running a model on quantized params (no run, just XLA's analysis).

Twelve dense layers of 512×512 (tanh between), batch 4, kernels 8-bit per output
channel. Compares the temporary buffers XLA allocates for:

* ``dequantize_all``: ``jax.jit(lambda q, x: apply_fn(dequantize_params(q), x))``;
* ``make_quantized_apply``: ``jax.jit(jz.quant.make_quantized_apply(apply_fn))``;
* ``w8a8``: ``jax.jit`` of the function :func:`jaxzip.quant.w8a8` returns
  (int8 activations and kernels, integer matmuls);

and the float model's own; then the same twelve layers as one stack that
``lax.scan`` slices (``scan_*``: stacked ``(12, 512, 512)`` kernels, as ``nn.scan``
builds them), where ``make_quantized_apply`` dequantizes one layer per
iteration. Prints one JSON line (bytes).

  python experiments/benchmarks/quantized_apply_memory.py
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp

import jaxzip as jz

LAYERS, WIDTH, BATCH = 12, 512, 4


def apply_fn(params, x):
    """The model: ``LAYERS`` dense layers with tanh."""
    for i in range(LAYERS):
        x = jnp.tanh(x @ params[f"l{i}"]["kernel"])
    return x


def scanned_apply_fn(params, x):
    """The same layers as one stack scanned over its first axis."""
    return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, params["stack"])[0]


def temp_bytes(fn, *args) -> int | None:
    """XLA's temporary-buffer size for ``jax.jit(fn)(*args)`` (None if not reported)."""
    mem = jax.jit(fn).lower(*args).compile().memory_analysis()
    return None if mem is None else int(mem.temp_size_in_bytes)


def main() -> dict[str, int | None]:
    """Measures and prints the temporary bytes of each variant."""
    keys = jax.random.split(jax.random.key(0), LAYERS)
    params = {
        f"l{i}": {"kernel": jax.random.normal(k, (WIDTH, WIDTH)) * 0.05} for i, k in enumerate(keys)
    }
    x = jnp.ones((BATCH, WIDTH))
    spec = jz.quant.QuantSpec(bits=8, axes=(-1,))
    q = jz.quant.quantize_params(params, [(r".*/kernel", spec)])
    layouts = jz.layout.trace_layouts(apply_fn, params, x)
    w8a8_fn, w8a8_q = jz.quant.w8a8(apply_fn, params, layouts=layouts)
    out = {
        "one_float_kernel": WIDTH * WIDTH * 4,
        "float_model": temp_bytes(apply_fn, params, x),
        "dequantize_all": temp_bytes(lambda q, x: apply_fn(jz.quant.dequantize_params(q), x), q, x),
        "make_quantized_apply": temp_bytes(jz.quant.make_quantized_apply(apply_fn), q, x),
        "w8a8": temp_bytes(w8a8_fn, w8a8_q, x),
    }
    stacked = {"stack": jnp.stack([params[f"l{i}"]["kernel"] for i in range(LAYERS)])}
    sq = jz.quant.quantize_params(stacked, [("stack", spec)])
    run = scanned_apply_fn
    out["scan_float_model"] = temp_bytes(run, stacked, x)
    out["scan_dequantize_all"] = temp_bytes(
        lambda q, x: run(jz.quant.dequantize_params(q), x), sq, x
    )
    out["scan_make_quantized_apply"] = temp_bytes(jz.quant.make_quantized_apply(run), sq, x)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
