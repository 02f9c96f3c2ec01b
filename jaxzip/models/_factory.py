"""``make_model``: build a reference model from its name (the pipeline's ``model.name``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxzip._errors import ConfigError
from jaxzip.models._cnn import LeNet5, SmallCNN
from jaxzip.models._mlp import MLP, lenet_300_100

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lenet_300_100": lenet_300_100,
    "lenet5": LeNet5,
    "small_cnn": SmallCNN,
}

MODEL_NAMES: tuple[str, ...] = tuple(_MODELS)
"""The names :func:`make_model` accepts."""


def _accepted(ctor: Callable[..., nn.Module]) -> list[str]:
    if isinstance(ctor, type) and issubclass(ctor, nn.Module):
        return [
            f.name
            for f in ctor.__dataclass_fields__.values()
            if f.init and f.name not in ("parent", "name")
        ]
    return list(inspect.signature(ctor).parameters)


def make_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds a reference model by name.

    Args:
      name: one of ``"mlp"`` (:class:`MLP`, needs ``widths``), ``"lenet_300_100"``,
        ``"lenet5"`` (:class:`LeNet5`), ``"small_cnn"`` (:class:`SmallCNN`).
      **kwargs: the model's own arguments (``num_classes``, and for ``"mlp"``
        ``widths`` and ``dropout_rate``).

    Returns:
      The linen module.

    Raises:
      ConfigError: (a ``ValueError``) unknown ``name`` (the message lists the valid
        names), an argument the model does not take, a missing required argument,
        or a bad value.

    Example:
      >>> make_model("mlp", widths=(800, 800))
      MLP(
          # attributes
          widths = (800, 800)
          num_classes = 10
          dropout_rate = 0.0
          input_dropout_rate = 0.0
          act_quant = None
      )
      >>> make_model("resnet")
      Traceback (most recent call last):
      ...
      jaxzip._errors.ConfigError: make_model: unknown model name 'resnet'; valid names: 'mlp', 'lenet_300_100', 'lenet5', 'small_cnn'
    """
    if not isinstance(name, str) or name not in _MODELS:
        valid = ", ".join(repr(n) for n in MODEL_NAMES)
        raise ConfigError(f"make_model: unknown model name {name!r}; valid names: {valid}")
    ctor = _MODELS[name]
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
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"make_model: bad argument for model {name!r}: {e}") from e
