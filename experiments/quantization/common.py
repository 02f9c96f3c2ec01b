"""Shared pieces of the quantization experiment: context, test error, fine-tuning, tables."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import _common as common
import jax
import optax

import jaxzip as jz

Params = Any
"""A parameter pytree (as :mod:`jaxzip` takes it: linen params, nnx state, dicts)."""
Mask = Any
"""A bool pytree of a params tree's structure (True: kept)."""
KERNELS = r".*/kernel"
"""Every kernel is quantized; biases stay float."""
DENSE_KERNELS = r"Dense_\d+/kernel"
CONV_KERNELS = r"Conv_\d+/kernel"
BATCH_SIZE = 128
WEIGHT_DECAY = 5e-4
"""The baselines' L2 on kernels (experiments/lenet*_mnist.toml), kept while fine-tuning."""
log = common.log


@dataclasses.dataclass(frozen=True, kw_only=True)
class Context:
    """What every part needs.

    Attributes:
      args: the parsed command line.
      splits: train / val / test sets (test is used only for reporting).
      apply_fn: the float model, ``apply_fn(params, x, *, train, key)``; one object,
        so :func:`jaxzip.train.evaluate` compiles once.
      params: the float baseline's params.
      float_error: the baseline's test error (fraction).
      augment: the training augmentation (random 2-pixel shifts on MNIST, none on digits).
    """

    args: argparse.Namespace
    splits: jz.data.Splits
    apply_fn: Callable[..., jax.Array]
    params: Params
    float_error: float
    augment: jz.train.RandomShift | None


def test_error(ctx: Context, params: Params) -> float:
    """Test error (fraction) of float ``params`` (dequantize quantized trees first)."""
    return float(jz.train.evaluate(ctx.apply_fn, params, ctx.splits.test)["error"])


def sgd(ctx: Context, learning_rate: float, epochs: int) -> optax.GradientTransformation:
    """The baselines' optimizer (SGD, Nesterov momentum, cosine decay, L2) at a fine-tuning rate."""
    return common.cosine_optimizer(
        "sgd",
        learning_rate,
        epochs=epochs,
        train_size=len(ctx.splits.train),
        batch_size=BATCH_SIZE,
        weight_decay=WEIGHT_DECAY,
        momentum=0.9,
    )


def finetune(
    ctx: Context,
    params: Params,
    tx: optax.GradientTransformation,
    *,
    epochs: int,
    apply_fn: Callable[..., jax.Array] | None = None,
) -> Params:
    """Trains ``params`` for ``epochs`` (``apply_fn`` defaults to the float model)."""
    state, history = jz.train.fit(
        ctx.apply_fn if apply_fn is None else apply_fn,
        params,
        tx,
        ctx.splits.train,
        epochs=epochs,
        batch_size=BATCH_SIZE,
        key=jax.random.key(ctx.args.seed),
        progress=ctx.args.progress,
        augment=ctx.augment,
    )
    for h in history:
        log(
            f"    epoch {h['epoch']}/{epochs}: loss {h['train_loss']:.4f} "
            f"acc {h['train_accuracy']:.4f} ({h['seconds']:.1f}s)"
        )
    return state.params


def finetune_through(ctx: Context, transform: Callable[[Params], Params]) -> Params:
    """The float params fine-tuned for ``--epochs`` at ``--qat-lr``, the forward pass seeing
    ``transform(params)`` (fake quantization with a straight-through gradient: QAT)."""

    def apply_fn(params: Params, x: jax.Array, *, train: bool, key: jax.Array | None) -> jax.Array:
        return ctx.apply_fn(transform(params), x, train=train, key=key)

    tx = sgd(ctx, ctx.args.qat_lr, ctx.args.epochs)
    return finetune(ctx, ctx.params, tx, epochs=ctx.args.epochs, apply_fn=apply_fn)


def make_row(
    ctx: Context,
    *,
    part: str,
    method: str,
    bits: int | str,
    granularity: str,
    calibration: str,
    error: float,
    **extra: Any,
) -> dict[str, Any]:
    """One result row; ``drop_pp`` is the test-error increase in percentage points."""
    return {
        "part": part,
        "method": method,
        "bits": bits,
        "granularity": granularity,
        "calibration": calibration,
        "test_error": error,
        "drop_pp": 100.0 * (error - ctx.float_error),
        **extra,
    }


COLUMNS = ("part", "method", "bits", "granularity", "calibration", "test err %", "drop pp")


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["part"],
        row["method"],
        str(row["bits"]),
        row["granularity"],
        row["calibration"],
        f"{100 * row['test_error']:.2f}",
        f"{row['drop_pp']:+.2f}",
    ]


def format_table(rows: list[dict[str, Any]], float_error: float, *, markdown: bool = False) -> str:
    """The rows as a text (or Markdown) table, the float baseline first."""
    baseline = ["float", "baseline", "32", "-", "-", f"{100 * float_error:.2f}", "+0.00"]
    body = [baseline, *(_cells(r) for r in rows)]
    return common.format_table(COLUMNS, body, markdown=markdown)


def finite_or_none(value: float) -> float | None:
    """JSON has no inf/NaN: map them to None (null)."""
    return value if math.isfinite(value) else None
