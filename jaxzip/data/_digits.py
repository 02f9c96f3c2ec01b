"""scikit-learn's bundled 8x8 digits: the offline default dataset."""

from __future__ import annotations

import numpy as np

from jaxzip.data._dataset import Dataset, _check_fraction, _check_int, take


def load_digits(*, split: str = "train", test_fraction: float = 0.2, seed: int) -> Dataset:
    """Loads scikit-learn's bundled digits (1,797 8x8 images, 10 classes), offline.

    The train/test partition is stratified (each class is split in the same
    proportion) and depends only on ``test_fraction`` and ``seed``, so the
    ``"train"`` and ``"test"`` splits of one ``(test_fraction, seed)`` are
    disjoint and together cover the whole set.

    Args:
      split: ``"train"`` or ``"test"``.
      test_fraction: the fraction of each class held out for test, in (0, 1).
      seed: a non-negative int seeding the partition.

    Returns:
      A :class:`Dataset` named ``"digits/<split>"``: x (N, 8, 8, 1) float32 in
      [0, 1] (the 0..16 pixel counts / 16), y int32 in [0, 10).

    Raises:
      ValueError: ``split`` or ``test_fraction`` is out of range.
      TypeError: ``seed`` is not an int.

    Example:
      >>> ds = load_digits(split="test", seed=0)
      >>> ds.x.shape, ds.x.dtype, ds.num_classes
      ((359, 8, 8, 1), dtype('float32'), 10)
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_digits: split must be 'train' or 'test', got {split!r}")
    test_fraction = _check_fraction("load_digits: test_fraction", test_fraction)
    seed = _check_int("load_digits: seed", seed, 0)
    from sklearn.datasets import load_digits as _sk_load_digits  # imported lazily: slow

    bunch = _sk_load_digits()
    images = np.asarray(bunch.images)
    x = (images / 16.0).astype(np.float32)[..., None]
    y = np.asarray(bunch.target).astype(np.int32)
    full = Dataset(x=x, y=y, num_classes=10, name="digits")
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        k = min(max(round(len(members) * test_fraction), 1), len(members) - 1)
        test_idx.append(rng.permutation(members)[:k])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_idx)] = True
    chosen = is_test if split == "test" else ~is_test
    return take(full, np.flatnonzero(chosen), f"digits/{split}")
