"""Datasets: MNIST-family IDX files, scikit-learn's digits, byte-level text, splits and batches.

* :func:`load_splits` turns a dataset name into train/val/test :class:`Splits`;
  it is what the pipeline uses.
* :func:`load_mnist` / :func:`load_fashion_mnist` find the four IDX files
  (``data_dir``, then ``$JAXZIP_DATA_DIR/<name>``, then the cache, whose root is
  ``cache_dir``, ``$JAXZIP_CACHE_DIR`` or ``platformdirs.user_cache_dir("jaxzip")``),
  verify their MD5s, and download them from public mirrors if allowed.
* :func:`load_idx_dir` loads your own MNIST-style IDX files from a directory
  (``data.name = "idx"`` in a config).
* :func:`load_digits` loads the bundled 8x8 digits: the offline default.
* :func:`train_val_split` and :func:`batches` are deterministic given a seed.
* :func:`load_kjv` / :func:`load_text` find a text corpus the same way (without
  a download), verify its SHA-256 and split it by line into :class:`TextSplits`;
  :func:`eval_windows` (deterministic) and :func:`sample_windows` (random, from a
  ``key``) cut byte windows into :class:`TokenWindows` ``(N, T)`` with next-byte labels.
"""

from jaxzip.data._dataset import Dataset, Splits, batches, train_val_split
from jaxzip.data._digits import load_digits
from jaxzip.data._idx import read_idx, write_idx
from jaxzip.data._mnist import (
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    cache_root,
    load_fashion_mnist,
    load_idx_dataset,
    load_idx_dir,
    load_mnist,
)
from jaxzip.data._sources import FASHION_MNIST, IDX_FILES, MNIST, IdxSource
from jaxzip.data._splits import DATASETS, DIGITS_SPLIT_SEED, TEXT_DATASETS, load_splits
from jaxzip.data._text import (
    KJV,
    TextSource,
    TextSplits,
    load_kjv,
    load_text,
    read_text,
    split_lines,
)
from jaxzip.data._windows import BYTE_VOCAB, TokenWindows, eval_windows, sample_windows

__all__ = [
    "BYTE_VOCAB",
    "CACHE_DIR_ENV",
    "DATASETS",
    "DATA_DIR_ENV",
    "DIGITS_SPLIT_SEED",
    "FASHION_MNIST",
    "IDX_FILES",
    "KJV",
    "MNIST",
    "TEXT_DATASETS",
    "Dataset",
    "IdxSource",
    "Splits",
    "TextSource",
    "TextSplits",
    "TokenWindows",
    "batches",
    "cache_root",
    "eval_windows",
    "load_digits",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_idx_dir",
    "load_kjv",
    "load_mnist",
    "load_splits",
    "load_text",
    "read_idx",
    "read_text",
    "sample_windows",
    "split_lines",
    "train_val_split",
    "write_idx",
]
