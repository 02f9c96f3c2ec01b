"""Model families for automatic student construction: widths and channels scaled by a multiplier.

:class:`MLPFamily` scales an MLP's hidden widths, :class:`CNNFamily` a CNN's
channels (and dense widths) through :class:`ScaledCNN`; ``family.build(m,
num_classes)`` gives the flax module of the candidate with multiplier ``m``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxzip.models import MLP


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _widths(owner: str, name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    if (
        not isinstance(value, (tuple, list))
        or not all(_is_int(w) and w >= 1 for w in value)
        or (not value and not allow_empty)
    ):
        what = "a tuple of positive ints" + ("" if allow_empty else " (not empty)")
        raise ValueError(f"{owner}: {name} must be {what}, got {value!r}")
    return tuple(int(w) for w in value)


def _multiplier(owner: str, m: object) -> float:
    if isinstance(m, bool) or not isinstance(m, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: a multiplier must be a real number, got {m!r}")
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"{owner}: a multiplier must be finite and > 0, got {m!r}")
    return float(m)


def scale_widths(widths: Sequence[int], multiplier: float) -> tuple[int, ...]:
    """``round(w * multiplier)`` per width (halves round up), at least 1.

    Example:
      >>> scale_widths((1200, 1200, 5), 0.1)
      (120, 120, 1)
    """
    m = _multiplier("scale_widths", multiplier)
    return tuple(max(1, math.floor(w * m + 0.5)) for w in widths)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MLPFamily:
    """MLP students ``MLP(scale_widths(widths, m))`` (see :class:`jaxzip.models.MLP`).

    Args:
      widths: the hidden widths at multiplier 1, e.g. the teacher's ``(1200, 1200)``.
      dropout_rate: the students' dropout after each hidden layer, in ``[0, 1)``.

    Raises:
      ValueError: empty or non-positive ``widths``, or ``dropout_rate`` out of range.

    Example:
      >>> family = MLPFamily(widths=(1200, 1200))
      >>> family.widths_for(0.05), family.build(0.05, num_classes=10).widths
      ((60, 60), (60, 60))
    """

    widths: tuple[int, ...]
    dropout_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "widths", _widths("MLPFamily", "widths", self.widths, allow_empty=False)
        )
        r = self.dropout_rate
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= r < 1.0:
            raise ValueError(f"MLPFamily: dropout_rate must be a float in [0, 1), got {r!r}")

    def widths_for(self, multiplier: float) -> tuple[int, ...]:
        """The hidden widths of the student at ``multiplier``."""
        return scale_widths(self.widths, multiplier)

    def build(self, multiplier: float, num_classes: int) -> nn.Module:
        """The linen student at ``multiplier`` with ``num_classes`` logits."""
        widths = self.widths_for(multiplier)
        return MLP(widths, num_classes=num_classes, dropout_rate=self.dropout_rate)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CNNFamily:
    """CNN students :class:`ScaledCNN`: conv channels and dense widths scaled alike.

    ``CNNFamily.lenet5()`` and ``CNNFamily.small_cnn()`` give, at multiplier 1,
    the layers (and parameter counts) of :class:`jaxzip.models.LeNet5` and
    :class:`jaxzip.models.SmallCNN`.

    Args:
      channels: conv output channels at multiplier 1 (each conv is followed by a
        2x2 max-pool).
      dense_widths: hidden dense widths at multiplier 1 (may be empty).
      kernel_size: square conv kernel size.
      padding: ``"SAME"`` or ``"VALID"``.
      conv_relu: ReLU after each conv (LeNet-5 as in Caffe has none).

    Raises:
      ValueError: a bad channel list, width, kernel size or padding.

    Example:
      >>> CNNFamily.small_cnn().widths_for(0.5)
      (8, 16, 32)
    """

    channels: tuple[int, ...]
    dense_widths: tuple[int, ...] = ()
    kernel_size: int = 3
    padding: str = "SAME"
    conv_relu: bool = True

    def __post_init__(self) -> None:
        _check_cnn("CNNFamily", self, setter=lambda k, v: object.__setattr__(self, k, v))

    @classmethod
    def lenet5(cls) -> CNNFamily:
        """LeNet-5's layout: convs 20, 50 (5x5, VALID, no ReLU), dense 500."""
        return cls(
            channels=(20, 50), dense_widths=(500,), kernel_size=5, padding="VALID", conv_relu=False
        )

    @classmethod
    def small_cnn(cls) -> CNNFamily:
        """SmallCNN's layout: convs 16, 32 (3x3, SAME, ReLU), dense 64."""
        return cls(channels=(16, 32), dense_widths=(64,))

    def widths_for(self, multiplier: float) -> tuple[int, ...]:
        """The scaled conv channels followed by the scaled dense widths."""
        return scale_widths(self.channels + self.dense_widths, multiplier)

    def build(self, multiplier: float, num_classes: int) -> nn.Module:
        """The linen student at ``multiplier`` with ``num_classes`` logits."""
        w, n = self.widths_for(multiplier), len(self.channels)
        return ScaledCNN(
            channels=w[:n],
            dense_widths=w[n:],
            num_classes=num_classes,
            kernel_size=self.kernel_size,
            padding=self.padding,
            conv_relu=self.conv_relu,
        )


def _check_cnn(owner: str, obj: Any, setter: Callable[[str, Any], None]) -> None:
    setter("channels", _widths(owner, "channels", obj.channels, allow_empty=False))
    setter("dense_widths", _widths(owner, "dense_widths", obj.dense_widths, allow_empty=True))
    if not _is_int(obj.kernel_size) or obj.kernel_size < 1:
        raise ValueError(f"{owner}: kernel_size must be a positive int, got {obj.kernel_size!r}")
    if obj.padding not in ("SAME", "VALID"):
        raise ValueError(f"{owner}: padding must be 'SAME' or 'VALID', got {obj.padding!r}")
    if not isinstance(obj.conv_relu, bool):
        raise ValueError(f"{owner}: conv_relu must be a bool, got {obj.conv_relu!r}")


class ScaledCNN(nn.Module):
    """A CNN with given channels: ``Conv_i`` (+ReLU) → 2x2 max-pool, then ``Dense_j`` layers.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import init_params, param_count
      >>> x = jnp.ones((1, 28, 28, 1))
      >>> init = lambda: init_params(CNNFamily.lenet5().build(1.0, 10), jax.random.key(0), x)
      >>> param_count(jax.eval_shape(init))  # LeNet5's count
      431080
    """

    channels: tuple[int, ...]
    dense_widths: tuple[int, ...] = ()
    num_classes: int = 10
    kernel_size: int = 3
    padding: str = "SAME"
    conv_relu: bool = True

    def __post_init__(self) -> None:
        _check_cnn("ScaledCNN", self, setter=lambda k, v: object.__setattr__(self, k, v))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(N, num_classes)`` for images ``(N, H, W, C)``."""
        if x.ndim != 4:
            raise ValueError(f"ScaledCNN: x must be images (N, H, W, C), got shape {x.shape}")
        k = self.kernel_size
        for c in self.channels:
            if min(x.shape[1:3]) < (k + 1 if self.padding == "VALID" else 2):
                raise ValueError(
                    f"ScaledCNN: feature maps of {x.shape[1:3]} are too small for another "
                    f"{k}x{k} {self.padding} conv and 2x2 pool ({len(self.channels)} in all)"
                )
            x = nn.Conv(c, (k, k), padding=self.padding)(x)
            x = nn.relu(x) if self.conv_relu else x
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = jnp.reshape(x, (x.shape[0], -1))
        for w in self.dense_widths:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.num_classes)(x)


Family = MLPFamily | CNNFamily
