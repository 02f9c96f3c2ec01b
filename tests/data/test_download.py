"""Tests for jaxzip.data._download, through load_idx_dataset and a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import socket

import numpy as np
import pytest

from jaxzip import DataError
from jaxzip.data import IDX_FILES, load_idx_dataset
from jaxzip.data._download import _GunzipMd5

TRAIN = IDX_FILES["train"]


def serve(server, prefix, fake, *, mode="ok", override=None):
    for name in TRAIN:
        body = (override or {}).get(name, fake.gz[name])
        server.routes[f"/{prefix}/{name}.gz"] = (body, mode)
    return f"{server.url}/{prefix}/"


def cache_files(cache):
    return sorted(p.name for p in cache.rglob("*") if p.is_file())


def test_download_success_lands_verified_files_in_cache(fake, http_server, tmp_path, capsys):
    mirror = serve(http_server, "good", fake)
    cache = tmp_path / "c"
    ds = load_idx_dataset(fake.source, split="train", cache_dir=cache, mirrors=[mirror])
    assert ds.name == "fake/train" and ds.x.shape == (6, 28, 28, 1) and ds.x.dtype == np.float32
    np.testing.assert_array_equal(ds.x[..., 0] * 255, fake.arrays[TRAIN[0]])
    np.testing.assert_array_equal(ds.y, fake.arrays[TRAIN[1]])
    assert cache_files(cache) == sorted(f"{n}.gz" for n in TRAIN)  # no temp files
    for name in TRAIN:
        assert (cache / "fake" / f"{name}.gz").read_bytes() == fake.gz[name]
    assert "train-images-idx3-ubyte" in capsys.readouterr().err  # the tqdm bar, on stderr

    # Second load: served from the cache, no request, works offline.
    before = len(http_server.requests)
    again = load_idx_dataset(fake.source, split="train", cache_dir=cache, download=False)
    np.testing.assert_array_equal(again.x, ds.x)
    assert len(http_server.requests) == before


def test_cache_root_from_env(fake, http_server, private_cache):
    mirror = serve(http_server, "good", fake)
    load_idx_dataset(fake.source, split="train", mirrors=[mirror], progress=False)
    assert cache_files(private_cache) == sorted(f"{n}.gz" for n in TRAIN)


def test_checksum_mismatch_leaves_nothing_in_cache(fake, http_server, tmp_path):
    wrong = gzip.compress(fake.raw[TRAIN[0]][:-1] + b"\x01")  # same size, one byte changed
    mirror = serve(http_server, "bad", fake, override={TRAIN[0]: wrong})
    cache = tmp_path / "c"
    with pytest.raises(DataError, match="fails its checksum") as info:
        load_idx_dataset(
            fake.source, split="train", cache_dir=cache, mirrors=[mirror], progress=False
        )
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert cache_files(cache) == []


def test_overlong_content_length_leaves_nothing_in_cache(fake, http_server, tmp_path):
    # The full, valid body is sent, but Content-Length promises 1000 bytes more.
    mirror = serve(http_server, "short", fake, mode="overlong")
    cache = tmp_path / "c"
    with pytest.raises(DataError, match="cut short: received"):
        load_idx_dataset(
            fake.source, split="train", cache_dir=cache, mirrors=[mirror], progress=False
        )
    assert cache_files(cache) == []


def test_cut_gzip_stream_without_length_leaves_nothing(fake, http_server, tmp_path):
    half = fake.gz[TRAIN[0]][: len(fake.gz[TRAIN[0]]) // 2]
    mirror = serve(http_server, "cut", fake, mode="nolength", override={TRAIN[0]: half})
    cache = tmp_path / "c"
    with pytest.raises(DataError, match="gzip stream is incomplete"):
        load_idx_dataset(
            fake.source, split="train", cache_dir=cache, mirrors=[mirror], progress=False
        )
    assert cache_files(cache) == []


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.mark.parametrize("failure", ["404", "refused", "checksum"])
def test_next_mirror_is_used_when_one_fails(fake, http_server, tmp_path, failure):
    good = serve(http_server, "good", fake)
    if failure == "404":
        first = f"{http_server.url}/missing/"
    elif failure == "refused":
        first = _closed_port_url()
    else:
        first = serve(http_server, "bad", fake, override={n: gzip.compress(b"x") for n in TRAIN})
    cache = tmp_path / "c"
    ds = load_idx_dataset(
        fake.source, split="train", cache_dir=cache, mirrors=[first, good], progress=False
    )
    assert len(ds) == 6
    assert any(r.startswith("/good/") for r in http_server.requests)
    assert cache_files(cache) == sorted(f"{n}.gz" for n in TRAIN)


def test_all_mirrors_failing_lists_each_and_the_manual_options(
    fake, http_server, tmp_path, no_data_dir_env
):
    first, second = f"{http_server.url}/a/", f"{http_server.url}/b/"
    with pytest.raises(DataError) as info:
        load_idx_dataset(
            fake.source,
            split="train",
            cache_dir=tmp_path / "c",
            mirrors=[first, second],
            progress=False,
        )
    msg = str(info.value)
    assert (
        f"{first}train-images-idx3-ubyte.gz" in msg and f"{second}train-images-idx3-ubyte.gz" in msg
    )
    assert "404" in msg
    for needed in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "JAXZIP_DATA_DIR",
        "JAXZIP_CACHE_DIR",
        str(tmp_path / "c" / "fake"),
    ):
        assert needed in msg
    assert cache_files(tmp_path / "c") == []


def test_corrupt_cache_file_is_replaced_by_a_download(fake, http_server, tmp_path):
    cache = tmp_path / "c"
    fake.write(cache / "fake", files=[TRAIN[1]])
    (cache / "fake" / f"{TRAIN[0]}.gz").write_bytes(b"garbage")
    mirror = serve(http_server, "good", fake)
    ds = load_idx_dataset(
        fake.source, split="train", cache_dir=cache, mirrors=[mirror], progress=False
    )
    assert len(ds) == 6
    assert http_server.requests == [f"/good/{TRAIN[0]}.gz"]  # only the bad file is fetched
    assert (cache / "fake" / f"{TRAIN[0]}.gz").read_bytes() == fake.gz[TRAIN[0]]


def test_gunzip_md5_multi_member_and_limits():
    a, b = b"hello " * 1000, b"world" * 30_000
    stream = gzip.compress(a) + gzip.compress(b)
    check = _GunzipMd5("u", max_bytes=10**6)
    for i in range(0, len(stream), 7):  # odd-sized pieces straddle the member boundary
        check.update(stream[i : i + 7])
    assert check.hexdigest() == hashlib.md5(a + b).hexdigest()

    small = _GunzipMd5("u", max_bytes=1000)
    with pytest.raises(DataError, match="more than 1000 bytes"):
        small.update(gzip.compress(bytes(5000)))

    cut = _GunzipMd5("u", max_bytes=10**6)
    cut.update(gzip.compress(a)[:-5])
    with pytest.raises(DataError, match="incomplete"):
        cut.hexdigest()

    with pytest.raises(DataError, match="not valid gzip"):
        _GunzipMd5("u", max_bytes=10).update(b"not gzip at all")
