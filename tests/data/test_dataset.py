"""Tests for jaxzip.data._dataset: Dataset, Splits, train_val_split, batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxzip import DataError
from jaxzip.data import Dataset, Splits, batches, train_val_split


def make(n: int, num_classes: int = 10, name: str = "toy") -> Dataset:
    """Example i has label i % num_classes and every pixel equal to i / n."""
    x = np.broadcast_to(
        (np.arange(n, dtype=np.float32) / max(n, 1))[:, None, None, None], (n, 2, 3, 1)
    )
    return Dataset(
        x=np.ascontiguousarray(x),
        y=(np.arange(n) % num_classes).astype(np.int32),
        num_classes=num_classes,
        name=name,
    )


# ---- Dataset ------------------------------------------------------------------------------


def test_dataset_basics_and_immutability():
    ds = make(5)
    assert len(ds) == 5 and ds.name == "toy" and ds.num_classes == 10
    assert repr(ds) == "Dataset(name='toy', n=5, x=(5, 2, 3, 1) float32, num_classes=10)"
    with pytest.raises(ValueError, match="read-only"):
        ds.x[0] = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"


def test_dataset_does_not_freeze_the_callers_arrays():
    x, y = np.zeros((2, 1, 1, 1), np.float32), np.zeros(2, np.int32)
    Dataset(x=x, y=y, num_classes=1, name="t")
    x[0] = 1.0  # still writable
    y[0] = 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": np.zeros((2, 1, 1, 1), np.float64)}, TypeError, "x must be a numpy float32"),
        ({"y": np.zeros(2, np.int64)}, TypeError, "y must be a numpy int32"),
        ({"y": [0, 0]}, TypeError, "got list"),
        ({"x": np.zeros((2, 1, 1), np.float32)}, DataError, "4 dimensions"),
        ({"y": np.zeros(3, np.int32)}, DataError, "same length"),
        ({"y": np.array([0, 2], np.int32)}, DataError, r"labels must lie in \[0, 2\)"),
        ({"y": np.array([-1, 0], np.int32)}, DataError, "labels must lie"),
        ({"x": np.full((2, 1, 1, 1), 1.5, np.float32)}, DataError, r"x must lie in \[0, 1\]"),
        ({"x": np.full((2, 1, 1, 1), np.nan, np.float32)}, DataError, r"x must lie in \[0, 1\]"),
        ({"num_classes": 0}, DataError, "at least 1"),
        ({"num_classes": 2.0}, TypeError, "num_classes must be an int"),
        ({"name": 3}, TypeError, "name must be a str"),
    ],
)
def test_dataset_rejects_bad_input(kwargs, error, match):
    good = {
        "x": np.zeros((2, 1, 1, 1), np.float32),
        "y": np.zeros(2, np.int32),
        "num_classes": 2,
        "name": "bad",
    }
    with pytest.raises(error, match=match):
        Dataset(**{**good, **kwargs})


def test_splits_validation():
    a, b = make(4), make(4, num_classes=5)
    s = Splits(train=a, val=a, test=a)
    assert s.test is a
    with pytest.raises(DataError, match="val has num_classes=5"):
        Splits(train=a, val=b, test=a)
    with pytest.raises(TypeError, match="test must be a Dataset"):
        Splits(train=a, val=a, test=None)


# ---- train_val_split ----------------------------------------------------------------------


def test_train_val_split_hand_worked_sizes_and_names():
    tr, va = train_val_split(make(10), val_fraction=0.3, seed=0)
    assert (len(tr), len(va)) == (7, 3)
    assert (tr.name, va.name) == ("toy:train", "toy:val")
    assert np.all(np.diff(tr.y) > 0) and np.all(np.diff(va.y) > 0)  # original order kept


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 200), frac=st.floats(0.01, 0.99), seed=st.integers(0, 2**32 - 1))
def test_train_val_split_partitions_deterministically(n, frac, seed):
    ds = make(n, num_classes=n)  # labels are the example ids
    tr, va = train_val_split(ds, val_fraction=frac, seed=seed)
    assert len(va) >= 1 and len(tr) >= 1
    assert set(tr.y.tolist()).isdisjoint(va.y.tolist())
    assert sorted(tr.y.tolist() + va.y.tolist()) == list(range(n))
    np.testing.assert_array_equal(tr.x[:, 0, 0, 0], tr.y.astype(np.float32) / n)  # x travels with y
    _, va2 = train_val_split(ds, val_fraction=frac, seed=seed)
    np.testing.assert_array_equal(va.y, va2.y)


def test_train_val_split_depends_on_seed():
    ds = make(100, num_classes=100)
    va = [train_val_split(ds, val_fraction=0.2, seed=s)[1].y.tolist() for s in (0, 1)]
    assert va[0] != va[1]


def test_train_val_split_bad_input():
    ds = make(10)
    for frac in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"val_fraction must lie in \(0, 1\)"):
            train_val_split(ds, val_fraction=frac, seed=0)
    with pytest.raises(TypeError, match="val_fraction must be a float"):
        train_val_split(ds, val_fraction="0.1", seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        train_val_split(ds, val_fraction=0.1, seed=None)
    with pytest.raises(ValueError, match="seed must be at least 0"):
        train_val_split(ds, val_fraction=0.1, seed=-1)
    with pytest.raises(ValueError, match="at least 2 examples"):
        train_val_split(make(1), val_fraction=0.5, seed=0)
    with pytest.raises(TypeError, match="ds must be a Dataset"):
        train_val_split(np.zeros(3), val_fraction=0.5, seed=0)


# ---- batches -----------------------------------------------------------------------------


def ids(ds, batch_size, **kw):
    return [b["y"].tolist() for b in batches(ds, batch_size, **kw)]


def test_batches_hand_worked_unshuffled():
    ds = make(7, num_classes=7)
    assert ids(ds, 3, seed=None) == [[0, 1, 2], [3, 4, 5], [6]]
    assert ids(ds, 3, seed=None, drop_last=True) == [[0, 1, 2], [3, 4, 5]]
    first = next(batches(ds, 3, seed=None))
    assert first["x"].shape == (3, 2, 3, 1) and first["x"].dtype == np.float32
    assert first["y"].dtype == np.int32


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 120),
    batch_size=st.integers(1, 50),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 1000),
)
def test_batches_cover_every_example_once_per_epoch(n, batch_size, seed, epoch):
    ds = make(n, num_classes=n)
    got = ids(ds, batch_size, seed=seed, epoch=epoch)
    assert sorted(i for b in got for i in b) == list(range(n))
    assert all(len(b) == batch_size for b in got[:-1]) and 1 <= len(got[-1]) <= batch_size
    assert got == ids(ds, batch_size, seed=seed, epoch=epoch)  # deterministic
    if n >= batch_size:
        dropped = ids(ds, batch_size, seed=seed, epoch=epoch, drop_last=True)
        assert len(dropped) == n // batch_size
        assert all(len(b) == batch_size for b in dropped)
        assert dropped == got[: n // batch_size]  # same order, last partial batch dropped


def test_batches_x_and_y_stay_paired():
    ds = make(50, num_classes=50)
    for b in batches(ds, 8, seed=3, epoch=1):
        np.testing.assert_array_equal(b["x"][:, 0, 0, 0], b["y"].astype(np.float32) / 50)


def test_batches_differ_across_epochs_and_seeds():
    ds = make(100, num_classes=100)
    e0, e1 = ids(ds, 100, seed=0, epoch=0), ids(ds, 100, seed=0, epoch=1)
    other = ids(ds, 100, seed=1, epoch=0)
    assert e0 != e1 and e0 != other and e0[0] != list(range(100))


def test_batches_bad_input():
    ds = make(5)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        batches(ds, 0, seed=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        batches(ds, 2.0, seed=0)
    with pytest.raises(ValueError, match="epoch must be at least 0"):
        batches(ds, 2, seed=0, epoch=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        batches(ds, 2, seed="0")
    with pytest.raises(ValueError, match="no batch at all"):
        batches(ds, 6, seed=0, drop_last=True)
    with pytest.raises(TypeError, match="drop_last must be a bool"):
        batches(ds, 2, seed=0, drop_last=1)
