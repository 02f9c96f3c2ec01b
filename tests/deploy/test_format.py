"""Tests for jaxzip/deploy/_format.py: framing round trip and rejection of malformed bytes."""

from __future__ import annotations

import pytest

from jaxzip.codec import FormatError
from jaxzip.deploy._format import MAGIC, is_exported_file, pack, parse_info, unpack

INFO = {
    "input_shape": [1, 3],
    "input_dtype": "float32",
    "output_shape": [1, 2],
    "output_dtype": "float32",
    "num_weights": 2,
}


def test_round_trip_hand_case():
    data = pack({"a": [1, 2]}, b"HLO", b"WEIGHTS")
    # prefix 8+2+2+4+8+8+4+4+4 = 44 bytes, info '{"a":[1,2]}' 11, 3 + 7, file crc 4
    assert len(data) == 44 + 11 + 3 + 7 + 4
    assert data[:8] == MAGIC and is_exported_file(data)
    assert unpack(data) == ({"a": [1, 2]}, b"HLO", b"WEIGHTS")


def test_parse_info_fields():
    info = parse_info(pack(INFO, b"h", b"ww"))
    assert (info.input_shape, info.output_shape, info.num_weights) == ((1, 3), (1, 2), 2)
    assert (info.hlo_bytes, info.weights) == (1, b"ww")


@pytest.mark.parametrize("cut", [0, 10, 44, 50, -1])
def test_truncated(cut):
    data = pack(INFO, b"hlo", b"weights")
    with pytest.raises(FormatError):
        unpack(data[:cut])


def test_every_flipped_byte_is_caught():
    data = pack(INFO, b"hlo", b"weights")
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x40
        with pytest.raises(FormatError):
            unpack(bytes(bad))


def test_wrong_magic_and_version():
    data = bytearray(pack(INFO, b"h", b"w"))
    with pytest.raises(FormatError, match="magic"):
        unpack(b"\x89JZC" + bytes(data[4:]))
    data[8] = 9
    with pytest.raises(FormatError, match="version 9"):
        unpack(bytes(data))


@pytest.mark.parametrize(
    "info",
    [
        {},
        {**INFO, "input_shape": "1,3"},
        {**INFO, "output_shape": [1, None]},
        {**INFO, "num_weights": True},
        {**INFO, "input_dtype": 3},
    ],
)
def test_bad_info_rejected(info):
    with pytest.raises(FormatError, match="info"):
        parse_info(pack(info, b"h", b"w"))


def test_not_bytes():
    with pytest.raises(TypeError, match="data"):
        unpack("text")


def _pack_text(info_text: str) -> bytes:
    import struct
    import zlib

    from jaxzip.deploy._format import _PREFIX

    ib = info_text.encode()
    head = _PREFIX.pack(
        MAGIC, 1, 0, len(ib), 1, 1, zlib.crc32(ib), zlib.crc32(b"h"), zlib.crc32(b"w")
    )
    body = head + ib + b"h" + b"w"
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_info_is_refused(const):
    # defect 7d: docs/security.md promises the info JSON refuses non-finite constants
    import json

    text = json.dumps(INFO)[:-1] + f', "jax_version": {const}}}'
    with pytest.raises(FormatError, match=f"info section is not valid JSON.*{const}"):
        unpack(_pack_text(text))
