"""The one entry point the pipeline uses: a dataset name to train/val/test splits."""

from __future__ import annotations

import dataclasses
import os

import jax

from jaxzip._errors import DataError
from jaxzip._keys import named_key
from jaxzip.data._dataset import Dataset, Splits, _check_fraction, _check_int, train_val_split
from jaxzip.data._digits import load_digits
from jaxzip.data._mnist import load_fashion_mnist, load_idx_dir, load_mnist
from jaxzip.data._text import KJV, load_text
from jaxzip.data._windows import TokenWindows, eval_windows, sample_windows

DATASETS = ("digits", "mnist", "fashion_mnist", "kjv", "idx")
TEXT_DATASETS = ("kjv",)
"""The :data:`DATASETS` of byte-level text: their splits are :class:`TokenWindows`."""
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
    seq_len: int = 128,
    train_windows: int = 0,
    held_out_windows: int = 0,
) -> Splits:
    """Loads a dataset and splits it into train, validation and test sets.

    The test set is the dataset's fixed test split (MNIST's official 10,000
    images; for digits, the stratified 20% partition drawn with
    ``DIGITS_SPLIT_SEED``; for ``"idx"``, your test files), used only for final
    reporting. Train and
    validation are a :func:`train_val_split` of the training split with
    ``seed``, so they never overlap the test set.

    For the text corpus ``"kjv"`` (:func:`jaxzip.data.load_kjv`: the last 10% of
    lines held out) the splits are :class:`TokenWindows` of ``seq_len`` bytes
    labelled with the next bytes: ``val`` and ``test`` are the first and second
    half of the held-out text's non-overlapping windows
    (:func:`jaxzip.data.eval_windows`, in order); ``train`` is every
    non-overlapping window of the training text (``train_windows=0``) or
    ``train_windows`` windows at random offsets of it
    (:func:`jaxzip.data.sample_windows` with ``named_key(jax.random.key(seed),
    "kjv/train")``); ``held_out_windows`` keeps the first that many windows of
    each half. ``val_fraction`` and ``download`` do not apply to it.

    Args:
      name: ``"digits"`` (offline, bundled with scikit-learn), ``"mnist"``,
        ``"fashion_mnist"``, ``"kjv"`` or ``"idx"`` (your own four IDX files in
        ``data_dir``, :func:`load_idx_dir`; the class count is one more than the
        largest label of either split).
      data_dir: for the MNIST family, a directory holding the IDX files (see
        :func:`load_mnist` for the lookup when ``None``); required for
        ``"idx"``. Not used by digits.
      val_fraction: the fraction of the training split held out, in (0, 1).
      seed: a non-negative int seeding the train/val split.
      download: for the MNIST family, fetch missing files into the cache.
      progress: show download progress bars on stderr.
      cache_dir: for the MNIST family and text, the cache root (see :func:`cache_root`);
        not used by ``"digits"`` and ``"idx"`` (an error if given).
      seq_len: for text, the tokens per window (>= 1).
      train_windows: for text, the training windows drawn at random offsets
        (0: the non-overlapping windows of the whole training text).
      held_out_windows: for text, at most this many windows each for val and
        test (0: every window of their half of the held-out text).

    Returns:
      ``Splits(train, val, test)`` named ``"<name>/train"``, ``"<name>/val"``
      and ``"<name>/test"``.

    Raises:
      ValueError: ``name`` is unknown, ``data_dir`` is given for digits or
        missing for ``"idx"``, or a fraction, ``seq_len`` or ``train_windows``
        is out of range.
      DataError: the MNIST-family or text files are missing or corrupt, or the
        held-out text is too short for two windows of ``seq_len``.

    Example:
      >>> s = load_splits("digits", val_fraction=0.1, seed=0)
      >>> len(s.train), len(s.val), len(s.test), s.train.x.shape[1:]
      (1294, 144, 359, (8, 8, 1))
    """
    if name not in DATASETS:
        raise ValueError(f"load_splits: name must be one of {DATASETS}, got {name!r}")
    _check_fraction("load_splits: val_fraction", val_fraction)  # fail before loading
    _check_int("load_splits: seed", seed, 0)
    if name in TEXT_DATASETS:
        return _text_splits(
            name,
            data_dir,
            cache_dir,
            seed=seed,
            seq_len=seq_len,
            train_windows=train_windows,
            held_out_windows=held_out_windows,
        )
    if name == "digits":
        if data_dir is not None or cache_dir is not None:
            raise ValueError(
                "load_splits: data_dir and cache_dir are not used by 'digits' (it is bundled "
                f"with scikit-learn); got data_dir={data_dir!r}, cache_dir={cache_dir!r}"
            )
        kwargs = {"test_fraction": DIGITS_TEST_FRACTION, "seed": DIGITS_SPLIT_SEED}
        train_full, test = (load_digits(split=s, **kwargs) for s in ("train", "test"))
    elif name == "idx":
        if data_dir is None:
            raise ValueError("load_splits: 'idx' needs data_dir, the directory of your IDX files")
        if cache_dir is not None:
            raise ValueError(
                "load_splits: cache_dir is not used by 'idx' (your files are read from data_dir, "
                f"never cached or downloaded); got cache_dir={cache_dir!r}"
            )
        train_full, test = (load_idx_dir(data_dir, split=s) for s in ("train", "test"))
        classes = max(train_full.num_classes, test.num_classes)
        train_full, test = (dataclasses.replace(d, num_classes=classes) for d in (train_full, test))
    else:
        loader = load_mnist if name == "mnist" else load_fashion_mnist
        kwargs = {"download": download, "progress": progress, "cache_dir": cache_dir}
        train_full = loader(data_dir, split="train", **kwargs)
        test = loader(data_dir, split="test", **kwargs)
    train, val = train_val_split(train_full, val_fraction=val_fraction, seed=seed)
    return Splits(train=_rename(train, f"{name}/train"), val=_rename(val, f"{name}/val"), test=test)


def _rename(ds: Dataset, name: str) -> Dataset:
    return dataclasses.replace(ds, name=name)


def _text_splits(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    *,
    seed: int,
    seq_len: int,
    train_windows: int,
    held_out_windows: int,
) -> Splits:
    seq_len = _check_int("load_splits: seq_len", seq_len, 1)
    train_windows = _check_int("load_splits: train_windows", train_windows, 0)
    limit = _check_int("load_splits: held_out_windows", held_out_windows, 0)
    text = load_text(KJV, data_dir, cache_dir=cache_dir)
    held = len(text.held_out)
    if held < 2 * seq_len + 1:
        raise DataError(
            f"{name}: seq_len={seq_len} is too long for the held-out text ({held} bytes): "
            f"validation and test need a window each, so seq_len must be at most "
            f"{(held - 1) // 2}"
        )
    held_out = eval_windows(text.held_out, seq_len=seq_len, name=f"{name}/held_out")
    half = len(held_out) // 2
    keep = limit or half
    val, test = (
        TokenWindows(
            x=held_out.x[s], y=held_out.y[s], vocab_size=held_out.vocab_size, name=f"{name}/{part}"
        )
        for part, s in (("val", slice(0, min(half, keep))), ("test", slice(half, half + keep)))
    )
    if train_windows:
        key = named_key(jax.random.key(seed), f"{name}/train")
        train = sample_windows(
            text.train, seq_len=seq_len, num=train_windows, key=key, name=f"{name}/train"
        )
    else:
        train = eval_windows(text.train, seq_len=seq_len, name=f"{name}/train")
    return Splits(train=train, val=val, test=test)
