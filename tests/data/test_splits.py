"""Tests for jaxzip.data._splits: load_splits."""

from __future__ import annotations

import numpy as np
import pytest

from jaxzip import DataError
from jaxzip.data import (
    DIGITS_SPLIT_SEED,
    Splits,
    TokenWindows,
    eval_windows,
    load_digits,
    load_kjv,
    load_splits,
)


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


def test_kjv_splits_are_token_windows_of_the_held_out_halves(kjv_dir):
    s = load_splits("kjv", val_fraction=0.1, seed=0, seq_len=1000)
    text = load_kjv()
    windows = eval_windows(text.held_out, seq_len=1000)
    assert (len(s.val), len(s.test)) == (len(windows) // 2, len(windows) - len(windows) // 2)
    np.testing.assert_array_equal(np.concatenate([s.val.x, s.test.x]), windows.x)
    np.testing.assert_array_equal(np.concatenate([s.val.y, s.test.y]), windows.y)
    assert len(s.train) == (len(text.train) - 1) // 1000 and s.train.num_classes == 256
    assert (s.train.name, s.val.name, s.test.name) == ("kjv/train", "kjv/val", "kjv/test")
    # random training offsets: the same seed, the same windows; labels are the next bytes
    a, b = (
        load_splits("kjv", val_fraction=0.1, seed=3, seq_len=8, train_windows=5, held_out_windows=2)
        for _ in range(2)
    )
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.train.y[:, :-1], a.train.x[:, 1:])
    assert (len(a.train), len(a.val), len(a.test)) == (5, 2, 2)
    np.testing.assert_array_equal(
        a.test.x,
        eval_windows(text.held_out, seq_len=8).x[
            len(eval_windows(text.held_out, seq_len=8)) // 2 :
        ][:2],
    )
    with pytest.raises(DataError, match="seq_len=200000 is too long for the held-out text"):
        load_splits("kjv", val_fraction=0.1, seed=0, seq_len=200_000)
    with pytest.raises(ValueError, match="train_windows must be at least 0"):
        load_splits("kjv", val_fraction=0.1, seed=0, train_windows=-1)


def test_splits_of_token_windows_refuse_a_mix():
    w = TokenWindows(
        x=np.zeros((2, 3), np.int32), y=np.zeros((2, 3), np.int32), vocab_size=4, name="w"
    )
    assert Splits(train=w, val=w, test=w).train.num_classes == 4
    digits = load_digits(split="test", seed=DIGITS_SPLIT_SEED)
    with pytest.raises(TypeError, match="val must be a TokenWindows, as train is"):
        Splits(train=w, val=digits, test=w)
    with pytest.raises(TypeError, match="test must be a Dataset, as train is"):
        Splits(train=digits, val=digits, test=w)
    short = TokenWindows(
        x=np.zeros((2, 2), np.int32), y=np.zeros((2, 2), np.int32), vocab_size=4, name="s"
    )
    with pytest.raises(DataError, match="test has num_classes=4 and examples"):
        Splits(train=w, val=w, test=short)
