"""Tests for jaxzip/data/_text.py: byte-level text corpora and their splits."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from jaxzip import DataError
from jaxzip import data as jz_data
from jaxzip.data import eval_windows, load_text, read_text, split_lines

TEXT = b"".join(f"line {i}: in the beginning\n".encode() for i in range(20))


def _source(text: bytes = TEXT, **kw) -> jz_data.TextSource:
    return jz_data.TextSource(
        name="toy", file="toy.txt", sha256=hashlib.sha256(text).hexdigest(), **kw
    )


def _write(directory: Path, text: bytes = TEXT, *, compressed: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if compressed:
        path = directory / "toy.txt.gz"
        path.write_bytes(gzip.compress(text, mtime=0))
    else:
        path = directory / "toy.txt"
        path.write_bytes(text)
    return path


@pytest.mark.parametrize("compressed", [True, False])
def test_load_from_data_dir_splits_the_last_tenth_of_lines(tmp_path, compressed):
    _write(tmp_path, compressed=compressed)
    s = load_text(_source(), tmp_path)
    lines = TEXT.splitlines(keepends=True)
    assert s.train.tobytes() == b"".join(lines[:18])  # 20 lines: the last 2 held out
    assert s.held_out.tobytes() == b"".join(lines[18:])
    assert not s.train.flags.writeable and not s.held_out.flags.writeable


def test_lookup_order_env_dir_then_cache(tmp_path, monkeypatch):
    source = _source()
    cache = tmp_path / "cache"
    _write(cache / "toy")
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(tmp_path / "env"))
    assert load_text(source, cache_dir=cache).held_out.size > 0  # env dir lacks it: the cache
    other = TEXT.replace(b"beginning", b"BEGINNING")
    _write(tmp_path / "env" / "toy", other)  # wrong checksum in the env dir: an error, no fallback
    with pytest.raises(DataError, match="fails its checksum"):
        load_text(source, cache_dir=cache)


def test_explicit_dir_is_not_bypassed(tmp_path, monkeypatch):
    _write(tmp_path / "env" / "toy")
    monkeypatch.setenv("JAXZIP_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError, match=r"directory .*empty lacks toy\.txt\.gz"):
        load_text(_source(), tmp_path / "empty")


def test_missing_everywhere_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXZIP_DATA_DIR", raising=False)
    with pytest.raises(DataError) as e:
        load_text(_source(), cache_dir=tmp_path / "c")
    msg = str(e.value)
    assert "no download mirror" in msg and "toy.txt.gz" in msg
    assert str(tmp_path / "c" / "toy") in msg and "$JAXZIP_DATA_DIR/toy" in msg


def test_corrupt_and_oversized_and_tampered_files(tmp_path):
    path = tmp_path / "toy.txt.gz"
    path.write_bytes(gzip.compress(TEXT)[:-6])  # a cut-off gzip stream
    with pytest.raises(DataError, match="corrupt or unreadable"):
        read_text(path, sha256=_source().sha256)
    path.write_bytes(gzip.compress(TEXT[:-1] + b"!"))
    with pytest.raises(DataError, match=f"expected {_source().sha256}"):
        read_text(path, sha256=_source().sha256)
    with pytest.raises(DataError, match="does not exist"):
        read_text(tmp_path / "nope.txt", sha256=_source().sha256)


def test_too_few_lines_for_a_split(tmp_path):
    text = b"one\ntwo\nthree\n"
    _write(tmp_path, text)
    with pytest.raises(DataError, match=r"3 lines cannot be split with held_out_fraction=0\.1"):
        load_text(_source(text), tmp_path)
    assert split_lines(text, held_out_fraction=0.34, name="t").held_out.tobytes() == b"three\n"


def test_split_property_train_plus_held_out_is_the_text():
    rng = np.random.default_rng(0)
    for _ in range(20):
        text = bytes(rng.choice(np.frombuffer(b"ab\n", np.uint8), size=rng.integers(30, 200)))
        try:
            s = split_lines(text, held_out_fraction=0.2, name="t")
        except DataError:
            continue
        assert s.train.tobytes() + s.held_out.tobytes() == text
        assert s.train.size == 0 or s.train[-1] == 10  # the cut falls after a line end
        n_lines = len(text.splitlines())
        assert len(s.held_out.tobytes().splitlines()) == int(n_lines * 0.2)


def test_token_windows_and_splits_validate():
    ok = np.zeros((2, 3), np.int32)
    with pytest.raises(DataError, match=r"must lie in \[0, 4\)"):
        jz_data.TokenWindows(x=ok + 4, y=ok, vocab_size=4, name="w")
    with pytest.raises(DataError, match="shape"):
        jz_data.TokenWindows(x=ok, y=ok[:, :2], vocab_size=4, name="w")
    with pytest.raises(TypeError, match="int32"):
        jz_data.TokenWindows(x=ok.astype(np.int64), y=ok, vocab_size=4, name="w")
    with pytest.raises(TypeError, match="uint8"):
        jz_data.TextSplits(train=np.zeros(3, np.int8), held_out=np.zeros(3, np.uint8), name="s")


@pytest.mark.parametrize(
    "field, value",
    [("name", "Bad Name"), ("file", "../x.txt"), ("sha256", "abc"), ("held_out_fraction", 1.0)],
)
def test_bad_source(field, value):
    kw = {"name": "toy", "file": "toy.txt", "sha256": "0" * 64, field: value}
    with pytest.raises(ValueError, match=field):
        jz_data.TextSource(**kw)


def test_real_kjv_corpus(kjv_dir):
    """Reads ../shared/data/kjv through $JAXZIP_DATA_DIR (set under CI, where skips fail)."""
    s = jz_data.load_kjv()
    assert jz_data.KJV.name == "kjv"
    assert (len(s.train), len(s.held_out)) == (3_761_794, 376_056)
    assert int((s.held_out == 10).sum()) == 3_110 and int((s.train == 10).sum()) == 27_992
    assert s.held_out[:4].tobytes() == b"What"  # Romans 3:1, 0-based line 27,992
    w = eval_windows(s.held_out, seq_len=128)
    assert len(w) == (376_056 - 1) // 128
