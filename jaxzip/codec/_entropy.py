"""Entropy coding of small-alphabet symbol streams: ANS (constriction) and canonical Huffman.

Both coders take symbols in ``0..255`` and a frequency table of the symbols
present (stored beside the stream), so a decoder rebuilds exactly the model the
encoder used. A stream with one distinct symbol codes to zero bytes.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from constriction import stream as _stream

from jaxzip.codec._errors import FormatError

MAX_CODE_LEN = 16
_ANS_CHUNK = 1 << 16


def symbol_counts(symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct symbols (``uint8``) and their counts (``uint32``).

    Example:
      >>> import numpy as np
      >>> symbol_counts(np.array([3, 1, 3], np.uint8))
      (array([1, 3], dtype=uint8), array([1, 2], dtype=uint32))
    """
    counts = np.bincount(np.asarray(symbols, np.int64).reshape(-1), minlength=256)
    present = np.flatnonzero(counts)
    return present.astype(np.uint8), counts[present].astype(np.uint32)


def entropy_bits(counts: np.ndarray) -> float:
    """Empirical entropy bound in bits: ``sum(-c * log2(c / n))`` over the counts.

    Example:
      >>> entropy_bits([2, 2])
      4.0
    """
    c = np.asarray(counts, np.float64)
    c = c[c > 0]
    n = c.sum()
    return float(-(c * np.log2(c / n)).sum()) if n else 0.0


def _model(counts: np.ndarray):
    return _stream.model.Categorical(np.asarray(counts, np.float64), perfect=False)


def _ranks(symbols: np.ndarray, present: np.ndarray) -> np.ndarray:
    lut = np.zeros(256, np.int32)
    lut[present] = np.arange(present.size, dtype=np.int32)
    return lut[np.asarray(symbols, np.int64)]


def ans_encode(symbols: np.ndarray, present: np.ndarray, counts: np.ndarray) -> bytes:
    """ANS-codes ``symbols`` with the categorical model of ``counts`` (constriction).

    Args:
      symbols: ``uint8`` symbols, each one of ``present``.
      present: the distinct symbols, strictly increasing (from :func:`symbol_counts`).
      counts: their counts (the model; stored beside the stream so a decoder rebuilds it).

    Returns:
      The coded words' little-endian bytes; empty for a constant stream.

    Example:
      >>> import numpy as np
      >>> s = np.array([0, 0, 0, 1], np.uint8)
      >>> p, c = symbol_counts(s)
      >>> (ans_decode(ans_encode(s, p, c), p, c, 4) == s).all()
      np.True_
    """
    if present.size <= 1:
        return b""
    coder = _stream.stack.AnsCoder()
    coder.encode_reverse(_ranks(symbols, present), _model(counts))
    return coder.get_compressed().astype("<u4").tobytes()


def ans_decode(data: bytes, present: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """Decodes ``n`` symbols written by :func:`ans_encode` (in bounded-memory chunks).

    Raises:
      FormatError: the stream is corrupt or decodes to a symbol outside ``present``.

    Example:
      >>> import numpy as np
      >>> p, c = np.array([3, 9], np.uint8), np.array([3, 1], np.uint32)
      >>> ans_decode(ans_encode(np.array([3, 9, 3, 3], np.uint8), p, c), p, c, 4)
      array([3, 9, 3, 3], dtype=uint8)
    """
    if present.size <= 1:
        if data:
            raise FormatError("ANS stream: a constant stream must have no payload")
        return np.full(n, present[0] if present.size else 0, np.uint8)
    if len(data) % 4:
        raise FormatError(f"ANS stream: length {len(data)} is not a multiple of 4")
    words = np.frombuffer(data, "<u4").astype(np.uint32)
    out = np.empty(n, np.uint8)
    try:
        coder, model = _stream.stack.AnsCoder(words), _model(counts)
        # in chunks: constriction returns int32 ranks, 4 bytes per symbol for the whole
        # stream at once, and a skewed table lets a few words stand for millions of symbols
        for i in range(0, n, _ANS_CHUNK):
            m = min(_ANS_CHUNK, n - i)
            ranks = np.asarray(coder.decode(model, m))
            if ranks.shape != (m,) or ranks.min() < 0 or ranks.max() >= present.size:
                raise FormatError("ANS stream: decoded symbols out of range")
            out[i : i + m] = present[ranks]
    except FormatError:
        raise
    except Exception as e:  # constriction reports corrupt data with various types
        raise FormatError(f"ANS stream: cannot decode ({e})") from None
    return out


def huffman_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code lengths for ``counts`` (ties broken by index), at most 16 bits.

    Counts are halved until the longest code fits, a standard length-limiting step.

    Example:
      >>> huffman_lengths([5, 1, 1, 2])
      array([1, 3, 3, 2], dtype=uint8)
    """
    c = np.maximum(np.asarray(counts, np.int64), 1)
    if c.size <= 1:
        return np.zeros(c.size, np.uint8)
    while True:
        heap = [(int(w), i, (i,)) for i, w in enumerate(c)]
        heapq.heapify(heap)
        lengths = np.zeros(c.size, np.int64)
        tie = c.size
        while len(heap) > 1:
            w1, _, a = heapq.heappop(heap)
            w2, _, b = heapq.heappop(heap)
            lengths[list(a + b)] += 1
            heapq.heappush(heap, (w1 + w2, tie, a + b))
            tie += 1
        if lengths.max() <= MAX_CODE_LEN:
            return lengths.astype(np.uint8)
        c = (c + 1) // 2


def _canonical(lengths: np.ndarray) -> np.ndarray:
    codes = np.zeros(lengths.size, np.int64)
    code, prev = 0, 0
    for i in sorted(range(lengths.size), key=lambda i: (lengths[i], i)):
        code <<= int(lengths[i]) - prev
        codes[i], prev = code, int(lengths[i])
        code += 1
    return codes


def huffman_encode(symbols: np.ndarray, present: np.ndarray, counts: np.ndarray) -> bytes:
    """Canonical-Huffman codes ``symbols`` (MSB first); the decoder needs the bit count.

    Example:
      >>> import numpy as np
      >>> s = np.array([0, 0, 1, 2], np.uint8)
      >>> p, c = symbol_counts(s)
      >>> huffman_encode(s, p, c).hex()  # codes 0, 0, 10, 11
      '2c'
    """
    lengths = huffman_lengths(counts)
    if present.size <= 1:
        return b""
    codes = _canonical(lengths)
    r = _ranks(symbols, present)
    lens = lengths[r].astype(np.int64)
    starts = np.cumsum(lens) - lens
    owner = np.repeat(np.arange(r.size), lens)
    j = np.arange(owner.size) - starts[owner]
    bits = (codes[r][owner] >> (lens[owner] - 1 - j)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def huffman_nbits(symbols_counts: np.ndarray) -> int:
    """The exact bit length of the Huffman stream for these counts."""
    c = np.asarray(symbols_counts, np.int64)
    return int((huffman_lengths(c).astype(np.int64) * c).sum()) if c.size > 1 else 0


def huffman_decode(data: bytes, present: np.ndarray, counts: np.ndarray, n: int) -> np.ndarray:
    """Decodes ``n`` symbols written by :func:`huffman_encode`.

    Raises:
      FormatError: the body has the wrong length or does not decode to ``n`` symbols.

    Example:
      >>> import numpy as np
      >>> s = np.array([0, 0, 1, 2], np.uint8)
      >>> p, c = symbol_counts(s)
      >>> huffman_decode(huffman_encode(s, p, c), p, c, 4)
      array([0, 0, 1, 2], dtype=uint8)
    """
    if present.size <= 1:
        if data:
            raise FormatError("Huffman stream: a constant stream must have no payload")
        return np.full(n, present[0] if present.size else 0, np.uint8)
    nbits = huffman_nbits(counts)
    if len(data) != math.ceil(nbits / 8):
        raise FormatError(f"Huffman stream: expected {math.ceil(nbits / 8)} bytes, got {len(data)}")
    lengths = huffman_lengths(counts).astype(np.int64)
    codes = _canonical(lengths)
    width = int(lengths.max())
    table_sym = np.zeros(1 << width, np.int64)
    table_len = np.zeros(1 << width, np.int64)
    for i in range(present.size):
        lo = int(codes[i]) << (width - lengths[i])
        hi = (int(codes[i]) + 1) << (width - lengths[i])
        table_sym[lo:hi], table_len[lo:hi] = i, lengths[i]
    bits = np.concatenate(
        [np.unpackbits(np.frombuffer(data, np.uint8))[:nbits], np.zeros(width, np.uint8)]
    ).astype(np.int64)
    window = np.zeros(nbits, np.int64)
    for j in range(width):
        window = (window << 1) | bits[j : j + nbits]
    step = table_len[window].tolist()
    out = np.empty(n, np.int64)
    pos = 0
    for k in range(n):
        if pos >= nbits:
            raise FormatError("Huffman stream: ran out of bits")
        out[k] = pos
        pos += step[pos]
    if pos != nbits:
        raise FormatError(f"Huffman stream: decoded {pos} of {nbits} bits")
    return present[table_sym[window[out]]] if n else np.zeros(0, np.uint8)
