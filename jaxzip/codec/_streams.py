"""Encodings of one array: raw, bit-packed, ANS, Huffman, and sparse positions + values."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from typing import Any

import numpy as np

from jaxzip.codec._bits import encode_gaps, pack_bits, packed_nbytes, unpack_bits
from jaxzip.codec._entropy import (
    ans_decode,
    ans_encode,
    entropy_bits,
    huffman_decode,
    huffman_encode,
    huffman_nbits,
    symbol_counts,
)
from jaxzip.codec._errors import FormatError
from jaxzip.codec._groups import decode_groups, group_layouts, group_symbols
from jaxzip.codec._rowcol import decode_rowcol, encode_rowcol, plan_rowcol

SYMBOL_CODERS = ("pack", "ans", "huffman")
POSITION_CODERS = ("dense", "bitmask", "gaps", "rowcol")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Encoding:
    """A pinned encoding for every array in a tree (``None`` in :func:`encode` picks the smallest).

    Float values are always stored raw (bit-exact); integer and bool streams whose
    range spans at most 256 values use ``symbols``; wider integers stay raw.

    Attributes:
      symbols: the coder of integer streams (values, indices, gap entries):
        ``"pack"`` (fixed width), ``"ans"`` (constriction) or ``"huffman"``.
      positions: ``"dense"`` (every element stored), ``"bitmask"`` (one bit per
        element, then the nonzeros), ``"gaps"`` (relative indices with fillers) or
        ``"rowcol"`` (the bits ANS-coded by row and column density, the smallest
        of 2, 4 and 8 groups per axis; see ``_rowcol.py``). The automatic choice
        (``encoding=None``) also tries one symbol per group of 4 or 8 elements
        (``_groups.py``: N:M masks), which cannot be pinned.
      gap_bits: the gap entry width for ``positions="gaps"``, 1 to 8.

    Example:
      >>> Encoding(symbols="huffman", positions="gaps", gap_bits=3).positions
      'gaps'
    """

    symbols: str = "ans"
    positions: str = "dense"
    gap_bits: int = 4

    def __post_init__(self) -> None:
        if self.symbols not in SYMBOL_CODERS:
            raise ValueError(f"symbols: expected one of {SYMBOL_CODERS}, got {self.symbols!r}")
        if self.positions not in POSITION_CODERS:
            raise ValueError(
                f"positions: expected one of {POSITION_CODERS}, got {self.positions!r}"
            )
        g = self.gap_bits
        if isinstance(g, bool) or not isinstance(g, int) or not 1 <= g <= 8:
            raise ValueError(f"gap_bits: expected an int in 1..8, got {g!r}")


def _le_bytes(x: np.ndarray) -> bytes:
    x = np.ascontiguousarray(x)
    return (x.byteswap() if sys.byteorder == "big" else x).tobytes()


def _is_int(dtype: np.dtype) -> bool:
    return dtype.kind in "biu"


def nonzero_positions(flat: np.ndarray) -> np.ndarray:
    """Flat indices of the elements whose bits are not all zero (``-0.0`` counts as nonzero)."""
    if flat.dtype.itemsize == 0 or flat.size == 0:
        return np.zeros(0, np.int64)
    view = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    return np.flatnonzero(view)


# ---- symbol streams (1-D integers spanning <= 256 values) ----


def _encode_symbols(v: np.ndarray, coder: str) -> tuple[dict[str, Any], bytes]:
    v = np.asarray(v, np.int64)
    offset = int(v.min()) if v.size else 0
    s = (v - offset).astype(np.uint8)
    if coder == "pack":
        bits = int(s.max()).bit_length() if s.size else 0
        return {"enc": "pack", "bits": bits, "offset": offset}, pack_bits(s, bits)
    present, counts = symbol_counts(s)
    body = ans_encode(s, present, counts) if coder == "ans" else huffman_encode(s, present, counts)
    spec = {"enc": coder, "offset": offset, "k": int(present.size)}
    return spec, present.tobytes() + counts.astype("<u4").tobytes() + body


def _symbols_size(v: np.ndarray, coder: str) -> float:
    s = np.asarray(v, np.int64)
    s = s - (s.min() if s.size else 0)
    if coder == "pack":
        return packed_nbytes(s.size, int(s.max()).bit_length() if s.size else 0)
    _, counts = symbol_counts(s)
    body = huffman_nbits(counts) / 8 if coder == "huffman" else entropy_bits(counts) / 8 + 4
    return 5 * counts.size + body


def _decode_symbols_u8(spec: dict[str, Any], data: bytes, n: int) -> tuple[np.ndarray, int]:
    """The ``uint8`` symbols and the offset to add (no wide intermediate array)."""
    enc, offset = spec.get("enc"), spec.get("offset")
    if not isinstance(offset, int) or isinstance(offset, bool) or abs(offset) > 2**64:
        raise FormatError(f"symbol stream: bad offset {offset!r}")
    if enc == "pack":
        bits = spec.get("bits")
        if not isinstance(bits, int) or not 0 <= bits <= 8:
            raise FormatError(f"packed stream: bad bits {bits!r}")
        s = unpack_bits(data, bits, n)
    elif enc in ("ans", "huffman"):
        k = spec.get("k")
        if not isinstance(k, int) or not 0 <= k <= 256 or len(data) < 5 * k:
            raise FormatError(f"{enc} stream: bad alphabet size {k!r}")
        present = np.frombuffer(data[:k], np.uint8)
        counts = np.frombuffer(data[k : 5 * k], "<u4").astype(np.int64)
        if np.any(np.diff(present.astype(np.int64)) <= 0) or np.any(counts == 0):
            raise FormatError(f"{enc} stream: bad frequency table")
        if int(counts.sum()) != n or (n and k == 0):
            raise FormatError(f"{enc} stream: counts sum to {int(counts.sum())}, expected {n}")
        decode = ans_decode if enc == "ans" else huffman_decode
        s = decode(data[5 * k :], present, counts, n)
    else:
        raise FormatError(f"symbol stream: unknown encoding {enc!r}")
    return s, offset


# ---- arrays ----


def _symbol_candidates(flat: np.ndarray, coder: str | None) -> list[str]:
    if not _is_int(flat.dtype) or flat.size == 0:
        return []
    lo, hi = int(flat.min()), int(flat.max())
    if hi - lo > 255 or hi > np.iinfo(np.int64).max:  # symbol streams compute in int64
        return []
    return list(SYMBOL_CODERS) if coder is None else [coder]


def _encode_dense(flat: np.ndarray, coder: str | None) -> tuple[dict[str, Any], bytes]:
    cands = _symbol_candidates(flat, coder)
    if not cands:
        return {"enc": "raw"}, _le_bytes(flat)
    v = flat.astype(np.int64)
    if coder is None:
        best = min(cands, key=lambda c: _symbols_size(v, c))
        spec, data = _encode_symbols(v, best)
        return ({"enc": "raw"}, _le_bytes(flat)) if len(data) >= flat.nbytes else (spec, data)
    return _encode_symbols(v, coder)


def _mask(pos: np.ndarray, n: int) -> np.ndarray:
    """The bool mask of ``n`` elements set at ``pos``."""
    mask = np.zeros(n, np.bool_)
    mask[pos] = True
    return mask


def _rowcol(
    mask: np.ndarray, cols: int, symbols: str | None, beat: float = math.inf
) -> tuple[dict[str, Any], bytes] | None:
    """The rowcol coding of the flat bool ``mask`` with the best estimated group count;
    None if that estimate is not below ``beat`` bytes (the ANS step runs only for a
    likely winner)."""
    plan = plan_rowcol(mask.reshape(-1, cols))
    if plan.bytes >= beat:
        return None
    coders = list(SYMBOL_CODERS) if symbols is None else [symbols]

    def sym(v: np.ndarray) -> tuple[dict[str, Any], bytes]:
        return min((_encode_symbols(v, c) for c in coders), key=lambda r: len(r[1]))

    return encode_rowcol(mask, cols, plan.g, sym, plan=plan)


def _groups(
    mask: np.ndarray, shape: tuple[int, ...], beat: float
) -> tuple[dict[str, Any], bytes] | None:
    """The smallest group coding of the flat bool ``mask`` of an array of ``shape`` (see
    ``_groups.py``); None if no estimate is below ``beat`` bytes (only the winner is
    entropy-coded)."""
    best: tuple[float, int, int, str, np.ndarray] | None = None
    for m, stride in group_layouts(shape):
        symbols = group_symbols(mask, m, stride)
        for c in SYMBOL_CODERS:
            size = _symbols_size(symbols, c)
            if size < beat and (best is None or size < best[0]):
                best = (size, m, stride, c, symbols)
    if best is None:
        return None
    _, m, stride, coder, symbols = best
    spec, data = _encode_symbols(symbols, coder)
    return {"enc": "groups", "m": m, "stride": stride, "coder": spec}, data


def _cost(coded: tuple[dict[str, Any], bytes]) -> int:
    """Bytes of a coded stream: its payload and its spec as header JSON (before deflate)."""
    return len(coded[1]) + len(json.dumps(coded[0], separators=(",", ":")))


def _encode_positions(
    pos: np.ndarray, shape: tuple[int, ...], enc: Encoding | None
) -> tuple[dict[str, Any], bytes]:
    n, cols = (int(np.prod(shape)), shape[-1] or 1) if shape else (1, 1)
    pinned_rowcol = enc is not None and enc.positions == "rowcol" and n
    coded = _rowcol(_mask(pos, n), cols, enc.symbols) if pinned_rowcol else None
    if coded is not None:  # pinned rowcol: no bound to beat, so never None for n > 0
        return coded
    if enc is not None and enc.positions in ("bitmask", "rowcol"):  # rowcol of nothing: empty
        return {"enc": "bitmask"}, pack_bits(_mask(pos, n).view(np.uint8), 1)
    if enc is not None:
        entries = encode_gaps(pos, enc.gap_bits)
        spec, data = _encode_symbols(entries, enc.symbols)
        return {
            "enc": "gaps",
            "bits": enc.gap_bits,
            "count": int(entries.size),
            "coder": spec,
        }, data
    best = (packed_nbytes(n, 1), None, "bitmask")
    for b in range(1, 9):
        entries = encode_gaps(pos, b)
        for c in SYMBOL_CODERS:
            size = _symbols_size(entries, c)
            if size < best[0]:
                best = (size, b, c)
    if best[1] is None:
        out = _encode_positions(pos, shape, Encoding(positions="bitmask"))
    else:
        gaps = Encoding(symbols=best[2], positions="gaps", gap_bits=best[1])
        out = _encode_positions(pos, shape, gaps)
    if pos.size:  # the structured coders, each on the one mask, kept only when smaller
        mask, beat = _mask(pos, n), _cost(out)
        for structured in (_rowcol(mask, cols, None, beat=beat), _groups(mask, shape, beat)):
            if structured is not None and _cost(structured) < _cost(out):
                out = structured
    return out


def _encode_sparse(
    flat: np.ndarray, shape: tuple[int, ...], enc: Encoding | None
) -> tuple[dict[str, Any], bytes]:
    pos = nonzero_positions(flat)
    pspec, pdata = _encode_positions(pos, shape, enc)
    vspec, vdata = _encode_dense(flat[pos], None if enc is None else enc.symbols)
    spec = {"enc": "sparse", "nnz": int(pos.size), "pos": pspec, "pos_len": len(pdata)}
    return {**spec, "values": vspec}, pdata + vdata


def encode_array(x: np.ndarray, enc: Encoding | None) -> tuple[dict[str, Any], bytes]:
    """Encodes a numpy array's elements (flattened) as ``(spec, payload)``.

    With ``enc=None`` every applicable encoding is tried and the smallest kept.

    Example:
      >>> import numpy as np
      >>> spec, data = encode_array(np.array([0, 0, 3, 0], np.int8), Encoding(symbols="pack"))
      >>> spec, data.hex()
      ({'enc': 'pack', 'bits': 2, 'offset': 0}, '30')
    """
    x = np.asarray(x)
    flat, shape = x.reshape(-1), tuple(x.shape)
    if enc is not None:
        return (
            _encode_dense(flat, enc.symbols)
            if enc.positions == "dense"
            else _encode_sparse(flat, shape, enc)
        )
    best = _encode_dense(flat, None)
    if flat.size and nonzero_positions(flat).size < flat.size:
        sparse = _encode_sparse(flat, shape, None)
        if len(sparse[1]) < len(best[1]):
            best = sparse
    return best


def decode_array(spec: Any, data: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    """Inverse of :func:`encode_array`: ``n`` elements of ``dtype`` (flat).

    Raises:
      FormatError: the spec is malformed or does not match ``data``.
    """
    if not isinstance(spec, dict):
        raise FormatError(f"array encoding: expected an object, got {type(spec).__name__}")
    enc = spec.get("enc")
    if enc == "raw":
        if len(data) != n * dtype.itemsize:
            raise FormatError(f"raw array: expected {n * dtype.itemsize} bytes, got {len(data)}")
        out = np.frombuffer(data, dtype).copy()
        return out.byteswap() if sys.byteorder == "big" else out
    if enc in SYMBOL_CODERS:
        if not _is_int(dtype):
            raise FormatError(f"{enc} encoding is only valid for integer arrays, not {dtype}")
        s, offset = _decode_symbols_u8(spec, data, n)
        info = (0, 1) if dtype == np.bool_ else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        if s.size and (int(s.min()) + offset < info[0] or int(s.max()) + offset > info[1]):
            raise FormatError(f"{enc} stream: values out of range for {dtype}")
        # the true values fit in dtype, so adding modulo 2**bits gives them exactly; one-byte
        # dtypes reuse the symbols' buffer, wider ones hold it beside the output only briefly
        if dtype.itemsize == 1:
            s += np.uint8(offset % 256)
            return s.view(dtype)
        out = s.astype(dtype)
        del s
        if offset % (1 << (8 * dtype.itemsize)):  # added in place: no second full-size array
            wrap = np.dtype(f"u{dtype.itemsize}")
            out += np.array(offset % (1 << (8 * dtype.itemsize)), wrap).view(dtype)
        return out
    if enc == "sparse":
        return _decode_sparse(spec, data, dtype, n)
    raise FormatError(f"array encoding: unknown {enc!r}")


def _decode_sparse(spec: dict[str, Any], data: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    nnz, plen, pspec = spec.get("nnz"), spec.get("pos_len"), spec.get("pos")
    if not isinstance(nnz, int) or not 0 <= nnz <= n:
        raise FormatError(f"sparse array: bad nnz {nnz!r} for {n} elements")
    if not isinstance(plen, int) or not 0 <= plen <= len(data) or not isinstance(pspec, dict):
        raise FormatError(f"sparse array: bad positions length {plen!r}")
    pdata = data[:plen]
    if pspec.get("enc") == "bitmask":
        mask = unpack_bits(pdata, 1, n).view(np.bool_)
        if int(np.count_nonzero(mask)) != nnz:
            raise FormatError(
                f"sparse array: bitmask has {int(np.count_nonzero(mask))} ones, expected {nnz}"
            )
    elif pspec.get("enc") == "rowcol":
        mask = decode_rowcol(pspec, pdata, n, nnz, _decode_symbols_u8)
    elif pspec.get("enc") == "groups":
        mask = decode_groups(pspec, pdata, n, nnz, _decode_symbols_u8)
    elif pspec.get("enc") == "gaps":
        bits, count = pspec.get("bits"), pspec.get("count")
        if not isinstance(bits, int) or not 1 <= bits <= 8:
            raise FormatError(f"gap positions: bad bits {bits!r}")
        if (
            not isinstance(count, int)
            or not 0 <= count <= n
            or not isinstance(pspec.get("coder"), dict)
        ):
            raise FormatError(f"gap positions: bad count {count!r} for {n} elements")
        entries, offset = _decode_symbols_u8(pspec["coder"], pdata, count)
        if count == 0 and nnz == 0:  # an all-zero array: no mask to build
            decode_array(spec.get("values"), data[plen:], dtype, 0)
            return np.zeros(n, dtype)
        mask = _gap_mask(entries, offset, bits, n, nnz)
        del entries
    else:
        raise FormatError(f"sparse array: unknown positions encoding {pspec.get('enc')!r}")
    vals = decode_array(spec.get("values"), data[plen:], dtype, nnz)
    out = np.zeros(n, dtype)
    out[mask] = vals
    return out


_GAP_CHUNK = 1 << 16


def _gap_mask(entries: np.ndarray, offset: int, bits: int, size: int, nnz: int) -> np.ndarray:
    """:func:`decode_gaps` as a bool mask, in chunks (no int64 array of every entry)."""
    m, count, carry = (1 << bits) - 1, 0, 0
    mask = np.zeros(size, np.bool_)
    last_real = True
    for i in range(0, entries.size, _GAP_CHUNK):
        e = entries[i : i + _GAP_CHUNK].astype(np.int64) + offset
        if e.min() < 0 or e.max() > m:
            raise FormatError(f"gap stream: entries outside 0..{m}")
        real = e < m
        ends = carry + np.cumsum(e + real)
        pos = ends[real] - 1
        if pos.size and pos[-1] >= size:
            raise FormatError(f"gap stream: a position past {size} elements")
        mask[pos] = True
        count += pos.size
        carry, last_real = int(ends[-1]), bool(real[-1])
    if count != nnz or not last_real:
        raise FormatError(f"gap stream: expected {nnz} positions below {size}, got {count}")
    return mask


def log2_binomial(n: int, k: int) -> float:
    """``log2(C(n, k))``, the bits needed to name which ``k`` of ``n`` positions are set.

    Example:
      >>> log2_binomial(4, 2) == math.log2(6)
      True
    """
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
