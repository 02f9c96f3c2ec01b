"""Part 1: post-training quantization of the kernels, bits x granularity x calibration."""

from __future__ import annotations

import re
import time
from typing import Any

import jaxzip as jz
from quantization.common import KERNELS, Context, Params, finite_or_none, log, make_row, test_error

BITS = (8, 4, 2)
GRANULARITIES = ("per-tensor", "per-channel", "per-group")


def calibrations(percentile: float) -> dict[str, Any]:
    """The weight calibrations, by the name the table shows."""
    return {
        "absmax": jz.quant.MinMax(),
        "percentile": jz.quant.Percentile(percentile=percentile),
        "mse": jz.quant.MSEClip(),
    }


def group_size_for(n: int, target: int) -> int:
    """The largest divisor of ``n`` not above ``target`` (groups must tile the input axis)."""
    return max(d for d in range(1, min(n, target) + 1) if n % d == 0)


def make_rules(
    params: Params, bits: int, granularity: str, group_size: int
) -> tuple[list[tuple[str, jz.quant.QuantSpec]], dict[str, int]]:
    """Rules quantizing every kernel, and the group size used per kernel (per-group only).

    Per-group quantization splits a kernel's input axis (``-2``: Dense ``(in, out)`` and
    HWIO conv kernels) into groups of ``group_size_for(in, group_size)`` entries, each
    output channel with its own scale per group.
    """
    if granularity == "per-tensor":
        return [(KERNELS, jz.quant.QuantSpec(bits=bits))], {}
    if granularity == "per-channel":
        return [(KERNELS, jz.quant.QuantSpec(bits=bits, axes=(-1,)))], {}
    rules, groups = [], {}
    for path in jz.paths.selected_paths(params, KERNELS):
        leaf_shape = _shape(params, path)
        g = group_size_for(leaf_shape[-2], group_size)
        groups[path] = g
        spec = jz.quant.QuantSpec(bits=bits, axes=(-1,), group_size=g)
        rules.append((re.escape(path), spec))
    return rules, groups


def _shape(params: Params, path: str) -> tuple[int, ...]:
    return dict(jz.paths.leaves_with_paths(params))[path].shape


def sqnr_by_layer(params: Params, qparams: Params) -> dict[str, float | None]:
    """Signal-to-quantization-noise ratio (dB) of each quantized kernel."""
    report = jz.quant.quantization_report(params, qparams)
    return {path: finite_or_none(round(r["sqnr_db"], 2)) for path, r in report.items()}


def ptq_error(
    ctx: Context, params: Params, rules: Any, calibration: Any
) -> tuple[float, dict[str, float | None]]:
    """Test error of the dequantized model and the per-layer SQNR."""
    qparams = jz.quant.quantize_params(params, rules, calibration=calibration)
    error = test_error(ctx, jz.quant.dequantize_params(qparams))
    return error, sqnr_by_layer(params, qparams)


def run_ptq(ctx: Context) -> list[dict[str, Any]]:
    """The PTQ grid: one row per (bits, granularity, calibration)."""
    args = ctx.args
    rows = []
    cals = calibrations(args.percentile)
    for bits in BITS:
        for granularity in GRANULARITIES:
            rules, groups = make_rules(ctx.params, bits, granularity, args.group_size)
            for name, calibration in cals.items():
                start = time.perf_counter()
                error, sqnr = ptq_error(ctx, ctx.params, rules, calibration)
                row = make_row(
                    ctx,
                    part="ptq",
                    method="ptq",
                    bits=bits,
                    granularity=granularity,
                    calibration=name,
                    error=error,
                    sqnr_db=sqnr,
                    seconds=round(time.perf_counter() - start, 3),
                )
                if groups:
                    row["group_sizes"] = groups
                rows.append(row)
                log(
                    f"  ptq {bits}-bit {granularity:11s} {name:10s} test error "
                    f"{100 * error:.2f}% ({row['drop_pp']:+.2f} pp)"
                )
    return rows
