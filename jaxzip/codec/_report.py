"""Size report: each leaf's bytes beside its empirical entropy bound."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxzip._types import PyTree
from jaxzip.codec._container import encode, leaf_sizes
from jaxzip.codec._entropy import entropy_bits, symbol_counts
from jaxzip.codec._streams import log2_binomial, nonzero_positions


@dataclasses.dataclass(frozen=True)
class LeafSize:
    """One leaf's storage: bytes, bits per nonzero, and the entropy bound (bits)."""

    path: str
    kind: str
    size: int
    nnz: int
    bytes: int
    position_bytes: int
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


def _bound(arr: np.ndarray) -> float:
    flat = arr.reshape(-1)
    pos = nonzero_positions(flat)
    n, k = flat.size, pos.size
    if flat.dtype.kind in "biu" and n and int(flat.max()) - int(flat.min()) <= 255:
        s = flat.astype(np.int64) - int(flat.min())
        dense = entropy_bits(symbol_counts(s)[1])
        nz = s[pos]
        sparse = log2_binomial(n, k) + entropy_bits(symbol_counts(nz - (nz.min() if k else 0))[1])
        return min(dense, sparse)
    return log2_binomial(n, k) + 8 * flat.dtype.itemsize * k


def size_report(tree_or_bytes: PyTree | bytes) -> SizeReport:
    """Bytes per leaf of the compressed file beside the empirical entropy bound.

    The bound of an integer stream is ``min(H(all) * n, log2 C(n, k) + H(nonzeros) * k)``;
    of a float stream ``log2 C(n, k)`` plus the raw bits of its nonzeros. Header
    bytes are counted in the file total only. ``overhead = bytes * 8 / bound - 1``.

    Args:
      tree_or_bytes: a tree (encoded with the automatic choice) or a file's bytes.

    Returns:
      A :class:`SizeReport`.

    Example:
      >>> import numpy as np
      >>> r = size_report({"w": np.array([0, 0, 0, 1], np.int8)})
      >>> r.leaves[0].nnz, r.dense_f32_bytes
      (1, 16)
    """
    data = tree_or_bytes if isinstance(tree_or_bytes, (bytes, bytearray)) else encode(tree_or_bytes)
    header, leaves = leaf_sizes(bytes(data))
    rows, dense = [], 0
    for entry, (path, leaf) in zip(header["leaves"], leaves, strict=True):
        comps = {c["name"]: c for c in entry["components"]}
        nbytes = sum(c["length"] for c in entry["components"])
        if entry["kind"] == "kmeans":
            mask = np.asarray(leaf.mask)
            n, k = mask.size, int(mask.sum())
            arrays = [np.asarray(leaf.indices)[mask], np.asarray(leaf.centroids)]
            bound = log2_binomial(n, k) + sum(_bound(a) for a in arrays)
            enc = comps["mask"]["enc"]
        else:
            main = np.asarray(leaf.values if entry["kind"] == "qarray" else leaf)
            n, k = main.size, int(nonzero_positions(main.reshape(-1)).size)
            extra = (
                [np.asarray(leaf.scale), np.asarray(leaf.zero_point)]
                if entry["kind"] == "qarray"
                else []
            )
            bound = _bound(main) + sum(_bound(a) for a in extra)
            enc = comps["values" if entry["kind"] == "qarray" else "value"]["enc"]
        pos_bytes = enc.get("pos_len", 0) if enc.get("enc") == "sparse" else 0
        dense += 4 * n
        rows.append(LeafSize(
            path=path, kind=entry["kind"], size=n, nnz=k, bytes=nbytes, position_bytes=pos_bytes,
            bits_per_nonzero=8 * nbytes / k if k else 0.0,
            bits_per_position=8 * pos_bytes / k if k else 0.0,
            bound_bits=bound, overhead=8 * nbytes / bound - 1 if bound else 0.0,
        ))  # fmt: skip
    return SizeReport(tuple(rows), len(data), dense, dense / len(data))


def format_size_report(report: SizeReport) -> str:
    """A plain-text table of a :class:`SizeReport`.

    Example:
      >>> import numpy as np
      >>> print(format_size_report(size_report({"w": np.zeros(8, np.float32)})).splitlines()[0])
      path                  kind       size      nnz    bytes  bits/nz  bits/pos  bound(B)  overhead
    """
    lines = [f"{'path':<20}  {'kind':<6} {'size':>8} {'nnz':>8} {'bytes':>8} {'bits/nz':>8} "
             f"{'bits/pos':>9} {'bound(B)':>9} {'overhead':>9}"]  # fmt: skip
    for r in report.leaves:
        lines.append(
            f"{r.path or '<root>':<20}  {r.kind:<6} {r.size:>8} {r.nnz:>8} {r.bytes:>8} "
            f"{r.bits_per_nonzero:>8.2f} {r.bits_per_position:>9.2f} {r.bound_bits / 8:>9.1f} "
            f"{r.overhead:>9.1%}"
        )
    lines.append(f"total {report.file_bytes} bytes (dense float32 {report.dense_f32_bytes}), "
                 f"ratio {report.ratio:.1f}x")  # fmt: skip
    return "\n".join(lines)
