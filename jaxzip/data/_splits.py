"""The one entry point the pipeline uses: a dataset name to train/val/test splits."""

from __future__ import annotations

import dataclasses
import os

from jaxzip.data._dataset import Dataset, Splits, _check_fraction, _check_int, train_val_split
from jaxzip.data._digits import load_digits
from jaxzip.data._mnist import load_fashion_mnist, load_mnist

DATASETS = ("digits", "mnist", "fashion_mnist")
# The seed of digits' fixed train/test partition in load_splits, so that every
# run reports on the same test images, as with MNIST's official test set.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def load_splits(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float,
    seed: int,
    download: bool = True,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Splits:
    """Loads a dataset and splits it into train, validation and test sets.

    The test set is the dataset's fixed test split (MNIST's official 10,000
    images; for digits, the stratified 20% partition drawn with
    ``DIGITS_SPLIT_SEED``), used only for final reporting. Train and
    validation are a :func:`train_val_split` of the training split with
    ``seed``, so they never overlap the test set.

    Args:
      name: ``"digits"`` (offline, bundled with scikit-learn), ``"mnist"`` or
        ``"fashion_mnist"``.
      data_dir: for the MNIST family, a directory holding the IDX files (see
        :func:`load_mnist` for the lookup when ``None``). Not used by digits.
      val_fraction: the fraction of the training split held out, in (0, 1).
      seed: a non-negative int seeding the train/val split.
      download: for the MNIST family, fetch missing files into the cache.
      progress: show download progress bars on stderr.
      cache_dir: for the MNIST family, the cache root (see :func:`cache_root`).

    Returns:
      ``Splits(train, val, test)`` named ``"<name>/train"``, ``"<name>/val"``
      and ``"<name>/test"``.

    Raises:
      ValueError: ``name`` is unknown, ``data_dir`` is given for digits, or a
        fraction is out of range.
      DataError: the MNIST-family files are missing or corrupt.

    Example:
      >>> s = load_splits("digits", val_fraction=0.1, seed=0)
      >>> len(s.train), len(s.val), len(s.test), s.train.x.shape[1:]
      (1294, 144, 359, (8, 8, 1))
    """
    if name not in DATASETS:
        raise ValueError(f"load_splits: name must be one of {DATASETS}, got {name!r}")
    _check_fraction("load_splits: val_fraction", val_fraction)  # fail before loading
    _check_int("load_splits: seed", seed, 0)
    if name == "digits":
        if data_dir is not None or cache_dir is not None:
            raise ValueError(
                "load_splits: data_dir and cache_dir are not used by 'digits' (it is bundled "
                f"with scikit-learn); got data_dir={data_dir!r}, cache_dir={cache_dir!r}"
            )
        kwargs = {"test_fraction": DIGITS_TEST_FRACTION, "seed": DIGITS_SPLIT_SEED}
        train_full, test = (load_digits(split=s, **kwargs) for s in ("train", "test"))
    else:
        loader = load_mnist if name == "mnist" else load_fashion_mnist
        kwargs = {"download": download, "progress": progress, "cache_dir": cache_dir}
        train_full = loader(data_dir, split="train", **kwargs)
        test = loader(data_dir, split="test", **kwargs)
    train, val = train_val_split(train_full, val_fraction=val_fraction, seed=seed)
    return Splits(train=_rename(train, f"{name}/train"), val=_rename(val, f"{name}/val"), test=test)


def _rename(ds: Dataset, name: str) -> Dataset:
    return dataclasses.replace(ds, name=name)
