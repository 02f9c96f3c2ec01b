"""Multilayer perceptrons: ``MLP`` and Deep Compression's LeNet-300-100."""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ActQuant = Callable[[jax.Array], jax.Array]
"""An activation fake-quantizer, e.g. ``lambda x: jz.quant.fake_quant(x, spec)``."""


def _check_act_quant(owner: str, act_quant: object) -> None:
    if act_quant is not None and not callable(act_quant):
        raise ValueError(
            f"{owner}: act_quant must be None or a callable x -> x (e.g. a fake quantizer), "
            f"got {act_quant!r}"
        )


def quantize_input(act_quant: ActQuant | None, x: jax.Array) -> jax.Array:
    """Applies ``act_quant`` to a weighted layer's input (identity when it is None)."""
    return x if act_quant is None else act_quant(x)


def check_dropout_rate(owner: str, name: str, rate: object) -> None:
    """Raises ``ValueError`` naming ``owner`` and ``name`` unless ``rate`` is a finite
    number in ``[0, 1)`` (bools are refused)."""
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or not math.isfinite(rate)
        or not 0.0 <= rate < 1.0
    ):
        raise ValueError(f"{owner}: {name} must be a float in [0, 1), got {rate!r}")


def _check_num_classes(owner: str, num_classes: object) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{owner}: num_classes must be a positive int, got {num_classes!r}")


class MLP(nn.Module):
    """A ReLU multilayer perceptron on flattened images.

    Layers are named ``Dense_0 ... Dense_k``; the last one (``Dense_{len(widths)}``)
    is the classifier. Dropout, when ``dropout_rate > 0``, follows every hidden
    layer, and when ``input_dropout_rate > 0`` it also drops input pixels (as
    Srivastava et al.'s dropout nets did, with 0.2 on the input and 0.5 on hidden
    units). Both are active only for ``train=True`` (the ``"dropout"`` PRNG stream
    must then be given, e.g. ``key=`` of :func:`jaxzip.models.linen_apply_fn`).

    Hinton et al.'s distillation models are ``MLP((1200, 1200), dropout_rate=0.5)``
    (the teacher) and ``MLP((800, 800))`` (the student); LeNet-300-100 is
    ``MLP((300, 100))`` (see :func:`lenet_300_100`).

    Attributes:
      widths: hidden layer widths (may be empty: a linear classifier).
      num_classes: number of output logits.
      dropout_rate: dropout probability after each hidden layer, in ``[0, 1)``.
      input_dropout_rate: dropout probability of each input pixel, in ``[0, 1)``.
      act_quant: optional activation fake-quantizer applied to the input of every
        Dense layer (activation QAT), e.g. ``lambda x: jz.quant.fake_quant(x,
        QuantSpec(bits=8, signed=False))``; None leaves activations in float.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP((8, 8), num_classes=3)
      >>> x = jnp.ones((2, 4, 4, 1))
      >>> params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]  # shapes only
      >>> sorted(params), jax.eval_shape(model.apply, {"params": params}, x).shape
      (['Dense_0', 'Dense_1', 'Dense_2'], (2, 3))
    """

    widths: tuple[int, ...]
    num_classes: int = 10
    dropout_rate: float = 0.0
    input_dropout_rate: float = 0.0
    act_quant: ActQuant | None = None

    def __post_init__(self) -> None:
        _check_act_quant("MLP", self.act_quant)
        widths = self.widths
        if not isinstance(widths, (tuple, list)) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
        ):
            raise ValueError(f"MLP: widths must be a tuple of positive ints, got {widths!r}")
        object.__setattr__(self, "widths", tuple(widths))
        _check_num_classes("MLP", self.num_classes)
        for name in ("dropout_rate", "input_dropout_rate"):
            check_dropout_rate("MLP", name, getattr(self, name))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)`` for images ``x`` of shape ``(N, ...)``.

        Raises:
          ValueError: ``train=True`` with ``dropout_rate > 0`` or ``input_dropout_rate > 0``
            but no ``"dropout"`` PRNG key.
        """
        use_dropout = train and self.dropout_rate > 0.0
        use_input_dropout = train and self.input_dropout_rate > 0.0
        if (use_dropout or use_input_dropout) and not self.has_rng("dropout"):
            raise ValueError(
                f"MLP: train=True with dropout_rate={self.dropout_rate}, input_dropout_rate="
                f"{self.input_dropout_rate} needs a dropout PRNG key "
                "(apply_fn(..., key=key) or rngs={'dropout': key}); got none"
            )
        x = jnp.reshape(x, (x.shape[0], -1))
        if use_input_dropout:
            x = nn.Dropout(self.input_dropout_rate, deterministic=False)(x)
        for width in self.widths:
            x = nn.relu(nn.Dense(width)(quantize_input(self.act_quant, x)))
            if use_dropout:
                x = nn.Dropout(self.dropout_rate, deterministic=False)(x)
        return nn.Dense(self.num_classes)(quantize_input(self.act_quant, x))


def lenet_300_100(num_classes: int = 10, act_quant: ActQuant | None = None) -> MLP:
    """LeNet-300-100: the 784-300-100-10 MLP of LeCun et al. and Han et al.'s Deep Compression.

    On 28x28x1 inputs it has 266,610 parameters.

    Args:
      num_classes: number of output logits.
      act_quant: optional activation fake-quantizer (see :class:`MLP`).

    Returns:
      ``MLP((300, 100), num_classes=num_classes, act_quant=act_quant)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import init_params, param_count
      >>> init = lambda: init_params(lenet_300_100(), jax.random.key(0), jnp.ones((1, 28, 28, 1)))
      >>> param_count(jax.eval_shape(init))
      266610
    """
    return MLP((300, 100), num_classes=num_classes, act_quant=act_quant)
