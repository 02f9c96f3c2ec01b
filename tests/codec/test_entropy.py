import numpy as np

from jaxzip.codec._entropy import (
    ans_decode,
    ans_encode,
    entropy_bits,
    huffman_decode,
    huffman_encode,
    huffman_lengths,
    symbol_counts,
)


def _skewed(n):
    p = np.array([0.6, 0.2, 0.1, 0.05, 0.03, 0.02])
    return np.random.default_rng(0).choice(6, n, p=p).astype(np.uint8)


def test_ans_within_one_percent_of_entropy():
    s = _skewed(200_000)
    present, counts = symbol_counts(s)
    data = ans_encode(s, present, counts)
    bound = entropy_bits(counts) / 8
    assert len(data) <= 1.01 * bound + 16
    np.testing.assert_array_equal(ans_decode(data, present, counts, s.size), s)


def test_huffman_round_trip_and_size():
    s = _skewed(20_000)
    present, counts = symbol_counts(s)
    data = huffman_encode(s, present, counts)
    assert entropy_bits(counts) / 8 <= len(data) <= entropy_bits(counts) / 8 + s.size / 8 + 1
    np.testing.assert_array_equal(huffman_decode(data, present, counts, s.size), s)


def test_huffman_hand_worked():
    np.testing.assert_array_equal(huffman_lengths([5, 1, 1, 2]), [1, 3, 3, 2])
    s = np.array([0, 0, 1, 2], np.uint8)
    assert huffman_encode(s, *symbol_counts(s)) == bytes([0b00101100])


def test_length_limit():
    counts = [2**i for i in range(30)]  # Fibonacci-like skew needs > 16 bits unlimited
    assert huffman_lengths(counts).max() <= 16


def test_constant_stream_is_empty():
    s = np.full(10, 7, np.uint8)
    p, c = symbol_counts(s)
    assert ans_encode(s, p, c) == b"" and huffman_encode(s, p, c) == b""
    np.testing.assert_array_equal(ans_decode(b"", p, c, 10), s)
