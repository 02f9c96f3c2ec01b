"""Tests for jaxzip.data._digits: scikit-learn's bundled digits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from jaxzip.data import load_digits


@pytest.fixture(scope="module")
def both():
    return load_digits(split="train", seed=0), load_digits(split="test", seed=0)


def test_shapes_dtypes_ranges(both):
    train, test = both
    assert (train.name, test.name) == ("digits/train", "digits/test")
    assert len(train) + len(test) == 1797
    for ds in both:
        assert ds.x.shape[1:] == (8, 8, 1) and ds.x.dtype == np.float32
        assert ds.y.dtype == np.int32 and ds.num_classes == 10
        assert ds.x.min() == 0.0 and ds.x.max() == 1.0
        # Pixels are counts 0..16 divided by 16: multiples of 1/16 exactly.
        np.testing.assert_array_equal(ds.x * 16, np.round(ds.x * 16))


def test_partition_is_exact_and_stratified(both):
    train, test = both
    sk = sk_load_digits()
    per_class = np.bincount(sk.target, minlength=10)
    expected_test = np.clip(np.round(per_class * 0.2), 1, per_class - 1)
    np.testing.assert_array_equal(np.bincount(test.y, minlength=10), expected_test)
    np.testing.assert_array_equal(
        np.bincount(train.y, minlength=10) + np.bincount(test.y, minlength=10), per_class
    )
    # The multiset of (image, label) rows of train + test is the full dataset.
    rows = lambda ds: [ds.x[i].tobytes() + bytes([ds.y[i]]) for i in range(len(ds))]  # noqa: E731
    full = [
        (img / 16.0).astype(np.float32)[..., None].tobytes() + bytes([t])
        for img, t in zip(sk.images, sk.target, strict=True)
    ]
    assert sorted(rows(train) + rows(test)) == sorted(full)


def test_deterministic_and_seed_dependent(both):
    test = both[1]
    np.testing.assert_array_equal(load_digits(split="test", seed=0).x, test.x)
    assert not np.array_equal(load_digits(split="test", seed=1).x, test.x)
    assert len(load_digits(split="test", test_fraction=0.5, seed=0)) > len(test)


def test_bad_input():
    with pytest.raises(TypeError):
        load_digits(split="train")  # the seed is required, never a hidden default
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_digits(split="val", seed=0)
    with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\)"):
        load_digits(split="test", test_fraction=1.0, seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        load_digits(split="test", seed=0.5)
