"""Pruning structures: which groups of weights are kept or removed together.

A structure is a frozen, validated spec. :class:`Unstructured`, :class:`Channel`
and :class:`Block` turn a leaf's scores into *group scores* (one per prunable
group), so the same exact top-k machinery allocates sparsity over groups.
:class:`NByM` is local by construction: it keeps the ``n`` best of every ``m``
consecutive weights along one axis, so its sparsity is always ``1 - n / m``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Unstructured:
    """Every weight is its own group (classic magnitude pruning).

    Example:
      >>> Unstructured()
      Unstructured()
    """

    def check(self, path: str, shape: tuple[int, ...]) -> None:
        """Accepts every shape."""

    def group_scores(self, scores: jax.Array) -> jax.Array:
        """The scores themselves, flattened row-major."""
        return jnp.ravel(scores)

    def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Reshapes a flat keep vector back to ``shape``."""
        return jnp.reshape(keep, shape)


@dataclasses.dataclass(frozen=True)
class NByM:
    """N:M sparsity: keep the ``n`` largest scores of every ``m`` consecutive along ``axis``.

    The default ``axis=-2`` is the *input* axis of a Dense kernel ``(in, out)`` and of
    a linen conv kernel ``(H, W, I, O)``: the reduction dimension, as in NVIDIA's 2:4
    sparsity. Ties inside a group keep the element with the lower index.

    Args:
      n: weights kept per group, ``1 <= n < m``.
      m: group length; must divide the leaf's size along ``axis``.
      axis: the axis along which groups of ``m`` consecutive weights are formed.

    Raises:
      ValueError: ``n``/``m`` are not ints with ``1 <= n < m``.

    Example:
      >>> NByM(2, 4).sparsity
      0.5
    """

    n: int
    m: int
    axis: int = dataclasses.field(default=-2, kw_only=True)

    def __post_init__(self) -> None:
        for name in ("n", "m", "axis"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"NByM: {name} must be an int, got {value!r}")
        if not 1 <= self.n < self.m:
            raise ValueError(f"NByM: expected 1 <= n < m, got n={self.n}, m={self.m}")

    @property
    def sparsity(self) -> float:
        """The fraction of weights removed: ``1 - n / m``."""
        return 1.0 - self.n / self.m

    def check(self, path: str, shape: tuple[int, ...]) -> None:
        """Raises ``ValueError`` if ``axis`` is out of range or ``m`` does not divide it."""
        ndim = len(shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"NByM: axis={self.axis} is out of range for leaf {path!r} of shape {shape}"
            )
        size = shape[self.axis]
        if size % self.m:
            raise ValueError(
                f"NByM: m={self.m} must divide the size {size} of axis {self.axis} of leaf "
                f"{path!r} (shape {shape})"
            )

    def mask(self, scores: jax.Array) -> jax.Array:
        """The N:M keep-mask of one leaf's scores."""
        moved = jnp.moveaxis(scores, self.axis, -1)
        grouped = moved.reshape(*moved.shape[:-1], moved.shape[-1] // self.m, self.m)
        # Rank inside each group: stable descending sort, so ties keep the lower index.
        order = jnp.argsort(-grouped, axis=-1, stable=True)
        ranks = jnp.argsort(order, axis=-1, stable=True)
        keep = (ranks < self.n).reshape(moved.shape)
        return jnp.moveaxis(keep, -1, self.axis)


@dataclasses.dataclass(frozen=True)
class Channel:
    """Whole output units: the last axis of a Dense ``(in, out)`` or HWIO conv kernel.

    A channel's score is the ``ord``-norm of its scores over all other axes (for
    magnitude scores: the L1 or L2 norm of its weights).

    Args:
      ord: 1 (L1, the default, as in Li et al. 2017) or 2 (L2).

    Example:
      >>> Channel(ord=2)
      Channel(ord=2)
    """

    ord: int = dataclasses.field(default=1, kw_only=True)

    def __post_init__(self) -> None:
        if self.ord not in (1, 2) or isinstance(self.ord, bool):
            raise ValueError(f"Channel: ord must be 1 or 2, got {self.ord!r}")

    def check(self, path: str, shape: tuple[int, ...]) -> None:
        """Raises ``ValueError`` for scalar leaves (no channel axis)."""
        if len(shape) < 1:
            raise ValueError(f"Channel: leaf {path!r} is a scalar; it has no channel axis")

    def group_scores(self, scores: jax.Array) -> jax.Array:
        """One score per output unit (last axis)."""
        flat = jnp.reshape(scores, (-1, scores.shape[-1]))
        if self.ord == 1:
            return jnp.sum(jnp.abs(flat), axis=0)
        return jnp.sqrt(jnp.sum(jnp.square(flat), axis=0))

    def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Broadcasts a per-channel keep vector to ``shape``."""
        return jnp.broadcast_to(keep, shape)


@dataclasses.dataclass(frozen=True)
class Block:
    """Blocks of ``shape`` over the trailing ``len(shape)`` axes, kept or removed together.

    A block's score is the sum of its scores (for magnitude: its L1 norm). Leading
    axes not covered by ``shape`` are blocks of size 1.

    Args:
      shape: block size per trailing axis, each >= 1; must divide the leaf's sizes.

    Example:
      >>> Block((2, 2)).shape
      (2, 2)
    """

    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else None
        if (
            not shape
            or any(not isinstance(s, int) or isinstance(s, bool) for s in shape)
            or min(shape) < 1
        ):
            raise ValueError(
                f"Block: shape must be a non-empty tuple of ints >= 1, got {self.shape!r}"
            )
        object.__setattr__(self, "shape", shape)

    def _full(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (1,) * (len(shape) - len(self.shape)) + self.shape

    def check(self, path: str, shape: tuple[int, ...]) -> None:
        """Raises ``ValueError`` if the block does not tile the leaf."""
        if len(self.shape) > len(shape):
            raise ValueError(
                f"Block: block shape {self.shape} has more axes than leaf {path!r} of shape {shape}"
            )
        if any(d % b for d, b in zip(shape, self._full(shape), strict=True)):
            raise ValueError(
                f"Block: block shape {self.shape} does not divide leaf {path!r} of shape {shape}"
            )

    def _split(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(x for d, b in zip(shape, self._full(shape), strict=True) for x in (d // b, b))

    def group_scores(self, scores: jax.Array) -> jax.Array:
        """One score per block (sum), flattened row-major over the block grid."""
        split = jnp.reshape(scores, self._split(scores.shape))
        return jnp.ravel(jnp.sum(split, axis=tuple(range(1, split.ndim, 2))))

    def expand(self, keep: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Repeats a flat per-block keep vector back to ``shape``."""
        full = self._full(shape)
        grid = tuple(d // b for d, b in zip(shape, full, strict=True))
        split = jnp.reshape(keep, tuple(x for g in grid for x in (g, 1)))
        split = jnp.broadcast_to(split, self._split(shape))
        return jnp.reshape(split, shape)


Structure = Unstructured | NByM | Channel | Block


def num_groups(structure: Structure, shape: tuple[int, ...]) -> int:
    """The number of prunable groups of a leaf of ``shape`` (not for :class:`NByM`)."""
    if isinstance(structure, Channel):
        return shape[-1]
    if isinstance(structure, Block):
        return math.prod(d // b for d, b in zip(shape, structure._full(shape), strict=True))
    return math.prod(shape)
