"""Quantization options: :class:`QuantSpec` and the calibration methods.

All options are frozen, keyword-only dataclasses validated on construction.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp
import numpy as np

_ROUNDINGS = ("nearest", "stochastic")


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantSpec:
    """How to quantize one array: bit width, integer grid, granularity and rounding.

    Integer grids (``qmin..qmax`` and the zero point):

    * symmetric, signed: ``-(2^(b-1)-1) .. 2^(b-1)-1``, zero point 0 (narrow range,
      so ``-x`` quantizes to ``-q``);
    * symmetric, unsigned: ``1 .. 2^b-1``, zero point ``2^(b-1)``;
    * asymmetric, signed: ``-2^(b-1) .. 2^(b-1)-1``; asymmetric, unsigned:
      ``0 .. 2^b-1``; the zero point is an integer computed from the range, so
      0.0 is always exactly representable.

    Values are stored as ``int8`` (signed) or ``uint8`` (unsigned).

    Granularity: ``axes=()`` is per-tensor (one scale); ``axes`` lists the axes
    that *keep* their own scale, so ``axes=(-1,)`` is per-output-channel for a
    Dense kernel ``(in, out)`` or an HWIO conv kernel. ``group_size=g`` also
    splits ``group_axis`` into consecutive groups of ``g`` entries, each with
    its own scale (per-group quantization).

    Args:
      bits: bit width, 1 to 8. Symmetric grids need at least 2 bits (for 1-bit
        weights use :func:`binarize`).
      signed: signed (``int8``) or unsigned (``uint8``) storage.
      symmetric: symmetric grid around zero, or asymmetric with a zero point.
      axes: axes that keep their own scale; ``()`` is per-tensor.
      group_size: if set, the size of the groups along ``group_axis``; it must
        divide that axis.
      group_axis: the axis split into groups (default ``-2``: the input axis of
        a Dense ``(in, out)`` or HWIO kernel). Must not be in ``axes``.
      rounding: ``"nearest"`` (round half to even) or ``"stochastic"`` (which
        needs an explicit ``key`` when quantizing).

    Raises:
      ValueError: a value is out of range.
      TypeError: a value has the wrong type.

    Example:
      >>> QuantSpec(bits=4, axes=(-1,)).qmax
      7
      >>> QuantSpec(bits=8, signed=False, symmetric=False).qmin
      0
    """

    bits: int = 8
    signed: bool = True
    symmetric: bool = True
    axes: tuple[int, ...] = ()
    group_size: int | None = None
    group_axis: int = -2
    rounding: Literal["nearest", "stochastic"] = "nearest"

    def __post_init__(self) -> None:
        if not _is_int(self.bits):
            raise TypeError(f"QuantSpec: bits must be an int, got {self.bits!r}")
        if not 1 <= self.bits <= 8:
            raise ValueError(f"QuantSpec: bits must be in 1..8, got {self.bits}")
        for name in ("signed", "symmetric"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"QuantSpec: {name} must be a bool, got {getattr(self, name)!r}")
        if self.symmetric and self.bits < 2:
            raise ValueError(
                "QuantSpec: a symmetric grid needs bits >= 2, got bits=1; use "
                "symmetric=False or jaxzip.quant.binarize for 1-bit weights"
            )
        if isinstance(self.axes, int) or not isinstance(self.axes, (tuple, list)):
            raise TypeError(f"QuantSpec: axes must be a tuple of ints, got {self.axes!r}")
        if not all(_is_int(a) for a in self.axes):
            raise TypeError(f"QuantSpec: axes must be a tuple of ints, got {self.axes!r}")
        object.__setattr__(self, "axes", tuple(int(a) for a in self.axes))
        if len(set(self.axes)) != len(self.axes):
            raise ValueError(f"QuantSpec: axes must not repeat, got {self.axes}")
        if self.group_size is not None and (not _is_int(self.group_size) or self.group_size < 1):
            raise ValueError(
                f"QuantSpec: group_size must be a positive int or None, got {self.group_size!r}"
            )
        if not _is_int(self.group_axis):
            raise TypeError(f"QuantSpec: group_axis must be an int, got {self.group_axis!r}")
        if self.rounding not in _ROUNDINGS:
            raise ValueError(
                f"QuantSpec: rounding must be one of {_ROUNDINGS}, got {self.rounding!r}"
            )

    @property
    def qmin(self) -> int:
        """The smallest stored integer."""
        half = 2 ** (self.bits - 1)
        if self.symmetric:
            return -(half - 1) if self.signed else 1
        return -half if self.signed else 0

    @property
    def qmax(self) -> int:
        """The largest stored integer."""
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def dtype(self) -> jnp.dtype:
        """The storage dtype: ``int8`` if signed, else ``uint8``."""
        return jnp.dtype(jnp.int8 if self.signed else jnp.uint8)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MinMax:
    """Calibrate to the full range: absmax (symmetric) or min/max (asymmetric).

    Example:
      >>> MinMax()
      MinMax()
    """


@dataclasses.dataclass(frozen=True, kw_only=True)
class Percentile:
    """Calibrate to a percentile of the values (of ``|x|`` for symmetric grids).

    Args:
      percentile: in (0, 100]; asymmetric grids use ``100 - percentile`` and
        ``percentile`` as the low and high ends.

    Example:
      >>> Percentile(percentile=99.9).percentile
      99.9
    """

    percentile: float = 99.99

    def __post_init__(self) -> None:
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
            raise ValueError(f"Percentile: percentile must be in (0, 100], got {p!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MSEClip:
    """Calibrate by searching the clip ratio that minimizes the quantization MSE.

    The min/max range is scaled by each of ``num_ratios`` ratios evenly spaced in
    ``[min_ratio, 1]``; every scale entry (channel, group) keeps the ratio with
    the lowest mean squared error. The search is vectorized over the ratios
    (memory ``num_ratios * x.size``).

    Args:
      num_ratios: number of ratios in the grid (>= 1).
      min_ratio: the smallest ratio, in (0, 1].

    Example:
      >>> MSEClip(num_ratios=50, min_ratio=0.3).num_ratios
      50
    """

    num_ratios: int = 64
    min_ratio: float = 0.2

    def __post_init__(self) -> None:
        if not _is_int(self.num_ratios) or self.num_ratios < 1:
            raise ValueError(f"MSEClip: num_ratios must be a positive int, got {self.num_ratios!r}")
        r = self.min_ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
            raise ValueError(f"MSEClip: min_ratio must be in (0, 1], got {r!r}")


Calibration = MinMax | Percentile | MSEClip
"""A weight calibration method."""

MINMAX = MinMax()
"""The default calibration (an immutable instance, safe as a default argument)."""


def check_calibration(calibration: object) -> None:
    """Raises ``TypeError`` unless ``calibration`` is a calibration method."""
    if not isinstance(calibration, (MinMax, Percentile, MSEClip)):
        raise TypeError(
            "calibration: expected MinMax(), Percentile(...) or MSEClip(...), "
            f"got {type(calibration).__name__} {calibration!r}"
        )


def check_spec(spec: object, what: str = "spec") -> None:
    """Raises ``TypeError`` unless ``spec`` is a :class:`QuantSpec`."""
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"{what}: expected a QuantSpec, got {type(spec).__name__} {spec!r}")
