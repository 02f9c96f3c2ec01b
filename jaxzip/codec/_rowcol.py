"""Position coding by row and column density: a sparse mask's bits, ANS-coded in context.

Magnitude pruning leaves masks whose density varies by row and column (an MNIST
border pixel feeds no unit, a unit that lost most inputs keeps few), so a
single probability for every bit (the ``bitmask`` and ``gaps`` coders) pays for
structure it does not see. Here the mask, viewed as ``(rows, cols)`` with
``cols`` its last axis, has each row and each column put in one of ``g`` groups
by how many ones it holds; a bit's probability is the density of its
(row group, column group) cell, which the file stores as a count of ones. Cells
that are all zeros or all ones cost no bits. What is stored:

* ``row_groups`` / ``col_groups``: each row's and column's group, as symbol streams;
* ``ones``: the ``g * g`` cells' counts of ones (in the spec);
* the bits of the other cells, in row-major order, coded by a constriction
  ``stack.AnsCoder`` with a ``Bernoulli(perfect=False)`` model of probability
  ``ones / size`` of the bit's cell, in chunks of whole rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
from constriction import stream as _stream

from jaxzip.codec._errors import FormatError

GROUPS = (2, 4, 8)
"""The group counts :func:`encode_rowcol`'s caller tries (the smallest file is kept)."""
MAX_GROUPS = 16
_CHUNK = 1 << 16
_BERNOULLI = _stream.model.Bernoulli(perfect=False)

SymbolEncoder = Callable[[np.ndarray], tuple[dict[str, Any], bytes]]
SymbolDecoder = Callable[[dict[str, Any], bytes, int], tuple[np.ndarray, int]]
"""``(spec, data, n) -> (uint8 symbols, offset)``: ``_streams._decode_symbols_u8``."""


def _groups(counts: np.ndarray, g: int) -> np.ndarray:
    """Each line's group: how many of the ``k/g`` quantiles of ``counts`` lie below its count."""
    cuts = np.unique(np.quantile(counts, np.arange(1, g) / g, method="lower"))
    return np.searchsorted(cuts, counts, side="left").astype(np.int64)


def _sizes(groups: np.ndarray, g: int) -> np.ndarray:
    """How many lines each group holds (in chunks: no index array as wide as the lines)."""
    out = np.zeros(g, np.int64)
    for i in range(0, groups.size, _CHUNK):
        out += np.bincount(groups[i : i + _CHUNK], minlength=g)
    return out


def _cells(rg: np.ndarray, cg: np.ndarray, g: int) -> np.ndarray:
    """Each cell's number of elements: rows in its row group times columns in its column group."""
    return np.outer(_sizes(rg, g), _sizes(cg, g)).reshape(-1)


def _row_chunks(rows: int, cols: int) -> Iterator[tuple[int, int]]:
    step = max(1, _CHUNK // max(cols, 1))
    for lo in range(0, rows, step):
        yield lo, min(rows, lo + step)


def _coded(ctx: np.ndarray, ones: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which bits of a chunk are coded (their cell is neither empty nor full), and their p."""
    live = (ones[ctx] > 0) & (ones[ctx] < size[ctx])
    c = ctx[live]
    return live, ones[c] / size[c]


def _entropy(ones: np.ndarray, size: np.ndarray) -> float:
    k, n = ones[size > 0].astype(np.float64), size[size > 0].astype(np.float64)
    p = np.clip(k / n, 1e-300, 1.0)
    q = np.clip(1.0 - k / n, 1e-300, 1.0)
    return float(-(k * np.log2(p) + (n - k) * np.log2(q)).sum())


class Plan(NamedTuple):
    """How :func:`encode_rowcol` groups a mask: from :func:`plan_rowcol`."""

    g: int
    row_groups: np.ndarray
    col_groups: np.ndarray
    ones: np.ndarray  # each cell's count of ones, row group major
    size: np.ndarray  # each cell's number of elements
    bytes: float  # estimate: the coded cells' entropy, the group streams, the counts


def plan_rowcol(m: np.ndarray, groups: tuple[int, ...] = GROUPS) -> Plan:
    """The grouping of the ``(rows, cols)`` bool mask ``m`` with the smallest estimate.

    Each ``g`` in ``groups`` is estimated (the coded cells' entropy, the group
    streams at ``log2 g`` bits per line, 4 bytes per cell count); the lines'
    counts of ones are computed once.
    """
    row_counts, col_counts = m.sum(1), m.sum(0)
    plans = []
    for g in groups:
        rg, cg = _groups(row_counts, g), _groups(col_counts, g)
        ones = np.zeros(g * g, np.int64)
        for i in range(g):  # each row group's column sums, added up by column group
            colsum = m[rg == i].sum(0)
            ones[i * g : (i + 1) * g] = np.bincount(cg, weights=colsum, minlength=g)
        size = _cells(rg, cg, g)
        est = _entropy(ones, size) / 8 + (rg.size + cg.size) * math.log2(g) / 8 + 4 * g * g
        plans.append(Plan(g, rg, cg, ones, size, est))
    return min(plans, key=lambda p: p.bytes)


def encode_rowcol(
    mask: np.ndarray, cols: int, g: int, symbols: SymbolEncoder, *, plan: Plan | None = None
) -> tuple[dict[str, Any], bytes]:
    """Codes a flat bool ``mask`` of ``rows * cols`` elements with ``g`` groups per axis.

    Args:
      mask: the flat keep-mask (its ones are the stored positions).
      cols: the length of the last axis (the mask is viewed as ``(-1, cols)``).
      g: groups per axis, 2 to :data:`MAX_GROUPS`.
      symbols: codes an integer array as a symbol stream (``_streams``' coder).
      plan: ``plan_rowcol(mask.reshape(-1, cols), (g,))`` when the caller has it.

    Returns:
      ``(spec, payload)``: payload = row groups, column groups, then the ANS words.

    Example:
      >>> import numpy as np
      >>> from jaxzip.codec._streams import _encode_symbols, _decode_symbols_u8
      >>> m = np.zeros((6, 4), bool); m[:3, :2] = True
      >>> spec, data = encode_rowcol(m.reshape(-1), 4, 2, lambda v: _encode_symbols(v, "pack"))
      >>> spec["ones"], len(data)  # one full cell, three empty ones: no bits coded
      ([0, 0, 0, 6], 2)
      >>> (decode_rowcol(spec, data, 24, 6, _decode_symbols_u8) == m.reshape(-1)).all()
      np.True_
    """
    m = np.asarray(mask, np.bool_).reshape(-1, cols)
    rows = m.shape[0]
    if plan is None or plan.g != g:
        plan = plan_rowcol(m, (g,))
    rg, cg, ones, size = plan.row_groups, plan.col_groups, plan.ones, plan.size
    rspec, rdata = symbols(rg)
    cspec, cdata = symbols(cg)
    coder = _stream.stack.AnsCoder()
    for lo, hi in reversed(list(_row_chunks(rows, cols))):  # a stack: last chunk first
        ctx = (rg[lo:hi, None] * g + cg[None, :]).reshape(-1)
        live, p = _coded(ctx, ones, size)
        if p.size:
            coder.encode_reverse(m[lo:hi].reshape(-1)[live].astype(np.int32), _BERNOULLI, p)
    words = coder.get_compressed().astype("<u4").tobytes()
    spec = {
        "enc": "rowcol",
        "cols": int(cols),
        "groups": int(g),
        "ones": ones.tolist(),
        "row_groups": rspec,
        "row_len": len(rdata),
        "col_groups": cspec,
        "col_len": len(cdata),
    }
    return spec, rdata + cdata + words


def _int(spec: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = spec.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise FormatError(f"rowcol positions: bad {key} {v!r} (expected {lo}..{hi})")
    return v


def _group_stream(
    spec: dict[str, Any], key: str, data: bytes, n: int, g: int, symbols: SymbolDecoder
) -> np.ndarray:
    sub = spec.get(key)
    if not isinstance(sub, dict):
        raise FormatError(f"rowcol positions: bad {key} {sub!r}")
    v, offset = symbols(sub, data, n)
    if v.size and (int(v.min()) + offset < 0 or int(v.max()) + offset >= g):
        raise FormatError(f"rowcol positions: {key} outside 0..{g - 1}")
    v += np.uint8(offset % 256)  # in place: the true values fit in 0..g-1
    return v


def decode_rowcol(
    spec: dict[str, Any], data: bytes, n: int, nnz: int, symbols: SymbolDecoder
) -> np.ndarray:
    """Inverse of :func:`encode_rowcol`: the flat bool mask of ``n`` elements with ``nnz`` ones.

    Raises:
      FormatError: a bad spec, groups out of range, cell counts that do not fit
        their cells or do not sum to ``nnz``, or ANS words that do not decode to
        them (checked per cell).
    """
    cols = _int(spec, "cols", 1, max(n, 1))
    if n % cols:
        raise FormatError(f"rowcol positions: cols {cols} does not divide {n} elements")
    rows = n // cols
    g = _int(spec, "groups", 2, MAX_GROUPS)
    rlen = _int(spec, "row_len", 0, len(data))
    clen = _int(spec, "col_len", 0, len(data) - rlen)
    rg = _group_stream(spec, "row_groups", data[:rlen], rows, g, symbols)
    cg = _group_stream(spec, "col_groups", data[rlen : rlen + clen], cols, g, symbols)
    ones = spec.get("ones")
    if (
        not isinstance(ones, list)
        or len(ones) != g * g
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in ones)
    ):
        raise FormatError(f"rowcol positions: ones must be {g * g} ints")
    ones_a, size = np.asarray(ones, np.int64), _cells(rg, cg, g)
    if np.any(ones_a < 0) or np.any(ones_a > size) or int(ones_a.sum()) != nnz:
        raise FormatError(f"rowcol positions: cell counts do not fit their cells or sum to {nnz}")
    body = data[rlen + clen :]
    if len(body) % 4:
        raise FormatError(f"rowcol positions: ANS length {len(body)} is not a multiple of 4")
    mask, got = np.zeros((rows, cols), np.bool_), np.zeros(g * g, np.int64)
    try:
        coder = _stream.stack.AnsCoder(np.frombuffer(body, "<u4").astype(np.uint32))
        for lo, hi in _row_chunks(rows, cols):
            ctx = (rg[lo:hi, None].astype(np.intp) * g + cg[None, :]).reshape(-1)
            live, p = _coded(ctx, ones_a, size)
            chunk = ones_a[ctx] == size[ctx]  # full cells: all ones
            if p.size:
                chunk[live] = np.asarray(coder.decode(_BERNOULLI, p)) != 0
            mask[lo:hi] = chunk.reshape(hi - lo, cols)
            got += np.bincount(ctx[chunk], minlength=g * g)
        trailing = not coder.is_empty()
    except FormatError:
        raise
    except Exception as e:  # constriction reports corrupt data with various types
        raise FormatError(f"rowcol positions: cannot decode ({e})") from None
    if trailing:
        raise FormatError("rowcol positions: ANS words left over after the last bit")
    if not np.array_equal(got, ones_a):
        raise FormatError("rowcol positions: the decoded bits do not match the cell counts")
    return mask.reshape(-1)
