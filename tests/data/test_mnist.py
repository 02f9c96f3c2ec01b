"""Tests for jaxzip.data._mnist: lookup order, validation, and the real MNIST files."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import platformdirs
import pytest

from jaxzip import DataError
from jaxzip.data import (
    IDX_FILES,
    MNIST,
    IdxSource,
    cache_root,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
    load_splits,
)

TRAIN = IDX_FILES["train"]
TEST = IDX_FILES["test"]


@pytest.mark.parametrize("compressed", [True, False])
def test_explicit_dir_gzip_or_raw(fake, tmp_path, compressed):
    d = fake.write(tmp_path / "d", compressed=compressed)
    ds = load_idx_dataset(fake.source, d, split="test", download=False)
    assert ds.name == "fake/test" and ds.x.shape == (4, 28, 28, 1) and ds.y.dtype == np.int32
    # Hand-worked pixels: 0 -> 0.0, 255 -> 1.0, k -> k / 255.
    assert ds.x[0, 0, 0, 0] == 0.0 and ds.x[0, 0, 1, 0] == 1.0
    np.testing.assert_array_equal(ds.x[..., 0], fake.arrays[TEST[0]].astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y, [0, 1, 2, 3])


def test_explicit_dir_missing_files_no_fallback(fake, tmp_path, monkeypatch):
    # Valid files exist in JAXZIP_DATA_DIR and in the cache, yet an explicit dir is not bypassed.
    fake.write(tmp_path / "env" / "fake")
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(tmp_path / "env"))
    fake.write(tmp_path / "cache" / "fake")
    d = fake.write(tmp_path / "d", files=[TRAIN[1]])
    with pytest.raises(DataError) as info:
        load_idx_dataset(fake.source, d, split="train", cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert str(d) in msg and "train-images-idx3-ubyte" in msg
    assert "train-labels-idx1-ubyte" not in msg  # present, so not listed


def test_explicit_dir_corrupt_file_names_path(fake, tmp_path):
    d = fake.write(tmp_path / "d")
    bad = bytearray(fake.raw[TRAIN[0]])
    bad[100] ^= 1
    (d / f"{TRAIN[0]}.gz").write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(DataError, match="fails its checksum") as info:
        load_idx_dataset(fake.source, d, split="train")
    assert str(d / f"{TRAIN[0]}.gz") in str(info.value)


def test_gz_preferred_when_both_exist(fake, tmp_path):
    d = fake.write(tmp_path / "d")
    (d / TRAIN[0]).write_bytes(b"corrupt raw copy")
    assert len(load_idx_dataset(fake.source, d, split="train")) == 6


def test_env_dir_then_cache(fake, tmp_path, monkeypatch, private_cache):
    env = tmp_path / "env"
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(env))
    fake.write(env / "fake", files=TEST)
    assert load_idx_dataset(fake.source, split="test", download=False).name == "fake/test"
    # train files are not in the env dir: the cache (root from $JAXZIP_CACHE_DIR) is used.
    fake.write(private_cache / "fake", files=TRAIN, compressed=False)
    assert len(load_idx_dataset(fake.source, split="train", download=False)) == 6


def test_env_dir_corrupt_file_raises(fake, tmp_path, monkeypatch):
    env = tmp_path / "env"
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(env))
    fake.write(env / "fake", files=TEST)
    (env / "fake" / f"{TEST[1]}.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x00"))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz fails its checksum"):
        load_idx_dataset(fake.source, split="test")


def test_download_false_nothing_found_says_where_to_put_what(no_data_dir_env, private_cache):
    with pytest.raises(DataError) as info:
        load_mnist(split="test", download=False)
    msg = str(info.value)
    for needed in (
        "download=False",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "data_dir",
        "$JAXZIP_DATA_DIR/mnist",
        "JAXZIP_CACHE_DIR",
        str(private_cache / "mnist"),
    ):
        assert needed in msg, needed
    assert not private_cache.exists()  # nothing was written


def test_fashion_mnist_uses_its_own_subdirectory(no_data_dir_env, private_cache):
    with pytest.raises(DataError, match="fashion_mnist train split") as info:
        load_fashion_mnist(download=False)
    assert str(private_cache / "fashion_mnist") in str(info.value)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXZIP_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("JAXZIP_CACHE_DIR")
    assert str(cache_root()) == platformdirs.user_cache_dir("jaxzip")


def test_wrong_image_shape_and_label_range(fake, tmp_path, idx_bytes):
    d = fake.write(tmp_path / "d", files=[TEST[1]])
    content = idx_bytes(np.zeros((4, 27, 28), np.uint8))
    (d / TEST[0]).write_bytes(content)
    md5s = {**dict(fake.source.md5s), TEST[0]: hashlib.md5(content).hexdigest()}
    with pytest.raises(DataError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_idx_dataset(IdxSource(name="fake", md5s=md5s, mirrors=()), d, split="test")

    three = IdxSource(name="fake", md5s=fake.source.md5s, mirrors=(), num_classes=3)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\), found 3"):
        load_idx_dataset(three, fake.write(tmp_path / "d2"), split="test")


def test_bad_arguments(fake, tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_idx_dataset(fake.source, tmp_path, split="val")
    with pytest.raises(ValueError, match="http:// or https://"):
        load_idx_dataset(fake.source, split="train", mirrors=["ftp://example.org/"])
    with pytest.raises(ValueError, match="sequence of URLs"):
        load_idx_dataset(fake.source, split="train", mirrors="http://example.org/")
    with pytest.raises(ValueError, match="timeout"):
        load_idx_dataset(fake.source, split="train", timeout=0)
    with pytest.raises(TypeError, match="IdxSource"):
        load_idx_dataset("mnist", split="train")


def test_idx_source_validation(fake):
    md5s = dict(fake.source.md5s)
    with pytest.raises(ValueError, match="exactly the keys"):
        IdxSource(name="x", md5s={k: v for k, v in md5s.items() if "t10k" not in k}, mirrors=())
    with pytest.raises(ValueError, match="32 lowercase hex"):
        IdxSource(name="x", md5s={**md5s, TEST[0]: "ABC"}, mirrors=())
    with pytest.raises(ValueError, match="name must be"):
        IdxSource(name="Bad Name", md5s=md5s, mirrors=())
    with pytest.raises(ValueError, match="image_shape"):
        IdxSource(name="x", md5s=md5s, mirrors=(), image_shape=(28,))
    with pytest.raises(ValueError, match="num_classes"):
        IdxSource(name="x", md5s=md5s, mirrors=(), num_classes=0)
    assert hash(MNIST) == hash(MNIST) and MNIST.md5(TRAIN[0]) == "6bbc9ace898e44ae57da46a324031adb"


@pytest.mark.mnist
def test_real_mnist(mnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("JAXZIP_CACHE_DIR", str(tmp_path / "never-used"))
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_mnist(mnist_dir / "mnist", split=split, download=False)
        assert ds.x.shape == (n, 28, 28, 1) and ds.x.dtype == np.float32
        assert ds.y.shape == (n,) and ds.y.dtype == np.int32
        assert ds.y.min() == 0 and ds.y.max() == 9 and len(np.unique(ds.y)) == 10
        assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first test labels

    monkeypatch.setenv("JAXZIP_DATA_DIR", str(mnist_dir))
    splits = load_splits("mnist", val_fraction=0.1, seed=0, download=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    assert splits.test.x.shape[1:] == (28, 28, 1) and splits.test.y.max() == 9
    assert not (tmp_path / "never-used").exists()
