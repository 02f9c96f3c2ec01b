"""Bit packing of small unsigned integers and Deep Compression's relative-index gaps."""

from __future__ import annotations

import numpy as np

from jaxzip.codec._errors import FormatError

_UNPACK_CHUNK = 1 << 16


def packed_nbytes(count: int, bits: int) -> int:
    """The number of bytes :func:`pack_bits` writes for ``count`` values of ``bits`` bits."""
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Packs unsigned integers of ``bits`` bits each, least significant bit first.

    The first value fills the lowest bits of the first byte; with ``bits=4`` two
    values share a byte. ``bits=0`` packs a constant-zero stream into no bytes.

    Args:
      values: a 1-D array of non-negative integers below ``2**bits``.
      bits: the width, 0 to 8.

    Returns:
      ``ceil(len(values) * bits / 8)`` bytes.

    Raises:
      ValueError: ``bits`` is out of range or a value does not fit.

    Example:
      >>> import numpy as np
      >>> pack_bits(np.array([1, 2, 15]), 4).hex()
      '210f'
    """
    if not 0 <= bits <= 8:
        raise ValueError(f"bits: expected 0..8, got {bits}")
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < 0 or int(v.max()) >= (1 << bits)):
        raise ValueError(f"values: expected integers in [0, {1 << bits}), got {v.min()}..{v.max()}")
    if bits == 0 or v.size == 0:
        return b""
    v = v.astype(np.uint8)
    planes = (v[:, None] >> np.arange(bits, dtype=np.uint8)) & 1
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` values as ``uint8``.

    Raises:
      FormatError: ``data`` has the wrong length for ``count`` and ``bits``.

    Example:
      >>> unpack_bits(bytes.fromhex("210f"), 4, 3)
      array([ 1,  2, 15], dtype=uint8)
    """
    if not 0 <= bits <= 8 or len(data) != packed_nbytes(count, bits):
        raise FormatError(
            f"packed stream: expected {packed_nbytes(count, bits)} bytes for "
            f"{count} values of {bits} bits, got {len(data)}"
        )
    if bits == 0 or count == 0:
        return np.zeros(count, np.uint8)
    buf = np.frombuffer(data, np.uint8)
    if bits == 8:
        return buf.copy()
    if bits == 1:
        return np.unpackbits(buf, count=count, bitorder="little")
    # in chunks of _UNPACK_CHUNK values (a multiple of 8, so each starts on a byte): the bit
    # planes of the whole stream at once would take 3 * bits bytes per value
    out = np.empty(count, np.uint8)
    shifts = np.arange(bits, dtype=np.uint8)
    for i in range(0, count, _UNPACK_CHUNK):
        m = min(_UNPACK_CHUNK, count - i)
        part = buf[i * bits // 8 : (i * bits + m * bits + 7) // 8]
        planes = np.unpackbits(part, count=m * bits, bitorder="little").reshape(m, bits)
        out[i : i + m] = (planes << shifts).sum(axis=1, dtype=np.uint8)
    return out


def encode_gaps(positions: np.ndarray, bits: int) -> np.ndarray:
    """Relative-index coding of sorted positions with filler entries (Deep Compression).

    Each entry is a symbol in ``0..M`` with ``M = 2**bits - 1``. An entry ``v < M``
    places the next nonzero ``v`` positions after the one following the previous
    nonzero; the entry ``M`` is a filler that skips ``M`` positions and places
    nothing. A run of ``G`` zeros therefore costs ``G // M`` fillers and one entry.
    (Unlike the paper's fillers, ours carry no zero weight in the value stream.)

    Args:
      positions: strictly increasing non-negative flat indices.
      bits: the entry width, 1 to 8.

    Returns:
      The ``uint8`` entries.

    Example:
      >>> import numpy as np
      >>> encode_gaps(np.array([0, 1, 7]), 2)  # 5 zeros before 7: one filler (3) + 2
      array([0, 0, 3, 2], dtype=uint8)
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits: expected 1..8, got {bits}")
    pos = np.asarray(positions, np.int64).reshape(-1)
    m = (1 << bits) - 1
    gaps = np.diff(pos, prepend=-1) - 1
    if gaps.size and gaps.min() < 0:
        raise ValueError("positions: expected strictly increasing non-negative indices")
    fill = gaps // m
    ends = np.cumsum(fill + 1) - 1
    out = np.full(int(ends[-1]) + 1 if ends.size else 0, m, np.uint8)
    out[ends] = (gaps % m).astype(np.uint8)
    return out


def decode_gaps(entries: np.ndarray, bits: int, size: int, nnz: int) -> np.ndarray:
    """Inverse of :func:`encode_gaps`: the flat positions, checked against ``size``/``nnz``.

    Raises:
      FormatError: the entries do not describe ``nnz`` positions below ``size``.

    Example:
      >>> import numpy as np
      >>> decode_gaps(np.array([0, 0, 3, 2], np.uint8), 2, size=10, nnz=3)
      array([0, 1, 7])
    """
    m = (1 << bits) - 1
    e = np.asarray(entries, np.int64)
    if e.size > size or (e.size and e.max() > m):
        raise FormatError(f"gap stream: {e.size} entries cannot index {size} positions")
    real = e < m
    ends = np.cumsum(e + real)
    pos = ends[real] - 1
    if pos.size != nnz or (pos.size and pos[-1] >= size) or (e.size and not real[-1]):
        raise FormatError(f"gap stream: expected {nnz} positions below {size}, got {pos.size}")
    return pos
