"""The pieces of the language-model search: per-kernel GPTQ / SparseGPT choices, bits per window."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip import calib as jz_calib
from jaxzip import codec as jz_codec
from jaxzip import layout as jz_layout
from jaxzip import quant as jz_quant
from jaxzip._types import Params
from jaxzip.data import TokenWindows
from jaxzip.paths import map_with_paths

__all__ = [
    "TABLE_SPEC",
    "Choice",
    "group_size_for",
    "qarray_bytes",
    "quantize_kernels",
    "split_windows",
    "window_bits",
    "with_leaves",
]

Choice = tuple[int, float]
"""One kernel's setting: ``(bits, sparsity)``."""

TABLE_SPEC = jz_quant.QuantSpec(bits=8, axes=(0,))
"""Embedding tables: int8, one scale per row."""


def group_size_for(layout: jz_layout.KernelLayout, group_size: int) -> int:
    """``group_size``, or the whole last input axis when ``group_size`` does not divide it.

    Example:
      >>> from types import SimpleNamespace as NS
      >>> lay = NS(shape=(4, 48, 192), group_axis=lambda: 1)
      >>> group_size_for(lay, 64), group_size_for(lay, 16)
      (48, 16)
    """
    size = int(layout.shape[layout.group_axis()])
    return group_size if size % group_size == 0 else size


def quantize_kernels(
    fwd: Any,
    params: Params,
    batches: Iterable[Any],
    choices: Mapping[str, Choice],
    *,
    layouts: Mapping[str, jz_layout.KernelLayout],
    group_size: int,
    symmetric: bool,
    sequential: bool,
) -> dict[str, jz_quant.QArray]:
    """``{path: QArray}`` for the kernels of ``choices``: GPTQ at their bits, or, at a
    sparsity above 0, SparseGPT with joint quantization (:func:`jaxzip.quant.obs_prune`).

    ``sequential``: each kernel is calibrated on the earlier ones already quantized
    (the candidates); otherwise every kernel's Hessian comes from the float model
    (the sensitivities).
    """
    specs = {
        p: jz_quant.kernel_spec(
            jz_quant.QuantSpec(
                bits=b,
                axes=(-1,),
                symmetric=symmetric,
                group_size=group_size_for(layouts[p], group_size),
            ),
            p,
        )
        for p, (b, _) in choices.items()
    }

    def process(path: str, leaf: Any, layout: Any, stats: Any, layer: Any = ()) -> tuple[Any, Any]:
        m = jz_layout.to_matrix(leaf, layout).astype(jnp.float32)
        sparsity = choices[path][1]
        if sparsity == 0:
            q = jz_quant.gptq_quantize_matrix(m, stats.xtx, specs[path])
        else:
            _, _, q = jz_quant.obs_prune(
                m, stats.xtx, sparsity=sparsity, spec=specs[path], name=path
            )
        kq = jz_quant.kernel_qarray(q, layout, dtype=jnp.result_type(leaf))
        return jz_quant.dequantize(kq), kq

    where = tuple(re.escape(p) for p in choices)
    return jz_calib.run_oneshot(
        fwd,
        params,
        batches,
        process,
        hessian=True,
        where=where,
        sequential=sequential,
        layouts=layouts,
        name="jaxzip.auto.search_lm",
        stack=jz_quant.stack_layers,
    )


def with_leaves(params: Params, leaves: Mapping[str, Any], *, dequantized: bool) -> Params:
    """``params`` with the leaves at the paths of ``leaves`` replaced (dequantized if asked)."""

    def one(path: str, x: Any) -> Any:
        if path not in leaves:
            return x
        return jz_quant.dequantize(leaves[path]) if dequantized else leaves[path]

    return map_with_paths(one, params)


def qarray_bytes(path: str, q: jz_quant.QArray) -> int:
    """The bytes of ``q`` encoded alone (:func:`jaxzip.codec.encode`), header included."""
    return len(jz_codec.encode({path: q}))


@functools.partial(jax.jit, static_argnames="apply_fn")
def _bits_batch(apply_fn: Any, params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = apply_fn(params, x, train=False, key=None).astype(jnp.float32)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.mean(losses, axis=-1) / jnp.log(2.0)


def window_bits(
    apply_fn: Any, params: Params, windows: TokenWindows, *, batch_size: int = 64
) -> np.ndarray:
    """Each window's mean cross-entropy in bits per token (float64, one per window).

    Their mean is :func:`jaxzip.train.evaluate`'s ``bits_per_token`` (the
    windows all have the same length). Batches are zero-padded to one shape.
    """
    size = min(batch_size, len(windows))
    out = []
    for i in range(0, len(windows), size):
        x, y = windows.x[i : i + size], windows.y[i : i + size]
        n = len(x)
        if n < size:
            pad = np.zeros((size - n, x.shape[1]), np.int32)
            x, y = np.concatenate([x, pad]), np.concatenate([y, pad])
        out.append(_bits_batch(apply_fn, params, x, y)[:n])  # on device: no sync per batch
    return np.concatenate([np.asarray(b, np.float64) for b in out])


def split_windows(
    windows: TokenWindows, fraction: float, *, seed: int
) -> tuple[TokenWindows, TokenWindows]:
    """``(rest, held)``: a seeded shuffle of ``windows`` cut so ``held`` has ``fraction`` of them.

    Deterministic given ``seed``; each part keeps its windows in their original order.

    Raises:
      ValueError: ``fraction`` not in (0, 1), or fewer than 2 windows.

    Example:
      >>> w = TokenWindows(x=np.zeros((10, 4), np.int32), y=np.zeros((10, 4), np.int32),
      ...                  vocab_size=2, name="w")
      >>> rank, conf = split_windows(w, 0.3, seed=0)
      >>> len(rank), len(conf), conf.name
      (7, 3, 'w/confirm')
    """
    ok = not isinstance(fraction, bool) and isinstance(fraction, (int, float))
    if not ok or not 0 < fraction < 1:
        raise ValueError(f"confirm_fraction: expected a number in (0, 1), got {fraction!r}")
    n = len(windows)
    if n < 2:
        raise ValueError(
            f"windows: expected at least 2 windows to split, got {n} in {windows.name!r}"
        )
    n_held = min(max(round(n * fraction), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    held, rest = np.sort(order[:n_held]), np.sort(order[n_held:])

    def part(idx: np.ndarray, suffix: str) -> TokenWindows:
        return TokenWindows(
            x=np.array(windows.x[idx]),
            y=np.array(windows.y[idx]),
            vocab_size=windows.vocab_size,
            name=f"{windows.name}/{suffix}",
        )

    return part(rest, "rank"), part(held, "confirm")
