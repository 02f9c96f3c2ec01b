"""Tests for jaxzip.data._splits: load_splits."""

from __future__ import annotations

import numpy as np
import pytest

from jaxzip import DataError
from jaxzip.data import DIGITS_SPLIT_SEED, load_digits, load_splits


def test_digits_splits_sizes_names_and_fixed_test():
    s0 = load_splits("digits", val_fraction=0.1, seed=0)
    s1 = load_splits("digits", val_fraction=0.1, seed=1)
    assert (s0.train.name, s0.val.name, s0.test.name) == (
        "digits/train",
        "digits/val",
        "digits/test",
    )
    assert len(s0.train) + len(s0.val) + len(s0.test) == 1797
    assert len(s0.val) == round(0.1 * (len(s0.train) + len(s0.val)))
    # The test set is the same for every seed; train/val change with the seed.
    np.testing.assert_array_equal(s0.test.x, s1.test.x)
    np.testing.assert_array_equal(s0.test.x, load_digits(split="test", seed=DIGITS_SPLIT_SEED).x)
    assert not np.array_equal(s0.val.y, s1.val.y) or not np.array_equal(s0.val.x, s1.val.x)
    # train + val is exactly digits' training split (the test set is never used).
    full_train = load_digits(split="train", seed=DIGITS_SPLIT_SEED)
    key = lambda ds: sorted(ds.x[i].tobytes() + bytes([ds.y[i]]) for i in range(len(ds)))  # noqa: E731
    assert sorted(key(s0.train) + key(s0.val)) == key(full_train)


def test_bad_arguments_fail_before_loading(no_data_dir_env):
    with pytest.raises(ValueError, match="name must be one of"):
        load_splits("cifar10", val_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="not used by 'digits'"):
        load_splits("digits", data_dir="/tmp", val_fraction=0.1, seed=0)
    # With an impossible val_fraction, the MNIST files are not even looked for.
    with pytest.raises(ValueError, match="val_fraction must lie"):
        load_splits("mnist", val_fraction=1.0, seed=0, download=False)
    with pytest.raises(TypeError, match="seed must be an int"):
        load_splits("mnist", val_fraction=0.1, seed=None, download=False)


def test_mnist_family_offline_error(no_data_dir_env, private_cache):
    with pytest.raises(DataError, match="download=False"):
        load_splits("fashion_mnist", val_fraction=0.1, seed=0, download=False)
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte"):
        load_splits("mnist", data_dir=private_cache, val_fraction=0.1, seed=0)
