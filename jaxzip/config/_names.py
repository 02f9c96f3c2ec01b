"""The one place where config names become objects: :data:`NAMES`.

A config (or the command line) names a model, an optimizer, a learning-rate
schedule, a pruning method or allocation, a quantizer or a search strategy; the
library below the pipeline takes the objects (linen modules, optax transformations, allocation and
strategy specs, quantization functions). This module's :data:`NAMES` maps every such
name to its object, the config's ``Literal`` types and the docs list the names from
it, and :func:`lookup` is the one error for an unknown one.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Literal

import flax.linen as nn
import optax

from jaxzip import auto as jz_auto
from jaxzip import prune as jz_prune
from jaxzip import quant as jz_quant
from jaxzip._errors import ConfigError
from jaxzip.models import MLP, LeNet5, SmallCNN, Transformer, lenet_300_100
from jaxzip.train import kernel_mask

__all__ = [
    "NAMES",
    "TOKEN_MODELS",
    "AllocationName",
    "ModelName",
    "OptimizerName",
    "Pruner",
    "PrunerName",
    "Quantizer",
    "QuantizerName",
    "ScheduleName",
    "lookup",
    "make_model",
    "make_optimizer",
    "names",
]


def _sgd(lr: optax.Schedule, weight_decay: float, momentum: float) -> optax.GradientTransformation:
    base = optax.sgd(lr, momentum=momentum if momentum > 0 else None, nesterov=momentum > 0)
    return _l2(base, weight_decay)


def _adam(lr: optax.Schedule, weight_decay: float, momentum: float) -> optax.GradientTransformation:
    return _l2(optax.adam(lr), weight_decay)


def _adamw(
    lr: optax.Schedule, weight_decay: float, momentum: float
) -> optax.GradientTransformation:
    return optax.adamw(lr, weight_decay=weight_decay, mask=kernel_mask)


def _l2(base: optax.GradientTransformation, weight_decay: float) -> optax.GradientTransformation:
    if weight_decay == 0.0:
        return base
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=kernel_mask), base)


def _warmup_cosine(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup_steps, decay_steps=total_steps
    )


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """What a ``[quantize] method`` names: its function and whether it reads calibration data.

    Attributes:
      quantize: ``(apply_fn, params, batches, specs, *, layouts, damp, act_order, mask)
        -> params`` with :class:`jaxzip.quant.QArray` kernels; ``specs`` maps each kernel's
        path to its spec in the kernel's own axes (:func:`jaxzip.quant.layout_spec`);
        ``mask`` (a pruned model's keep-mask, or None) names the weights that stay zero.
      calibrated: whether it reads ``batches`` (else the run draws none).
    """

    quantize: Callable[..., Any]
    calibrated: bool


def _rtn(
    fwd: Callable[..., Any],
    params: Any,
    batches: Iterable[Any],
    specs: Mapping[str, jz_quant.QuantSpec],
    **options: Any,
) -> Any:
    """Round to nearest: ``specs`` (path → spec in the kernel's own axes) per kernel (a
    pruned weight stays zero: every grid holds 0 exactly)."""
    return jz_quant.quantize_params(params, [(re.escape(p), s) for p, s in specs.items()])


def _gptq(
    fwd: Callable[..., Any],
    params: Any,
    batches: Iterable[Any],
    specs: Mapping[str, jz_quant.QuantSpec],
    *,
    layouts: Mapping[str, Any],
    damp: float,
    act_order: bool,
    mask: Any = None,
    progress: bool = False,
) -> Any:
    """GPTQ (:func:`jaxzip.quant.gptq`) with ``specs``' bits, groups and grid per kernel,
    holding ``mask``'s pruned weights at zero; ``progress``: a bar over the kernels."""
    rules = [
        (
            re.escape(p),
            jz_quant.QuantSpec(
                bits=s.bits, axes=(-1,), group_size=s.group_size, symmetric=s.symmetric
            ),
        )
        for p, s in specs.items()
    ]
    return jz_quant.gptq(
        fwd,
        params,
        batches,
        rules,
        layouts=layouts,
        damp=damp,
        act_order=act_order,
        mask=mask,
        progress=progress,
    )


@dataclasses.dataclass(frozen=True)
class Pruner:
    """What a ``[prune] method`` names.

    Attributes:
      oneshot: ``None`` for magnitude pruning (the stage ranks the weights itself, with
        ``allocation`` and ``rounds``); else a one-shot method ``(apply_fn, params,
        batches, *, sparsity, structure, where, progress) -> (params, mask)`` that prunes each
        selected kernel from calibration batches.
    """

    oneshot: Callable[..., Any] | None


def _wanda(fwd: Callable[..., Any], params: Any, batches: Any, **options: Any) -> Any:
    """Wanda (:func:`jaxzip.prune.wanda`): the mask, and the weights it keeps unchanged."""
    mask = jz_prune.wanda(fwd, params, batches, **options)
    return jz_prune.apply_mask(params, mask), mask


NAMES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "model": MappingProxyType(
            {
                "mlp": MLP,
                "lenet_300_100": lenet_300_100,
                "lenet5": LeNet5,
                "small_cnn": SmallCNN,
                "transformer": Transformer,
            }
        ),
        # (schedule, weight_decay, momentum) -> tx; weight decay on kernels only (L2, or AdamW's)
        "optimizer": MappingProxyType({"sgd": _sgd, "adam": _adam, "adamw": _adamw}),
        # (peak learning rate, total_steps, warmup_steps) -> schedule
        "schedule": MappingProxyType(
            {
                "constant": lambda lr, total, warmup: optax.constant_schedule(lr),
                "cosine": lambda lr, total, warmup: optax.cosine_decay_schedule(
                    lr, decay_steps=total
                ),
                "warmup_cosine": _warmup_cosine,
            }
        ),
        "allocation": MappingProxyType(
            {
                "global": jz_prune.Global(),
                "uniform": jz_prune.Uniform(),
                "erk": jz_prune.ERK(),
            }
        ),
        "pruner": MappingProxyType(
            {
                "magnitude": Pruner(None),
                "sparsegpt": Pruner(jz_prune.sparsegpt),  # reconstructs the kept weights
                "wanda": Pruner(_wanda),
            }
        ),
        "quantizer": MappingProxyType(
            {"gptq": Quantizer(_gptq, calibrated=True), "rtn": Quantizer(_rtn, calibrated=False)}
        ),
        "strategy": MappingProxyType({"greedy": jz_auto.Greedy(), "optuna": jz_auto.Optuna()}),
    }
)
"""Kind (``"model"``, ``"optimizer"``, ``"schedule"``, ``"allocation"``, ``"pruner"``,
``"quantizer"``, ``"strategy"``) → config name → object (or the factory that builds it)."""


def names(kind: str) -> tuple[str, ...]:
    """The config names of one kind, in table order.

    Example:
      >>> names("optimizer")
      ('sgd', 'adam', 'adamw')
    """
    return tuple(NAMES[kind])


ModelName = Literal[names("model")]  # the config's types, for its checks and its docs
TOKEN_MODELS = ("transformer",)
"""The model names that take int token windows ``(N, T)`` (text data), not images."""
OptimizerName = Literal[names("optimizer")]
ScheduleName = Literal[names("schedule")]
AllocationName = Literal[names("allocation")]
PrunerName = Literal[names("pruner")]
QuantizerName = Literal[names("quantizer")]


def lookup(kind: str, name: Any, *, where: str) -> Any:
    """The object that ``name`` means for ``kind``; the one error for an unknown name.

    Raises:
      ConfigError: ``name`` is not one of :func:`names` of ``kind``; the message
        names ``where``, the valid names and what was given.

    Example:
      >>> lookup("allocation", "erk", where="prune.allocation")
      ERK(power=1.0)
      >>> lookup("strategy", "sa", where="strategy")
      Traceback (most recent call last):
      ...
      jaxzip._errors.ConfigError: strategy must be one of ['greedy', 'optuna'], got 'sa'
    """
    table = NAMES[kind]
    if not isinstance(name, str) or name not in table:
        raise ConfigError(f"{where} must be one of {list(table)}, got {name!r}")
    return table[name]


def _accepted(ctor: Callable[..., nn.Module]) -> list[str]:
    if isinstance(ctor, type) and issubclass(ctor, nn.Module):
        return [
            f.name
            for f in ctor.__dataclass_fields__.values()
            if f.init and f.name not in ("parent", "name")
        ]
    return list(inspect.signature(ctor).parameters)


def make_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds the reference model a config names (``model.name``, ``distill.model``).

    Args:
      name: one of :func:`names` ``("model")``: ``"mlp"`` (needs ``widths``),
        ``"lenet_300_100"``, ``"lenet5"``, ``"small_cnn"``, ``"transformer"``.
      **kwargs: the model's own arguments (``num_classes``, and for ``"mlp"``
        ``widths``, ``dropout_rate``, ``input_dropout_rate``; for
        ``"transformer"`` the fields of :class:`jaxzip.models.Transformer`).

    Returns:
      The linen module.

    Raises:
      ConfigError: an unknown ``name`` (the message lists the valid names), an
        argument the model does not take, a missing ``widths`` or a bad value.

    Example:
      >>> make_model("mlp", widths=(8,), num_classes=3).widths
      (8,)
      >>> make_model("resnet")
      Traceback (most recent call last):
      ...
      jaxzip._errors.ConfigError: make_model: name must be one of ['mlp', 'lenet_300_100', 'lenet5', 'small_cnn', 'transformer'], got 'resnet'
    """
    ctor = lookup("model", name, where="make_model: name")
    accepted = _accepted(ctor)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"make_model: model {name!r} got unexpected argument(s) {unknown}; "
            f"it accepts {accepted}"
        )
    if name == "mlp" and "widths" not in kwargs:
        raise ConfigError("make_model: model 'mlp' needs widths=(...), e.g. widths=(300, 100)")
    try:
        return ctor(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"make_model: bad argument for model {name!r}: {e}") from e


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"make_optimizer: {name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"make_optimizer: {name} must be finite, got {value!r}")
    return float(value)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"make_optimizer: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ConfigError(f"make_optimizer: {name} must be at least {minimum}, got {value}")
    return value


def make_optimizer(
    *,
    name: str,
    learning_rate: float,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> optax.GradientTransformation:
    """Builds the optax optimizer a ``[train]`` section names, with its schedule.

    Weight decay applies to kernels only (leaves with ``ndim >= 2``, see
    :func:`jaxzip.train.kernel_mask`), never to biases: L2 regularization
    (``optax.add_decayed_weights`` before the optimizer) for ``"sgd"`` and
    ``"adam"``, AdamW's decoupled decay for ``"adamw"``.

    Args:
      name: ``"sgd"`` (with Nesterov ``momentum``), ``"adam"`` or ``"adamw"``.
      learning_rate: the (peak) learning rate, > 0.
      schedule: ``"constant"``; ``"cosine"`` (decays to 0 over ``total_steps``);
        ``"warmup_cosine"`` (linear warm-up from 0 over ``warmup_steps``, then
        cosine decay to 0 at ``total_steps``).
      total_steps: the number of optimizer steps of the run (>= 1).
      warmup_steps: only ``"warmup_cosine"`` uses them, and then needs
        ``1 <= warmup_steps < total_steps``; other schedules need 0.
      weight_decay: decay coefficient, >= 0 (0 disables it).
      momentum: SGD momentum in ``[0, 1)``; ignored by ``"adam"`` and ``"adamw"``.

    Returns:
      The ``optax.GradientTransformation``.

    Raises:
      ConfigError: (a ``ValueError``) an unknown ``name``/``schedule`` or a value
        out of range; the message names the argument.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_optimizer(name="sgd", learning_rate=0.1, schedule="constant",
      ...                     total_steps=100, weight_decay=0.5, momentum=0.0)
      >>> params = {"kernel": jnp.ones((1, 1)), "bias": jnp.ones(1)}
      >>> grads = {"kernel": jnp.zeros((1, 1)), "bias": jnp.zeros(1)}
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> round(float(updates["kernel"][0, 0]), 6), abs(float(updates["bias"][0]))
      (-0.05, 0.0)
    """
    build = lookup("optimizer", name, where="make_optimizer: name")
    make_schedule = lookup("schedule", schedule, where="make_optimizer: schedule")
    learning_rate = _number("learning_rate", learning_rate)
    if learning_rate <= 0:
        raise ConfigError(f"make_optimizer: learning_rate must be > 0, got {learning_rate}")
    total_steps = _int("total_steps", total_steps, 1)
    warmup_steps = _int("warmup_steps", warmup_steps, 0)
    if schedule == "warmup_cosine" and not 1 <= warmup_steps < total_steps:
        raise ConfigError(
            "make_optimizer: schedule='warmup_cosine' needs 1 <= warmup_steps < total_steps, "
            f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if schedule != "warmup_cosine" and warmup_steps != 0:
        raise ConfigError(
            f"make_optimizer: warmup_steps={warmup_steps} needs schedule='warmup_cosine', "
            f"got schedule={schedule!r} (set warmup_steps=0)"
        )
    weight_decay = _number("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ConfigError(f"make_optimizer: weight_decay must be >= 0, got {weight_decay}")
    momentum = _number("momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"make_optimizer: momentum must be in [0, 1), got {momentum}")
    return build(make_schedule(learning_rate, total_steps, warmup_steps), weight_decay, momentum)
