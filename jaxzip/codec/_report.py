"""Size report: each leaf's bytes beside its empirical entropy bound."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxzip._types import PyTree
from jaxzip.codec._container import check_tree, encode, iter_leaves
from jaxzip.codec._entropy import entropy_bits
from jaxzip.codec._frame import read_header
from jaxzip.codec._streams import log2_binomial


@dataclasses.dataclass(frozen=True)
class LeafSize:
    """One leaf's storage: bytes, bits per weight and per nonzero, and the entropy bound (bits).

    ``bits_per_weight`` is ``8 * bytes / size``: every stored byte of the leaf (for
    a QArray its packed values with their scales and zero points; for a
    KMeansArray its mask, codebook and indices) per element of the decoded array.
    """

    path: str
    kind: str
    size: int
    nnz: int
    bytes: int
    position_bytes: int
    bits_per_weight: float
    bits_per_nonzero: float
    bits_per_position: float
    bound_bits: float
    overhead: float


@dataclasses.dataclass(frozen=True)
class SizeReport:
    """Per-leaf sizes and totals; ``ratio`` is dense float32 bytes over file bytes."""

    leaves: tuple[LeafSize, ...]
    file_bytes: int
    dense_f32_bytes: int
    ratio: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the report."""
        return dataclasses.asdict(self) | {"leaves": [dataclasses.asdict(x) for x in self.leaves]}


_CHUNK = 1 << 15  # elements per step of the streamed counts (256 KiB of int64 at most)


def _chunks(flat: np.ndarray, mask: np.ndarray | None) -> Iterator[np.ndarray]:
    for i in range(0, flat.size, _CHUNK):
        part = flat[i : i + _CHUNK]
        yield part if mask is None else part[mask[i : i + _CHUNK]]


def _count_nonzero(flat: np.ndarray, mask: np.ndarray | None = None) -> int:
    """Elements whose bits are not all zero (``-0.0`` counts), in bounded memory."""
    if flat.dtype.itemsize == 0:
        return 0
    view = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    return sum(int(np.count_nonzero(c)) for c in _chunks(view, mask))


def _bound(arr: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, int, int]:
    """``(bound bits, n, nonzeros)`` of ``arr`` (or of its elements under ``mask``).

    Counted in chunks of at most ``_CHUNK`` elements, so the extra memory is
    bounded whatever the array's size (the counts of a symbol stream come from
    ``bincount`` on each chunk, never from a widened copy of the whole array).
    """
    flat = arr.reshape(-1)
    m = None if mask is None else mask.reshape(-1)
    n = flat.size if m is None else int(np.count_nonzero(m))
    k = _count_nonzero(flat, m)
    if flat.dtype.kind in "biu" and n:
        lo = min(int(c.min()) for c in _chunks(flat, m) if c.size)
        hi = max(int(c.max()) for c in _chunks(flat, m) if c.size)
        if hi - lo <= 255:
            counts = np.zeros(256, np.int64)
            for c in _chunks(flat, m):
                counts += np.bincount((c.astype(np.int64) - lo), minlength=256)
            dense = entropy_bits(counts)
            if lo <= 0 <= hi:
                counts[-lo] = 0  # the nonzeros' histogram: the zero symbol removed
            return min(dense, log2_binomial(n, k) + entropy_bits(counts)), n, k
    return log2_binomial(n, k) + 8 * flat.dtype.itemsize * k, n, k


def size_report(tree_or_bytes: PyTree | bytes) -> SizeReport:
    """Bytes per leaf of the compressed file beside the empirical entropy bound.

    The bound of an integer stream is ``min(H(all) * n, log2 C(n, k) + H(nonzeros) * k)``;
    of a float stream ``log2 C(n, k)`` plus the raw bits of its nonzeros. Header
    bytes are counted in the file total only. ``overhead = bytes * 8 / bound - 1``.
    It is the order-0 bound: every position equally likely to be kept. The
    ``rowcol`` position coding models rows and columns of different density, and
    ``groups`` the patterns of N:M sparsity, so a structured mask can be stored
    below it (a negative overhead).

    The file is checked exactly as :func:`~jaxzip.codec.decode` checks it, but
    decoded one leaf at a time and the bound counted in chunks, so the memory
    used is at most that of decoding the largest leaf (never more than
    :func:`~jaxzip.codec.load` needs).

    Args:
      tree_or_bytes: a tree (encoded with the automatic choice) or a file's bytes.

    Returns:
      A :class:`SizeReport`.

    Raises:
      FormatError: the bytes are not a valid file (as for :func:`~jaxzip.codec.decode`).

    Example:
      >>> import numpy as np
      >>> r = size_report({"w": np.array([0, 0, 0, 1], np.int8)})
      >>> r.leaves[0].nnz, r.dense_f32_bytes
      (1, 16)
    """
    data = tree_or_bytes if isinstance(tree_or_bytes, (bytes, bytearray)) else encode(tree_or_bytes)
    data = bytes(data)
    header, start = read_header(data)
    rows, paths, dense = [], [], 0
    for i, (path, kind, comps, _) in enumerate(iter_leaves(header, data, start, build=False)):
        entry = header["leaves"][i]
        named = {c["name"]: c for c in entry["components"]}
        nbytes = sum(c["length"] for c in entry["components"])
        if kind == "kmeans":
            mask = comps["mask"]
            n, k = mask.size, int(np.count_nonzero(mask))
            bound = log2_binomial(n, k) + _bound(comps["indices"], mask)[0]
            bound += _bound(comps["centroids"])[0]
            enc = named["mask"]["enc"]
        else:
            main = comps["values" if kind == "qarray" else "value"]
            bound, n, k = _bound(main)
            if kind == "qarray":
                bound += _bound(comps["scale"])[0] + _bound(comps["zero_point"])[0]
            enc = named["values" if kind == "qarray" else "value"]["enc"]
        del comps
        pos_bytes = enc.get("pos_len", 0) if enc.get("enc") == "sparse" else 0
        dense += 4 * n
        paths.append(path)
        rows.append(
            LeafSize(
                path=path,
                kind=kind,
                size=n,
                nnz=k,
                bytes=nbytes,
                position_bytes=pos_bytes,
                bits_per_weight=8 * nbytes / n if n else 0.0,
                bits_per_nonzero=8 * nbytes / k if k else 0.0,
                bits_per_position=8 * pos_bytes / k if k else 0.0,
                bound_bits=bound,
                overhead=8 * nbytes / bound - 1 if bound else 0.0,
            )
        )
    check_tree(header, paths)
    return SizeReport(tuple(rows), len(data), dense, dense / len(data))


def format_size_report(report: SizeReport) -> str:
    """A plain-text table of a :class:`SizeReport`; the path column is as wide as the longest path.

    Example:
      >>> import numpy as np
      >>> print(format_size_report(size_report({"w": np.zeros(8, np.float32)})).splitlines()[0])
      path                  kind       size      nnz    bytes  bits/w  bits/nz  bits/pos  bound(B)  overhead
    """
    w = max([20, *(len(r.path or "<root>") for r in report.leaves)])  # the longest path
    lines = [
        f"{'path':<{w}}  {'kind':<6} {'size':>8} {'nnz':>8} {'bytes':>8} {'bits/w':>7} {'bits/nz':>8} "
        f"{'bits/pos':>9} {'bound(B)':>9} {'overhead':>9}"
    ]
    for r in report.leaves:
        lines.append(
            f"{r.path or '<root>':<{w}}  {r.kind:<6} {r.size:>8} {r.nnz:>8} {r.bytes:>8} "
            f"{r.bits_per_weight:>7.2f} {r.bits_per_nonzero:>8.2f} {r.bits_per_position:>9.2f} {r.bound_bits / 8:>9.1f} "
            f"{r.overhead:>9.1%}"
        )
    lines.append(
        f"total {report.file_bytes} bytes (dense float32 {report.dense_f32_bytes}), "
        f"ratio {report.ratio:.1f}x"
    )
    return "\n".join(lines)
