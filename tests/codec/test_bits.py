import numpy as np
import pytest

from jaxzip.codec import FormatError, decode_gaps, encode_gaps, pack_bits, unpack_bits


def test_pack_hand_worked():
    assert pack_bits(np.array([1, 2]), 4) == b"\x21"
    assert pack_bits(np.array([5, 3, 7]), 3) == bytes([0xDD, 0x01])
    assert pack_bits(np.array([0, 0, 0]), 0) == b""
    np.testing.assert_array_equal(unpack_bits(bytes([0xDD, 0x01]), 3, 3), [5, 3, 7])


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_round_trip(bits):
    v = np.random.default_rng(bits).integers(0, 1 << bits, 37)
    np.testing.assert_array_equal(unpack_bits(pack_bits(v, bits), bits, 37), v)


def test_pack_bad_input():
    with pytest.raises(ValueError, match="values"):
        pack_bits(np.array([16]), 4)
    with pytest.raises(FormatError):
        unpack_bits(b"\x00", 4, 3)


def test_gaps_hand_worked_with_fillers():
    # b=2 (M=3): positions 0, 1, then 5 zeros -> filler (skip 3) + 2 -> position 7.
    np.testing.assert_array_equal(encode_gaps(np.array([0, 1, 7]), 2), [0, 0, 3, 2])
    # b=1: gap of 3 zeros = three fillers then 0.
    np.testing.assert_array_equal(encode_gaps(np.array([3]), 1), [1, 1, 1, 0])
    np.testing.assert_array_equal(decode_gaps(np.array([1, 1, 1, 0]), 1, 4, 1), [3])


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_gaps_round_trip(bits):
    pos = np.flatnonzero(np.random.default_rng(bits).random(500) < 0.05)
    np.testing.assert_array_equal(decode_gaps(encode_gaps(pos, bits), bits, 500, pos.size), pos)


def test_gaps_bad_stream():
    with pytest.raises(FormatError):
        decode_gaps(np.array([0, 0, 3, 2]), 2, size=5, nnz=3)  # position 7 >= 5
    with pytest.raises(FormatError):
        decode_gaps(np.array([0, 3]), 2, size=10, nnz=1)  # trailing filler
