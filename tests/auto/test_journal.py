"""Tests of jaxzip/auto/_journal.py."""

from __future__ import annotations

import json

import pytest

from jaxzip._errors import ConfigError
from jaxzip.auto import Journal, config_hash


def test_create_append_reopen(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal.open(path, config={"a": 1})
    j.append({"key": "k1", "acc": 0.5})
    j.append({"key": "k2", "acc": 0.25})
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head == {"jaxzip_journal": 1, "config_hash": config_hash({"a": 1}), "config": {"a": 1}}
    assert [json.loads(x)["key"] for x in lines[1:]] == ["k1", "k2"]
    again = Journal.open(path, config={"a": 1})
    assert [r["key"] for r in again.records] == ["k1", "k2"]
    assert again.get("k2") == {"key": "k2", "acc": 0.25}
    assert again.get("nope") is None and "k1" in again and len(again) == 2


def test_config_hash_is_canonical_sha256():
    import hashlib

    want = hashlib.sha256(b'{"a":[1,2],"b":"x"}').hexdigest()
    assert config_hash({"b": "x", "a": [1, 2]}) == want


def test_other_config_rejected_naming_both_hashes(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal.open(path, config={"seed": 0}).append({"key": "k", "v": 1})
    with pytest.raises(ConfigError) as e:
        Journal.open(path, config={"seed": 1})
    msg = str(e.value)
    assert config_hash({"seed": 0}) in msg and config_hash({"seed": 1}) in msg
    assert str(path) in msg
    assert len(Journal.open(path, config={"seed": 0})) == 1  # untouched


def test_torn_last_line_dropped_with_warning(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal.open(path, config={})
    j.append({"key": "k1"})
    j.append({"key": "k2"})
    text = path.read_text()
    path.write_text(text[:-7])  # a write cut short in the last record
    with pytest.warns(UserWarning, match="torn last line 3"):
        again = Journal.open(path, config={})
    assert [r["key"] for r in again.records] == ["k1"]
    assert len(path.read_text().splitlines()) == 2  # dropped on disk too
    again.append({"key": "k2"})
    assert [r["key"] for r in Journal.open(path, config={}).records] == ["k1", "k2"]


def test_corrupt_middle_line_rejected(tmp_path):
    path = tmp_path / "j.jsonl"
    j = Journal.open(path, config={})
    for k in ("k1", "k2", "k3"):
        j.append({"key": k})
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="line 3 is corrupt"):
        Journal.open(path, config={})


@pytest.mark.parametrize("text", ["", "not json\n", '{"other": 1}\n'])
def test_not_a_journal(tmp_path, text):
    path = tmp_path / "j.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not a jaxzip journal"):
        Journal.open(path, config={})


def test_bad_records_and_config(tmp_path):
    j = Journal.open(tmp_path / "j.jsonl", config={})
    j.append({"key": "a"})
    with pytest.raises(ValueError, match="already"):
        j.append({"key": "a"})
    with pytest.raises(ValueError, match="string 'key'"):
        j.append({"acc": 1.0})
    with pytest.raises(ValueError):
        j.append({"key": "b", "acc": float("nan")})
    assert [r["key"] for r in j.records] == ["a"]
    with pytest.raises(TypeError, match="JSON-able"):
        Journal.open(tmp_path / "k.jsonl", config={"f": object()})
    with pytest.raises(TypeError, match="mapping"):
        Journal.open(tmp_path / "k.jsonl", config=[1])


def test_the_lm_search_store_continues_the_journal_clock(tmp_path):
    from jaxzip.auto._lm_space import Store

    path = tmp_path / "j.jsonl"
    first = Store(Journal.open(path, config={"a": 1}))
    assert first.memo("k1", lambda: {"x": 1}) == {"key": "k1", "x": 1}  # results carry no time
    Journal.open(path, config={"a": 1}).append({"key": "k2", "x": 2, "elapsed_s": 500.0})
    resumed = Store(Journal.open(path, config={"a": 1}))
    assert resumed.memo("k1", lambda: {"x": 9}) == {"key": "k1", "x": 1}  # replayed
    assert resumed.elapsed() < 500.0  # on the journal's clock: k1's time
    assert resumed.memo("k2", lambda: {"x": 9}) == {"key": "k2", "x": 2}
    assert resumed.elapsed() >= 500.0  # a resumed search does not get its budget back
    resumed.memo("k3", lambda: {"x": 3})
    assert Journal.open(path, config={"a": 1}).get("k3")["elapsed_s"] >= 500.0
