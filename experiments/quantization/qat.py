"""Parts 2 and 3: quantization-aware training, and binary / ternary weights.

QAT fine-tunes the float baseline through ``fake_quant_params`` (a straight-through
gradient) used as a param transform inside the jitted train step; the reported error
is that of the *real* quantized model, ``quantize_params`` → ``dequantize_params``
of the fine-tuned weights, evaluated with the plain float model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxzip as jz
from quantization.common import (
    KERNELS,
    Context,
    Params,
    finetune_through,
    log,
    make_row,
    test_error,
)
from quantization.ptq import calibrations

QAT_BITS = (4, 2)
QAT_MSE = jz.quant.MSEClip(num_ratios=16)
"""MSE clipping inside the train step: 16 ratios (64 costs ~7x more per step: ~90 s per
LeNet-300-100 epoch on a CPU core instead of ~13 s). The real model uses the same."""


def _max_abs_diff(a: Params, b: Params) -> float:
    diffs = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.max(jnp.abs(x - y)), a, b))
    return float(max(diffs))


def _finetuned(
    ctx: Context, transform: Callable[[Params], Params], real: Callable[[Params], Params]
) -> tuple[Params, Params, float, float]:
    """Fine-tunes through ``transform``; returns the trained params, ``real(trained)`` (the
    quantized model), its test error, and the fine-tuning's seconds."""
    start = time.perf_counter()
    trained = finetune_through(ctx, transform)
    seconds = time.perf_counter() - start
    quantized = real(trained)
    return trained, quantized, test_error(ctx, quantized), seconds


def run_qat(ctx: Context) -> list[dict[str, Any]]:
    """Per-channel QAT at 4 and 2 bits from the float baseline, ``--epochs`` epochs each."""
    args = ctx.args
    if args.qat_calibration == "mse":
        calibration, cal_name = QAT_MSE, f"mse ({QAT_MSE.num_ratios} ratios)"
    else:
        calibration = calibrations(args.percentile)[args.qat_calibration]
        cal_name = args.qat_calibration
    rows = []
    for bits in QAT_BITS:
        rules = [(KERNELS, jz.quant.QuantSpec(bits=bits, axes=(-1,)))]

        def real(params: Params, rules: Any = rules) -> Params:
            q = jz.quant.quantize_params(params, rules, calibration=calibration)
            return jz.quant.dequantize_params(q)

        def fake(params: Params, rules: Any = rules) -> Params:
            return jz.quant.fake_quant_params(params, rules, calibration=calibration)

        before = test_error(ctx, real(ctx.params))
        log(f"  qat {bits}-bit: before fine-tuning (PTQ) test error {100 * before:.2f}%")
        trained, quantized, error, seconds = _finetuned(ctx, fake, real)
        rows.append(
            make_row(
                ctx,
                part="qat",
                method="qat (STE)",
                bits=bits,
                granularity="per-channel",
                calibration=cal_name,
                error=error,
                ptq_test_error=before,
                epochs=args.epochs,
                learning_rate=args.qat_lr,
                # the trained forward pass (fake quantization) is the real quantized model
                fake_vs_real_max_abs=_max_abs_diff(fake(trained), quantized),
                seconds=round(seconds, 2),
            )
        )
        log(f"  qat {bits}-bit: after {args.epochs} epoch(s) test error {100 * error:.2f}%")
    return rows


def straight_through(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """``fn`` in the forward pass, the identity's gradient in the backward pass (exact forward)."""

    @jax.custom_vjp
    def f(x: jax.Array) -> jax.Array:
        return fn(x)

    f.defvjp(lambda x: (fn(x), None), lambda _, g: (g,))
    return f


def _max_levels(params: Params) -> int:
    """The most distinct values in one output channel of any kernel (binary 2, ternary 3)."""
    most = 0
    for path, leaf in jz.paths.leaves_with_paths(params):
        if jz.paths.matches(KERNELS, path, leaf):
            columns = np.asarray(leaf).reshape(-1, leaf.shape[-1]).T
            most = max(most, *(np.unique(c).size for c in columns))
    return int(most)


def _map_kernels(fn: Callable[[jax.Array], Any], params: Params) -> Params:
    return jz.paths.map_with_paths(
        lambda path, p: fn(p) if jz.paths.matches(KERNELS, path, p) else p, params
    )


LEVELS: dict[str, tuple[Callable[[jax.Array], jz.quant.QArray], int]] = {
    "binary": (lambda w: jz.quant.binarize(w, axes=(-1,)), 1),
    "ternary": (lambda w: jz.quant.ternarize(w, axes=(-1,)), 2),
}
"""XNOR-Net binary (sign x per-channel mean |w|) and TWN ternary (threshold 0.7 mean |w|)."""


def run_binary(ctx: Context) -> list[dict[str, Any]]:
    """Binary and ternary kernels, post-training and after ``--epochs`` of STE fine-tuning."""
    args = ctx.args
    rows = []
    for name, (quantize, bits) in LEVELS.items():

        def real(params: Params, quantize: Any = quantize) -> Params:
            return jz.quant.dequantize_params(_map_kernels(quantize, params))

        ste = straight_through(lambda w, quantize=quantize: jz.quant.dequantize(quantize(w)))
        post = test_error(ctx, real(ctx.params))
        common = {"bits": bits, "granularity": "per-channel", "calibration": "mean|w|"}
        rows.append(make_row(ctx, part="binary", method=f"{name} PTQ", error=post, **common))
        log(f"  {name}: post-training test error {100 * post:.2f}%")
        _, quantized, error, seconds = _finetuned(
            ctx, lambda p, ste=ste: _map_kernels(ste, p), real
        )
        rows.append(
            make_row(
                ctx,
                part="binary",
                method=f"{name} + STE fine-tune",
                error=error,
                epochs=args.epochs,
                learning_rate=args.qat_lr,
                max_levels_per_channel=_max_levels(quantized),
                seconds=round(seconds, 2),
                **common,
            )
        )
        log(f"  {name}: after {args.epochs} epoch(s) test error {100 * error:.2f}%")
    return rows
