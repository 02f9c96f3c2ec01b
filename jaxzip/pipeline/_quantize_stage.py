"""The ``quantize`` stage: one-shot weight quantization of the model's matmul kernels
(GPTQ or round to nearest) from calibration data, as ``[quantize]`` sets it."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxzip import layout as jz_layout
from jaxzip import quant as jz_quant
from jaxzip._errors import ConfigError
from jaxzip.config import ExperimentConfig, QuantizeConfig, lookup
from jaxzip.paths import leaves_with_paths
from jaxzip.pipeline._stage_utils import calibration_batches, jsonable, leaked, log
from jaxzip.pipeline._state import RunState

__all__ = [
    "kernel_specs",
    "quantize_stage",
    "table_paths",
]


def kernel_specs(
    q: QuantizeConfig, params: Any, layouts: Mapping[str, Any]
) -> dict[str, jz_quant.QuantSpec]:
    """``{kernel path: QuantSpec}`` in each kernel's own axes for the kernels ``q.where``
    selects (:func:`jaxzip.quant.layout_spec`).

    Raises:
      ConfigError: ``q.where`` selects no kernel, or a leaf that no matmul or convolution
        consumes (named, with the kernels there are); a group size longer than a kernel's
        last input axis that does not divide it (named, with the sizes that do).
    """
    pattern = re.compile(q.where)
    chosen = [p for p, _ in leaves_with_paths(params) if pattern.fullmatch(p)]
    outside = [p for p in chosen if p not in layouts]
    if outside or not chosen:
        what = f"selects {outside[:4]}, which" if outside else "selects no leaf; the leaves"
        raise ConfigError(
            f"quantize.where: {q.where!r} {what} no matmul or convolution of the model "
            f"consumes; the kernels are {sorted(layouts)[:6]}"
        )
    specs = {}
    for p in chosen:
        try:
            specs[p] = jz_quant.layout_spec(
                layouts[p],
                bits=q.bits,
                group_size=q.group_size or None,
                symmetric=q.symmetric,
                name=f"quantize.group_size: {p!r}",
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return specs


def table_paths(q: QuantizeConfig, params: Any, layouts: Mapping[str, Any]) -> list[str]:
    """The leaves ``table_bits`` rounds: the 2-D leaves ``q.tables`` selects that no matmul
    consumes (none when ``table_bits`` is 0).

    Raises:
      ConfigError: with ``table_bits``, ``q.tables`` selects no such leaf, or one not 2-D.
    """
    if not q.table_bits:
        return []
    pattern = re.compile(q.tables)
    tables = [
        (p, x) for p, x in leaves_with_paths(params) if pattern.fullmatch(p) and p not in layouts
    ]
    bad = [f"{p} {list(np.shape(x))}" for p, x in tables if np.ndim(x) != 2]
    if bad or not tables:
        raise ConfigError(
            f"quantize.tables: {q.tables!r} must select 2-D tables (rows x features) that no "
            f"matmul consumes; it selects {bad[:4] if bad else 'none'}"
        )
    return [p for p, _ in tables]


def quantize_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: ``[quantize]``'s method on the selected kernels (and ``table_bits`` on the tables).

    Reads ``splits``, ``apply_fn``, ``params`` and (after ``prune``) ``mask`` from
    ``state``: pruned weights stay exactly zero. Returns ``books`` (the
    params with :class:`~jaxzip.quant.QArray` leaves: what ``encode`` writes), ``params``
    (decoded from them: what ``evaluate`` scores) and the report
    ``quantize`` (method, bits, calibration examples, seconds, each kernel's
    shape and group size).

    Raises:
      ConfigError: see :func:`kernel_specs` and :func:`table_paths`.
      ValueError: from :func:`jaxzip.quant.gptq` (too few calibration tokens for a kernel,
        a Hessian not positive definite after dampening).
    """
    q, splits, params = cfg.quantize, state.splits, state.params
    if q is None:
        raise ValueError("quantize_stage: the config has no [quantize] section")
    apply_fn = state.apply_fn

    def fwd(p: Any, x: Any) -> Any:
        return apply_fn(p, x, train=False, key=None)

    layouts = jz_layout.trace_layouts(fwd, params, splits.train.x[:1])
    specs = kernel_specs(q, params, layouts)
    tables = table_paths(q, params, layouts)
    quantizer = lookup("quantizer", q.method, where="quantize.method")
    calib = []
    if quantizer.calibrated:
        calib = calibration_batches(cfg, splits.train, q, name="quantize/calibration")
    log(
        f"quantize: {q.method} int{q.bits} on {len(specs)} kernels"
        + (f" from {sum(len(b) for b in calib)} calibration examples" if calib else "")
    )
    start = time.perf_counter()
    books = quantizer.quantize(
        fwd,
        params,
        calib,
        specs,
        layouts=layouts,
        damp=q.damp,
        act_order=q.act_order,
        mask=state.mask,
        progress=state.progress,
    )
    if tables:
        row = jz_quant.QuantSpec(bits=q.table_bits, axes=(0,))  # one scale per row
        rounded = jz_quant.quantize_params(params, [(re.escape(t), row) for t in tables])
        books = jax.tree.map(
            lambda r, b: r if jz_quant.is_quantized(r) else b,
            rounded,
            books,
            is_leaf=jz_quant.is_quantized,
        )
    decoded = jz_quant.dequantize_params(books)
    jax.block_until_ready(decoded)
    seconds = time.perf_counter() - start
    refilled = 0 if state.mask is None else leaked(decoded, state.mask)
    if refilled:
        raise RuntimeError(f"quantize: {q.method} refilled {refilled} pruned weights")
    metrics = {
        "quantize_kernels": len(specs),
        "quantize_tables": len(tables),
        "quantize_seconds": round(seconds, 3),
    }
    report = {
        "method": q.method,
        "bits": q.bits,
        "symmetric": q.symmetric,
        "table_bits": q.table_bits,
        "calibration_examples": sum(len(b) for b in calib),
        "kernels": {
            p: {"shape": list(layouts[p].shape), "group_size": s.group_size}
            for p, s in specs.items()
        },
        "tables": tables,
        **metrics,
    }
    return {"books": books, "params": decoded, "reports": {"quantize": jsonable(report)}}, metrics
