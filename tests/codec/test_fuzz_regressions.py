"""Regression tests for decoder bugs found by experiments/fuzz_codec.py (checksums recomputed)."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from jaxzip import codec
from jaxzip.codec._container import MAX_EXPANSION, MIN_DECODED_BYTES

_PREFIX = struct.Struct("<8sHHII")


def _edit(data: bytes, fn) -> bytes:
    """Applies ``fn`` to the parsed header and re-frames the file with valid checksums."""
    _, version, _, hlen, _ = _PREFIX.unpack_from(data)
    header = json.loads(data[_PREFIX.size : _PREFIX.size + hlen])
    fn(header)
    hb = json.dumps(header).encode()
    body = _PREFIX.pack(b"\x89JZC\r\n\x1a\n", version, 0, len(hb), zlib.crc32(hb)) + hb
    body += data[_PREFIX.size + hlen : -4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_unhashable_dtype_is_a_format_error():
    data = codec.encode({"w": np.arange(3, dtype=np.float32)})

    def fn(h):
        h["leaves"][0]["components"][0]["dtype"] = {"x": 1}

    with pytest.raises(codec.FormatError, match="w/value: malformed component"):
        codec.decode(_edit(data, fn))


@pytest.mark.parametrize("shape", [[2**24], [2**16, 2**16]])
def test_huge_declared_constant_stream_is_refused_without_allocating(shape):
    # a 0-byte constant stream (pack, 0 bits) can declare any number of elements
    data = codec.encode({"w": np.zeros(8, np.int8)})

    def fn(h):
        h["leaves"][0]["components"][0]["shape"] = shape

    bad = _edit(data, fn)
    tracemalloc.start()
    try:
        with pytest.raises(codec.FormatError, match=r"w/value: the arrays declare \d+ bytes"):
            codec.decode(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(bad) + (1 << 16)


def test_budget_allows_highly_compressed_real_files():
    # all-zero arrays up to the floor decode, as do files within MAX_EXPANSION
    tree = {"w": np.zeros(MIN_DECODED_BYTES // 4, np.float32)}
    out = codec.decode(codec.encode(tree))
    assert out["w"].shape == tree["w"].shape and not out["w"].any()
    too_big = {"w": np.zeros(MIN_DECODED_BYTES // 4 + 1, np.float32)}
    data = codec.encode(too_big)
    assert MAX_EXPANSION * len(data) < MIN_DECODED_BYTES
    with pytest.raises(codec.FormatError, match="cap"):
        codec.decode(data)


CASES = [
    ([-128, 127, 0, -1], np.int8),
    ([0, 255, 254], np.uint8),
    ([2**64 - 1, 2**64 - 2, 2**64 - 200], np.uint64),
    ([-(2**63), -(2**63) + 5], np.int64),
    ([True, True], np.bool_),
    ([False, True], np.bool_),
]


def test_symbol_streams_decode_exactly_at_dtype_limits():
    # the decoder adds the offset in the target dtype (modulo 2**bits), not via int64;
    # uint64 values above int64's range used to encode to an undecodable stream
    for values, dtype in CASES:
        x = np.array(values, dtype)
        for symbols in ("pack", "ans", "huffman"):
            enc = codec.Encoding(symbols=symbols)
            out = codec.decode(codec.encode({"x": x}, encoding=enc))["x"]
            assert out.dtype == x.dtype and out.tolist() == x.tolist(), (values, symbols)


def test_offset_pushing_values_out_of_range_is_a_format_error():
    data = codec.encode(
        {"x": np.array([0, 1, 2], np.int8)}, encoding=codec.Encoding(symbols="pack")
    )

    def fn(h):
        h["leaves"][0]["components"][0]["enc"]["offset"] = 126

    with pytest.raises(codec.FormatError, match="out of range for int8"):
        codec.decode(_edit(data, fn))
