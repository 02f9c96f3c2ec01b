"""Tests for jaxzip.data._idx: read_idx and write_idx."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxzip import DataError
from jaxzip.data import read_idx, write_idx

# 2x3 uint8 matrix [[1, 2, 3], [4, 5, 6]], written out by hand.
HAND = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("compressed", [False, True])
def test_hand_worked_uint8(tmp_path, compressed):
    path = tmp_path / ("m.gz" if compressed else "m")
    path.write_bytes(gzip.compress(HAND) if compressed else HAND)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 5, 6]])


def test_hand_worked_big_endian_int16(tmp_path):
    path = tmp_path / "i16"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    out = read_idx(path)
    assert out.dtype == np.dtype("int16") and out.dtype.isnative
    np.testing.assert_array_equal(out, [258, -2])


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(HAND))
    np.testing.assert_array_equal(read_idx(path), [[1, 2, 3], [4, 5, 6]])


@settings(max_examples=25, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(["u1", "i1", ">i2", "<i4", "f4", ">f8"]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compressed=st.booleans(),
)
def test_write_read_round_trip(tmp_path_factory, array, compressed):
    path = tmp_path_factory.mktemp("rt") / ("a.gz" if compressed else "a")
    write_idx(path, array)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, array)  # NaNs compare equal here
    assert (gzip.decompress(path.read_bytes()) if compressed else path.read_bytes())[:2] == b"\0\0"


def test_md5_of_decompressed_content(tmp_path):
    path = tmp_path / "m.gz"
    path.write_bytes(gzip.compress(HAND))
    good = hashlib.md5(HAND).hexdigest()
    read_idx(path, md5=good)
    with pytest.raises(DataError, match=rf"m\.gz fails its checksum.*{good[:8]}"):
        read_idx(path, md5="0" * 32)
    with pytest.raises(ValueError, match="md5 must be 32 lowercase hex"):
        read_idx(path, md5="XYZ")


CORRUPT = {
    "bad magic": (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic number"),
    "unknown type": (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unknown type code 0x07"),
    "no dims": (b"\x00\x00\x08\x00", "0 dimensions"),
    "short magic": (b"\x00\x00", "ends inside the 4-byte magic"),
    "short dims": (b"\x00\x00\x08\x02\x00\x00\x00\x01\x00", "ends inside the dimensions"),
    "truncated data": (HAND[:-2], "4 bytes of data but its header declares shape \\(2, 3\\)"),
    "too much data": (HAND + b"\x07", "shape \\(2, 3\\)"),
    "wrong dims": (bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(6), "shape \\(2, 2\\)"),
}


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_raise_data_error_naming_path(tmp_path, case, compressed):
    content, message = CORRUPT[case]
    path = tmp_path / f"corrupt-{compressed}"
    path.write_bytes(gzip.compress(content) if compressed else content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_huge_declared_shape_is_rejected_before_allocating(tmp_path):
    path = tmp_path / "huge.gz"
    header = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**31, 2**31, 2**31)
    path.write_bytes(gzip.compress(header + bytes(16)))
    with pytest.raises(DataError, match="more than the"):
        read_idx(path)


def test_gzip_bomb_is_read_only_up_to_the_declared_size(tmp_path):
    # 40 MB of zeros behind a header declaring 10 bytes: rejected after reading 11.
    path = tmp_path / "bomb.gz"
    header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10)
    path.write_bytes(gzip.compress(header + bytes(40_000_000), compresslevel=1))
    with pytest.raises(DataError, match="data after the 10 bytes"):
        read_idx(path)


def test_broken_gzip_stream(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(HAND)[:-12])  # cut inside the deflate stream / trailer
    with pytest.raises(DataError, match=r"broken\.gz"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


def test_write_idx_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dtype must be one of"):
        write_idx(tmp_path / "a", np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "a", np.uint8(3))
    assert list(tmp_path.iterdir()) == []
