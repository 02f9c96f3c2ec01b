"""In-memory datasets, their splits, and minibatch iteration."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterator

import numpy as np

from jaxzip._errors import DataError


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Dataset:
    """A labelled image dataset held in memory.

    The arrays are stored as read-only views, so a ``Dataset`` cannot be
    changed after it is built.

    Args:
      x: images, float32 of shape (N, H, W, C) with values in [0, 1].
      y: labels, int32 of shape (N,) with values in [0, num_classes).
      num_classes: the number of classes (at least 1).
      name: a short description, e.g. ``"mnist/train"``.

    Raises:
      TypeError: ``x`` or ``y`` is not a numpy array of the expected dtype.
      DataError: a shape, length or value range is wrong.

    Example:
      >>> ds = Dataset(x=np.zeros((3, 2, 2, 1), np.float32), y=np.array([0, 1, 0], np.int32),
      ...              num_classes=2, name="toy")
      >>> len(ds), ds
      (3, Dataset(name='toy', n=3, x=(3, 2, 2, 1) float32, num_classes=2))
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Dataset: name must be a str, got {type(self.name).__name__}")
        where = f"Dataset {self.name!r}"
        for field, dtype, ndim in (("x", np.float32, 4), ("y", np.int32, 1)):
            value = getattr(self, field)
            if not isinstance(value, np.ndarray) or value.dtype != dtype:
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise TypeError(
                    f"{where}: {field} must be a numpy {np.dtype(dtype)} array, got {got}"
                )
            if value.ndim != ndim:
                raise DataError(
                    f"{where}: {field} must have {ndim} dimensions, got shape {value.shape}"
                )
        if len(self.x) != len(self.y):
            raise DataError(
                f"{where}: x and y must have the same length, got {len(self.x)} and {len(self.y)}"
            )
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise TypeError(f"{where}: num_classes must be an int, got {self.num_classes!r}")
        if self.num_classes < 1:
            raise DataError(f"{where}: num_classes must be at least 1, got {self.num_classes}")
        if len(self.y):
            lo, hi = int(self.y.min()), int(self.y.max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(
                    f"{where}: labels must lie in [0, {self.num_classes}), got values in "
                    f"[{lo}, {hi}]"
                )
            xmin, xmax = float(self.x.min()), float(self.x.max())
            if not (xmin >= 0.0 and xmax <= 1.0):  # also catches NaN
                raise DataError(f"{where}: x must lie in [0, 1], got values in [{xmin}, {xmax}]")
        freeze(self, "x", "y")

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, x={self.x.shape} {self.x.dtype}, "
            f"num_classes={self.num_classes})"
        )


def freeze(obj: object, *fields: str) -> None:
    """Replaces each array field of a frozen dataclass by a read-only view of it."""
    for field in fields:
        view = getattr(obj, field).view()
        view.flags.writeable = False
        object.__setattr__(obj, field, view)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Splits:
    """The train, validation and test sets of one experiment.

    ``test`` is for final reporting only; ``train`` and ``val`` never overlap it.
    The three are image :class:`Dataset` s, or all three token windows
    (:class:`jaxzip.data.TokenWindows`, for language models).

    Args:
      train: the examples to fit on.
      val: held-out examples for model selection and early stopping.
      test: the examples for the final report.

    Raises:
      TypeError: a field is not a :class:`Dataset` (or, for all three, ``TokenWindows``).
      DataError: the three disagree on ``num_classes`` or on the example shape.

    Example:
      >>> ds = Dataset(x=np.zeros((4, 1, 1, 1), np.float32), y=np.zeros(4, np.int32),
      ...              num_classes=1, name="toy")
      >>> tr, va = train_val_split(ds, val_fraction=0.25, seed=0)
      >>> s = Splits(train=tr, val=va, test=ds)
      >>> len(s.train), len(s.val), len(s.test)
      (3, 1, 4)
    """

    train: Dataset
    val: Dataset
    test: Dataset

    def __post_init__(self) -> None:
        from jaxzip.data._windows import TokenWindows  # _windows imports this module

        parts = {"train": self.train, "val": self.val, "test": self.test}
        kind = TokenWindows if isinstance(self.train, TokenWindows) else Dataset
        for field, ds in parts.items():
            if not isinstance(ds, kind):
                raise TypeError(
                    f"Splits: {field} must be a {kind.__name__}, as train is (all three "
                    f"Datasets or all three TokenWindows), got {type(ds).__name__}"
                )
        for field, ds in parts.items():
            if ds.num_classes != self.train.num_classes or ds.x.shape[1:] != self.train.x.shape[1:]:
                raise DataError(
                    f"Splits: {field} has num_classes={ds.num_classes} and examples "
                    f"{ds.x.shape[1:]}, but train has num_classes={self.train.num_classes} "
                    f"and examples {self.train.x.shape[1:]}"
                )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return operator.index(value)


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a float, got {value!r}")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value}")
    return float(value)


def take(ds: Dataset, indices: np.ndarray, name: str) -> Dataset:
    """The examples of ``ds`` at ``indices``, as a new Dataset called ``name``."""
    return Dataset(x=ds.x[indices], y=ds.y[indices], num_classes=ds.num_classes, name=name)


def train_val_split(ds: Dataset, *, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Splits a dataset at random into disjoint train and validation parts.

    Pass the *training* set: the test set is for final reporting only and is
    never used to build train or validation data. The split depends only on
    ``len(ds)``, ``val_fraction`` and ``seed``; both parts keep the original
    order of their examples.

    Args:
      ds: the dataset to split.
      val_fraction: the fraction of examples for validation, in (0, 1);
        the count is rounded and kept between 1 and ``len(ds) - 1``.
      seed: a non-negative int seeding the permutation.

    Returns:
      ``(train, val)``, named ``"<name>:train"`` and ``"<name>:val"``.

    Raises:
      TypeError: ``ds`` is not a Dataset or ``seed`` is not an int.
      ValueError: ``val_fraction`` is outside (0, 1), or ``ds`` has fewer than
        2 examples.

    Example:
      >>> ds = Dataset(x=np.zeros((10, 1, 1, 1), np.float32), y=np.arange(10, dtype=np.int32),
      ...              num_classes=10, name="toy")
      >>> tr, va = train_val_split(ds, val_fraction=0.2, seed=0)
      >>> len(tr), len(va), sorted(set(tr.y) | set(va.y)) == list(range(10))
      (8, 2, True)
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"train_val_split: ds must be a Dataset, got {type(ds).__name__}")
    seed = _check_int("train_val_split: seed", seed, 0)
    val_fraction = _check_fraction("train_val_split: val_fraction", val_fraction)
    n = len(ds)
    if n < 2:
        raise ValueError(f"train_val_split: {ds.name!r} needs at least 2 examples, has {n}")
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx = np.sort(perm[:n_val])
    train_idx = np.sort(perm[n_val:])
    return take(ds, train_idx, f"{ds.name}:train"), take(ds, val_idx, f"{ds.name}:val")


def batches(
    ds: Dataset, batch_size: int, *, seed: int | None, epoch: int = 0, drop_last: bool = False
) -> Iterator[dict[str, np.ndarray]]:
    """Iterates over one epoch of minibatches.

    With a seed, the order is one permutation drawn from
    ``np.random.default_rng([seed, epoch])``: every example appears exactly
    once per epoch, the same ``(seed, epoch)`` gives the same batches, and
    different epochs give different orders. Batches are numpy arrays (fancy
    indexing copies; no per-example Python loop).

    Args:
      ds: the dataset.
      batch_size: examples per batch, at least 1.
      seed: a non-negative int to shuffle, or ``None`` to keep the stored order.
      epoch: the epoch number (a non-negative int), mixed into the shuffle.
      drop_last: drop the final batch if it is smaller than ``batch_size``.

    Returns:
      An iterator of ``{"x": (B, H, W, C) float32, "y": (B,) int32}`` dicts.

    Raises:
      TypeError: an argument has the wrong type.
      ValueError: ``batch_size`` or ``epoch`` is out of range, or ``drop_last``
        would leave no batch at all.

    Example:
      >>> ds = Dataset(x=np.zeros((5, 1, 1, 1), np.float32), y=np.arange(5, dtype=np.int32),
      ...              num_classes=5, name="toy")
      >>> [b["y"].tolist() for b in batches(ds, 2, seed=None)]
      [[0, 1], [2, 3], [4]]
      >>> [len(b["y"]) for b in batches(ds, 2, seed=0, drop_last=True)]
      [2, 2]
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"batches: ds must be a Dataset, got {type(ds).__name__}")
    batch_size = _check_int("batches: batch_size", batch_size, 1)
    epoch = _check_int("batches: epoch", epoch, 0)
    if seed is not None:
        seed = _check_int("batches: seed", seed, 0)
    if not isinstance(drop_last, bool):
        raise TypeError(f"batches: drop_last must be a bool, got {drop_last!r}")
    n = len(ds)
    if drop_last and n < batch_size:
        raise ValueError(
            f"batches: with drop_last=True, batch_size={batch_size} exceeds the {n} examples "
            f"of {ds.name!r}, so there would be no batch at all"
        )
    stop = n - n % batch_size if drop_last else n
    order = None if seed is None else np.random.default_rng([seed, epoch]).permutation(n)
    return _iterate(ds, batch_size, stop, order)


def _iterate(
    ds: Dataset, batch_size: int, stop: int, order: np.ndarray | None
) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        if order is None:
            yield {"x": ds.x[start:end], "y": ds.y[start:end]}
        else:
            idx = order[start:end]
            yield {"x": ds.x[idx], "y": ds.y[idx]}
