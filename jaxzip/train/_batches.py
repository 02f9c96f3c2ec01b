"""``epoch_batches``: one epoch of a dataset in full batches, and the checks of the loop's data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from jaxzip._keys import check_key
from jaxzip.data import Dataset, TokenWindows

__all__ = ["check_batch_size", "check_data", "check_int", "epoch_batches"]


def check_int(where: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be at least {minimum}, got {value}")
    return int(value)


def check_data(where: str, name: str, ds: Any) -> None:
    if not isinstance(ds, Dataset | TokenWindows):
        raise TypeError(
            f"{where}: {name} must be a jaxzip.data.Dataset or TokenWindows, "
            f"got {type(ds).__name__}"
        )


def check_batch_size(where: str, ds: Any, batch_size: Any) -> int:
    check_data(where, "train_ds", ds)
    batch_size = check_int(where, "batch_size", batch_size, 1)
    if batch_size > len(ds):
        raise ValueError(
            f"{where}: batch_size={batch_size} exceeds the {len(ds)} training examples of "
            f"{ds.name!r} (incomplete batches are dropped, so no step would run)"
        )
    return batch_size


def epoch_batches(
    ds: Dataset | TokenWindows, batch_size: int, *, key: jax.Array
) -> Iterator[dict[str, Any]]:
    """One epoch of full batches of ``ds``, in the order ``jax.random.permutation(key, len(ds))``.

    Every example appears at most once; the last ``len(ds) % batch_size``
    examples of the order are dropped, so every batch has the same shape.

    Args:
      ds: a :class:`jaxzip.data.Dataset`, or :class:`jaxzip.data.TokenWindows`
        (a batch is then ``batch_size`` windows of tokens and their next tokens).
      batch_size: examples per batch (1 to ``len(ds)``).
      key: the PRNG key of this epoch's order.

    Returns:
      An iterator of ``{"x": ..., "y": ...}`` numpy batches.

    Raises:
      TypeError: ``ds`` is not a Dataset or TokenWindows, ``key`` not a PRNG key.
      ValueError: ``batch_size`` out of range.

    Example:
      >>> import jax, numpy as np
      >>> ds = Dataset(x=np.zeros((5, 1, 1, 1), np.float32), y=np.arange(5, dtype=np.int32),
      ...              num_classes=5, name="toy")
      >>> out = [b["y"].tolist() for b in epoch_batches(ds, 2, key=jax.random.key(0))]
      >>> len(out), sorted(sum(out, [])) == sorted(set(sum(out, [])))
      (2, True)
    """
    batch_size = check_batch_size("epoch_batches", ds, batch_size)
    check_key("epoch_batches", key)
    order = np.asarray(jax.random.permutation(key, len(ds)))
    for start in range(0, len(ds) - len(ds) % batch_size, batch_size):
        idx = order[start : start + batch_size]
        yield {"x": ds.x[idx], "y": ds.y[idx]}
