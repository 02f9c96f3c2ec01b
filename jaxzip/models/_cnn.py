"""Convolutional reference models: Deep Compression's LeNet-5 and a small CNN for 8x8 digits."""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxzip.models._mlp import ActQuant, _check_act_quant, _check_num_classes, quantize_input
from jaxzip.models._pool import max_pool_2x2


def _check_images(owner: str, x: jax.Array) -> None:
    if x.ndim != 4:
        raise ValueError(f"{owner}: x must be images of shape (N, H, W, C), got shape {x.shape}")


def _left(side: int, kernel: int, padding: str) -> int:
    """Pixels left of one image side after the two conv → max-pool-2 blocks."""
    for _ in range(2):
        side = (side - kernel + 1 if padding == "VALID" else side) // 2
    return side


class _TwoConvNet(nn.Module):
    """Two conv → max-pool 2 blocks, flatten, a hidden ReLU Dense, the classifier.

    A subclass sets the layers: ``convs`` (filters of ``Conv_0``, ``Conv_1``),
    ``kernel``, ``padding``, ``conv_relu`` (a ReLU after each conv) and ``hidden``
    (the width of ``Dense_0``).

    Attributes:
      num_classes: number of output logits.
      act_quant: optional activation fake-quantizer applied to the input of every
        Conv and Dense layer (see :class:`MLP`).
    """

    num_classes: int = 10
    act_quant: ActQuant | None = None
    convs: ClassVar[tuple[int, int]]
    kernel: ClassVar[tuple[int, int]]
    padding: ClassVar[str]
    conv_relu: ClassVar[bool]
    hidden: ClassVar[int]

    def __post_init__(self) -> None:
        _check_num_classes(type(self).__name__, self.num_classes)
        _check_act_quant(type(self).__name__, self.act_quant)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)`` for images ``x`` of shape ``(N, H, W, C)``."""
        owner = type(self).__name__
        _check_images(owner, x)
        for side, k in zip(x.shape[1:3], self.kernel, strict=True):
            if _left(side, k, self.padding) < 1:  # else a Dense with no inputs
                least = next(s for s in range(1, 1 << 16) if _left(s, k, self.padding) >= 1)
                raise ValueError(
                    f"{owner}: x must be images of at least {least}x{least} pixels (its two "
                    f"{k}x{k} {self.padding} conv + max-pool-2 blocks leave none of a smaller "
                    f"side), got {x.shape[1]}x{x.shape[2]}"
                )
        q = functools.partial(quantize_input, self.act_quant)
        for features in self.convs:
            x = nn.Conv(features, self.kernel, padding=self.padding)(q(x))
            x = nn.relu(x) if self.conv_relu else x
            x = max_pool_2x2(x)
        x = jnp.reshape(x, (x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden)(q(x)))
        return nn.Dense(self.num_classes)(q(x))


class LeNet5(_TwoConvNet):
    """LeNet-5 as in Han et al.'s Deep Compression (Caffe's MNIST LeNet).

    ``Conv_0`` (20 filters 5x5, VALID) → max-pool 2 → ``Conv_1`` (50 filters 5x5,
    VALID) → max-pool 2 → flatten → ``Dense_0`` (500, ReLU) → ``Dense_1``
    (classifier). As in the Caffe model there is no activation after the
    convolutions. On 28x28x1 inputs it has 431,080 parameters. Attributes:
    ``num_classes`` (10) and ``act_quant`` (see :class:`MLP`), as every reference CNN.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import init_params, param_count
      >>> init = lambda: init_params(LeNet5(), jax.random.key(0), jnp.ones((1, 28, 28, 1)))
      >>> params = jax.eval_shape(init)  # shapes only: nothing is computed
      >>> sorted(params), param_count(params)
      (['Conv_0', 'Conv_1', 'Dense_0', 'Dense_1'], 431080)
    """

    convs = (20, 50)
    kernel = (5, 5)
    padding = "VALID"
    conv_relu = False
    hidden = 500


class SmallCNN(_TwoConvNet):
    """A small convolutional net for 8x8 images (scikit-learn's digits).

    ``Conv_0`` (16 filters 3x3, SAME, ReLU) → max-pool 2 → ``Conv_1`` (32 filters
    3x3, SAME, ReLU) → max-pool 2 → flatten → ``Dense_0`` (64, ReLU) → ``Dense_1``
    (classifier). On 8x8x1 inputs it has 13,706 parameters. Attributes:
    ``num_classes`` (10) and ``act_quant`` (see :class:`MLP`), as every reference CNN.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import init_params, param_count
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> params = jax.eval_shape(lambda: init_params(SmallCNN(), jax.random.key(0), x))
      >>> logits = jax.eval_shape(SmallCNN().apply, {"params": params}, x)
      >>> logits.shape, param_count(params)
      ((2, 10), 13706)
    """

    convs = (16, 32)
    kernel = (3, 3)
    padding = "SAME"
    conv_relu = True
    hidden = 64
