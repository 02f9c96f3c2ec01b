"""Config sections -> the objects the library takes: the ``[train]`` optimizer, the
``[model]`` module, the training augmentation and the run's named keys.

Each builder reads one section (or the whole config) and returns a library
object; names inside a section go through :data:`jaxzip.config.NAMES`
(:func:`~jaxzip.config.make_model`, :func:`~jaxzip.config.make_optimizer`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax

from jaxzip import train as jz_train
from jaxzip._keys import named_key
from jaxzip.config._experiment import ExperimentConfig, ModelConfig, TrainConfig
from jaxzip.config._fields import TRANSFORMER_FIELDS
from jaxzip.config._names import make_model, make_optimizer
from jaxzip.config._sections import DistillConfig

__all__ = [
    "augment_of",
    "config_arch",
    "flop_layers",
    "make_module",
    "make_train_tx",
    "model_arch",
    "run_key",
]


def run_key(cfg: ExperimentConfig, name: str) -> jax.Array:
    """The key of the consumer ``name`` in a run: ``named_key(jax.random.key(experiment.seed), name)``.

    The config's one seed is the run's root key; each stage takes its own key
    from it by name (``"model"``, ``"train"``, ``"distill"``, ...), never by an
    integer offset.

    Example:
      >>> from jaxzip.config import ExperimentConfig
      >>> a = run_key(ExperimentConfig(), "train")
      >>> bool((jax.random.key_data(a) == jax.random.key_data(run_key(ExperimentConfig(), "model"))).all())
      False
    """
    return named_key(jax.random.key(cfg.experiment.seed), name)


def model_arch(
    name: str,
    widths: Sequence[int],
    dropout_rate: float,
    input_dropout_rate: float,
    **sizes: int,
) -> dict[str, Any]:
    """The run state's ``arch``: what :func:`make_module` builds a network from, for
    ``[model]`` and for the ``[distill]`` student alike (``sizes``: a transformer's
    ``num_layers``, ``d_model``, ``num_heads``, ``mlp_ratio`` and ``max_len``).

    Example:
      >>> model_arch("mlp", (8,), 0.5, 0.2)
      {'name': 'mlp', 'widths': [8], 'dropout_rate': 0.5, 'input_dropout_rate': 0.2}
    """
    return {
        "name": name,
        "widths": list(widths),
        "dropout_rate": dropout_rate,
        "input_dropout_rate": input_dropout_rate,
        **sizes,
    }


def config_arch(m: ModelConfig | DistillConfig, seq_len: int) -> dict[str, Any]:
    """The ``arch`` of ``[model]`` or of the ``[distill]`` student (its ``model``); a
    transformer's context is the data's ``seq_len``.

    Example:
      >>> config_arch(ModelConfig(name="transformer", d_model=8, num_heads=2), 16)["max_len"]
      16
      >>> config_arch(DistillConfig(model="transformer", num_layers=1), 16)["num_layers"]
      1
    """
    name = m.model if isinstance(m, DistillConfig) else m.name
    sizes = {}
    if name == "transformer":
        sizes = {f: getattr(m, f) for f in TRANSFORMER_FIELDS} | {"max_len": seq_len}
    return model_arch(name, m.widths, m.dropout_rate, m.input_dropout_rate, **sizes)


def make_module(arch: Mapping[str, Any], num_classes: int) -> Any:
    """The linen module of an ``arch`` from :func:`model_arch` (the run state's ``arch``).

    ``num_classes`` is the data's (a transformer's vocabulary).

    Example:
      >>> module = make_module(model_arch("mlp", [8], 0.0, 0.2), 10)
      >>> type(module).__name__, module.input_dropout_rate
      ('MLP', 0.2)
    """
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if arch["name"] == "mlp":
        kwargs.update(
            widths=tuple(arch["widths"]),
            dropout_rate=arch["dropout_rate"],
            input_dropout_rate=arch["input_dropout_rate"],
        )
    elif arch["name"] == "transformer":
        kwargs = {f: arch[f] for f in (*TRANSFORMER_FIELDS, "max_len", "dropout_rate")}
        kwargs["vocab_size"] = num_classes
    return make_model(arch["name"], **kwargs)


def flop_layers(arch: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The layer chain :func:`jaxzip.prune.flops` counts for the model ``arch`` describes;
    None for the models it cannot count (``small_cnn`` pads its convolutions, ``flops``
    assumes unpadded ones; a transformer is not a chain).

    Example:
      >>> flop_layers(model_arch("mlp", [8, 4], 0.0, 0.0))
      ('Dense_0', 'Dense_1', 'Dense_2')
    """
    chains = {
        "lenet5": ("Conv_0", "Conv_1", "Dense_0", "Dense_1"),
        "lenet_300_100": ("Dense_0", "Dense_1", "Dense_2"),
        "mlp": tuple(f"Dense_{i}" for i in range(len(arch.get("widths", ())) + 1)),
    }
    return chains.get(arch["name"])


def make_train_tx(
    t: TrainConfig, *, learning_rate: float, epochs: int, steps_per_epoch: int
) -> optax.GradientTransformation:
    """The optimizer of ``[train]`` (name, schedule, warmup, weight decay, momentum, gradient
    clipping) at a given LR.

    The schedule spans ``epochs * steps_per_epoch`` steps, so a retraining run
    (``[prune]``) gets its own full schedule at its own peak learning rate. With
    ``clip_norm`` the gradients are clipped to that global norm first, in every
    training of the run (train, prune, distill, auto).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_train_tx(TrainConfig(optimizer="sgd", momentum=0.0), learning_rate=0.5,
      ...                    epochs=1, steps_per_epoch=10)
      >>> updates, _ = tx.update({"w": jnp.ones(1)}, tx.init({"w": jnp.zeros(1)}))
      >>> float(updates["w"][0])
      -0.5
    """
    total_steps = max(1, epochs * steps_per_epoch)
    warmup_steps = 0
    if t.warmup_epochs > 0:  # at least one step of warmup and one of decay
        warmup_steps = min(max(1, round(t.warmup_epochs * steps_per_epoch)), total_steps - 1)
    tx = make_optimizer(
        name=t.optimizer,
        learning_rate=learning_rate,
        schedule=t.schedule,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        weight_decay=t.weight_decay,
        momentum=t.momentum,
    )
    return optax.chain(optax.clip_by_global_norm(t.clip_norm), tx) if t.clip_norm else tx


def augment_of(t: TrainConfig | DistillConfig) -> jz_train.RandomShift | None:
    """The training-time augmentation ``[train]`` (or ``[distill]``) asks for with
    its ``augment_shift`` (None when off).

    Example:
      >>> augment_of(TrainConfig(augment_shift=2)), augment_of(TrainConfig())
      (RandomShift(pixels=2), None)
    """
    return jz_train.RandomShift(pixels=t.augment_shift) if t.augment_shift else None
