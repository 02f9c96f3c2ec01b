"""Tests for your own IDX dataset: jaxzip.data.load_idx_dir and ``data.name = "idx"``."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from jaxzip import ConfigError, DataError
from jaxzip.config import apply_overrides, load_config
from jaxzip.data import IDX_FILES, load_idx_dir, load_splits
from jaxzip.pipeline import run_experiment


def write_dataset(idx_bytes, directory, train_labels, test_labels, *, shape=(5, 3), gz=False):
    """Random uint8 images of ``shape`` with the given labels, as the four IDX files."""
    rng = np.random.default_rng(0)
    for split, labels in (("train", train_labels), ("test", test_labels)):
        labels = np.asarray(labels, np.uint8)
        images = rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8)
        for name, array in zip(IDX_FILES[split], (images, labels), strict=True):
            data = idx_bytes(array)
            path = directory / (f"{name}.gz" if gz else name)
            path.write_bytes(gzip.compress(data) if gz else data)
    return directory


@pytest.mark.parametrize("gz", [False, True])
def test_any_image_shape_and_the_class_count_from_the_labels(tmp_path, gz, idx_bytes):
    write_dataset(idx_bytes, tmp_path, [0, 3, 1, 3], [2, 0], shape=(5, 3), gz=gz)
    train = load_idx_dir(tmp_path, split="train")
    assert (train.name, train.x.shape, train.num_classes) == ("idx/train", (4, 5, 3, 1), 4)
    assert train.y.tolist() == [0, 3, 1, 3] and train.x.dtype == np.float32
    images = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(train.x[..., 0], images.astype(np.float32) / 255)
    test = load_idx_dir(tmp_path, split="test")
    assert (test.name, test.num_classes) == ("idx/test", 3)


def test_load_splits_takes_the_class_count_of_both_splits(tmp_path, idx_bytes):
    # The test labels reach 4, the training labels only 2: every split has 5 classes.
    write_dataset(idx_bytes, tmp_path, [0, 1, 2, 1, 0, 2, 1, 0, 2, 1], [4, 0])
    s = load_splits("idx", data_dir=tmp_path, val_fraction=0.2, seed=0)
    assert {s.train.num_classes, s.val.num_classes, s.test.num_classes} == {5}
    assert (len(s.train), len(s.val), len(s.test)) == (8, 2, 2)
    assert (s.train.name, s.val.name, s.test.name) == ("idx/train", "idx/val", "idx/test")


def test_bad_files_are_refused_naming_the_file(tmp_path, idx_bytes):
    with pytest.raises(ValueError, match="needs data_dir"):
        load_splits("idx", val_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match=r"cache_dir is not used by 'idx'.*got cache_dir='c'"):
        load_splits("idx", data_dir=tmp_path, cache_dir="c", val_fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'dev'"):
        load_idx_dir(tmp_path, split="dev")
    with pytest.raises(DataError, match="lacks train-images-idx3-ubyte, train-labels"):
        load_idx_dir(tmp_path)
    write_dataset(idx_bytes, tmp_path, [0, 0, 0], [0])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte in .*at least 2 values"):
        load_idx_dir(tmp_path)
    images, labels = IDX_FILES["train"]
    (tmp_path / labels).write_bytes(idx_bytes(np.array([0, 1], np.uint8)))
    with pytest.raises(DataError, match="expected 3 uint8 labels"):
        load_idx_dir(tmp_path)
    (tmp_path / images).write_bytes(idx_bytes(np.zeros((3, 4), np.uint8)))
    with pytest.raises(DataError, match=r"images of shape \(N, H, W\).*shape \(3, 4\)"):
        load_idx_dir(tmp_path)
    (tmp_path / images).write_bytes(idx_bytes(np.zeros((3, 4, 4), np.uint8))[:-1])
    with pytest.raises(DataError, match="header declares shape"):
        load_idx_dir(tmp_path)


def test_a_config_runs_on_it_and_needs_the_directory(tmp_path, idx_bytes):
    with pytest.raises(ConfigError, match=r"data\.data_dir"):
        apply_overrides(load_config(), ["data.name=idx"])
    (tmp_path / "data").mkdir()
    write_dataset(idx_bytes, tmp_path / "data", [0, 1, 2] * 10, [2, 1, 0], shape=(8, 8))
    overrides = [
        "data.name=idx",
        f"data.data_dir={json.dumps(str(tmp_path / 'data'))}",
        "data.val_fraction=0.2",
        "model.name=mlp",
        "model.widths=[8]",
        "train.epochs=1",
        "train.batch_size=8",
    ]
    results = run_experiment(
        apply_overrides(load_config(), overrides), tmp_path / "run", progress=False, report=False
    )
    metrics = results["metrics"]
    assert (metrics["train_examples"], metrics["val_examples"], metrics["test_examples"]) == (
        24,
        6,
        3,
    )
    assert 0 <= metrics["test_accuracy"] <= 1
