"""The compressed file's leaves: the tree and its arrays into a payload and a header, and back
(the frame around them is :mod:`jaxzip.codec._frame`'s)."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxzip._finite import check_finite_items
from jaxzip._io import atomic_write_bytes
from jaxzip._types import PyTree
from jaxzip.codec._errors import FormatError
from jaxzip.codec._frame import MAX_FILE_BYTES, VERSION, frame_file, read_file, read_header
from jaxzip.codec._streams import Encoding, decode_array, encode_array
from jaxzip.codec._tree import (
    COMPONENTS,
    DTYPES,
    build_leaf,
    check_leaf,
    check_shape,
    split_leaf,
)
from jaxzip.paths import keystr

MAX_DEPTH = 64
# Decoding may produce at most max(MIN_DECODED_BYTES, MAX_EXPANSION * file size) bytes of
# arrays: generous for real models (Deep Compression reaches ~50x, 99%-sparse codebooks a few
# hundred), while a tiny file cannot make the decoder allocate gigabytes.
MAX_EXPANSION = 1024
MIN_DECODED_BYTES = 1 << 20


def _flatten(tree: Any, kp: tuple, leaves: list, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise TypeError(f"{keystr(kp)}: tree nested deeper than {MAX_DEPTH}")
    if tree is None:
        return {"t": "none"}
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str):
                raise TypeError(f"{keystr(kp) or '<root>'}: dict key {k!r} is not a str")
        kids = [
            _flatten(v, (*kp, jax.tree_util.DictKey(k)), leaves, depth + 1) for k, v in tree.items()
        ]
        return {"t": "dict", "k": list(tree), "c": kids}
    if type(tree) in (list, tuple):
        kids = [
            _flatten(v, (*kp, jax.tree_util.SequenceKey(i)), leaves, depth + 1)
            for i, v in enumerate(tree)
        ]
        return {"t": type(tree).__name__, "c": kids}
    leaves.append((keystr(kp), tree))
    return {"t": "leaf", "i": len(leaves) - 1}


def _unflatten(node: Any, leaves: list, paths: list[str]) -> Any:
    """Rebuilds the tree; each leaf used once, in order, at the path its entry names."""
    used = [0]

    def build(node: Any, kp: tuple, depth: int) -> Any:
        if depth > MAX_DEPTH or not isinstance(node, dict):
            raise FormatError("header: malformed tree")
        t, kids = node.get("t"), node.get("c", [])
        if t == "leaf":
            i = node.get("i")
            if i != used[0] or isinstance(i, bool) or i >= len(leaves):
                raise FormatError(
                    f"header: leaf index {i!r} where {used[0]} is next (of {len(leaves)}); "
                    "each leaf must appear once, in order"
                )
            used[0] += 1
            if paths[i] != keystr(kp):
                raise FormatError(
                    f"header: leaf {i} has path {paths[i]!r} but sits at {keystr(kp)!r} in the tree"
                )
            return leaves[i]
        if t == "none":
            return None
        if not isinstance(kids, list):
            raise FormatError("header: malformed tree")
        if t == "dict":
            keys = node.get("k")
            if (
                not isinstance(keys, list)
                or len(keys) != len(kids)
                or not all(isinstance(k, str) for k in keys)
            ):
                raise FormatError("header: malformed dict node")
            if len(set(keys)) != len(keys):
                dup = next(k for k in keys if keys.count(k) > 1)
                where = keystr(kp) or "<root>"
                raise FormatError(f"header: dict at {where} has the duplicate key {dup!r}")
            vals = [
                build(c, (*kp, jax.tree_util.DictKey(k)), depth + 1)
                for k, c in zip(keys, kids, strict=True)
            ]
            return dict(zip(keys, vals, strict=True))
        if t in ("list", "tuple"):
            vals = [
                build(c, (*kp, jax.tree_util.SequenceKey(i)), depth + 1) for i, c in enumerate(kids)
            ]
            return vals if t == "list" else tuple(vals)
        raise FormatError(f"header: unknown tree node {t!r}")

    tree = build(node, (), 0)
    if used[0] != len(leaves):
        raise FormatError(f"header: the tree places {used[0]} of {len(leaves)} leaves")
    return tree


def encode(
    tree: PyTree, *, encoding: Encoding | None = None, allow_nonfinite: bool = False
) -> bytes:
    """Encodes a tree of arrays, QArrays and KMeansArrays into one self-describing file.

    Args:
      tree: nested dicts (str keys), lists and tuples of arrays (numpy or JAX),
        Python or numpy scalars, ``None``, :class:`~jaxzip.quant.QArray` and
        :class:`~jaxzip.quant.KMeansArray` leaves.
      encoding: an :class:`Encoding` pinned for every array, or None to pick the
        smallest encoding per array.
      allow_nonfinite: store NaN and Inf as they are (bit for bit) instead of
        raising; for trees that are not model weights.

    Returns:
      The file's bytes; :func:`decode` gives back ``tree`` bit for bit.

    Raises:
      TypeError: an unsupported leaf, dtype or dict key (named by path), or a bad ``encoding``.
      jaxzip._errors.NonFiniteError: a float leaf (or a QArray's scale, a
        KMeansArray's centroids) holds NaN or Inf, named by path with its counts
        (a ``ValueError``); pass ``allow_nonfinite=True`` to store them.

    Example:
      >>> import numpy as np
      >>> data = encode({"w": np.array([0, 0, 3, 0], np.int8)})
      >>> decode(data)["w"]
      array([0, 0, 3, 0], dtype=int8)
    """
    if encoding is not None and not isinstance(encoding, Encoding):
        raise TypeError(f"encoding: expected an Encoding or None, got {type(encoding).__name__}")
    leaves: list = []
    structure = _flatten(tree, (), leaves)
    if not allow_nonfinite:
        check_finite_items(leaves, where="codec.encode")
    entries, chunks, offset = [], [], 0
    for path, leaf in leaves:
        kind, meta, comps = split_leaf(leaf, path)
        items = []
        for name, arr in comps.items():
            spec, data = encode_array(arr, encoding)
            items.append(
                {
                    "name": name,
                    "dtype": arr.dtype.name,
                    "shape": list(arr.shape),
                    "enc": spec,
                    "offset": offset,
                    "length": len(data),
                    "crc32": zlib.crc32(data),
                }
            )
            chunks.append(data)
            offset += len(data)
        entries.append({"path": path, "kind": kind, "meta": meta, "components": items})
    header = {
        "format": "jaxzip.codec",
        "version": VERSION,
        "tree": structure,
        "leaves": entries,
        "payload_length": offset,
    }
    return frame_file(header, b"".join(chunks))


def _checked(where: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Calls a decoder; a malformed value in its (checksummed) description is a FormatError.

    The header is JSON, so a field can hold ``true``, a float or a huge int where
    an int is meant; the stream decoders check the sizes that matter for memory
    and bounds, and any other error they hit on such a value is reported as the
    file's fault, naming where, rather than leaking as a TypeError.
    """
    try:
        return fn(*args)
    except FormatError:
        raise
    except (TypeError, ValueError, OverflowError, IndexError, KeyError) as e:
        raise FormatError(f"{where}: malformed description ({type(e).__name__}: {e})") from e


def _int_in(v: Any, lo: int, hi: int, default: int) -> int:
    ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    return v if ok else default


def decode_charge(enc: Any, dtype: np.dtype, n: int, length: Any, kind: Any) -> int:
    """The bytes decoding one component may hold at once: an upper bound, from its description.

    The array itself (twice for leaves that become JAX arrays: the decoded buffer
    and the device copy), the one-byte symbols of a wider integer stream, a sparse
    array's position mask, gap entries and nonzero values, and Huffman's per-bit
    tables (48 bytes per bit of its section). Chunked steps (ANS, unpacking, the
    size report's counts) add at most a few MiB beyond this.
    """
    isz = dtype.itemsize
    out = n * isz * (2 if kind in ("jax", "qarray", "kmeans") else 1)
    size = _int_in(length, 0, MAX_FILE_BYTES, 0)
    if "huffman" in json.dumps(enc, default=str)[:4096]:
        out += 48 * 8 * size  # measured: 32 bytes per bit of a Huffman body
    if not isinstance(enc, dict):
        return out
    if enc.get("enc") in ("pack", "ans", "huffman"):
        return out + (n if isz > 1 else 0)
    if enc.get("enc") == "sparse":
        nnz = _int_in(enc.get("nnz"), 0, n, n)
        pos = enc.get("pos") if isinstance(enc.get("pos"), dict) else {}
        count = _int_in(pos.get("count"), 0, n, n) if pos.get("enc") == "gaps" else 0
        if pos.get("enc") == "rowcol":  # each row's and column's group, one byte each
            cols = _int_in(pos.get("cols"), 1, max(n, 1), 1)
            count = (n // cols if n % cols == 0 else n) + cols
        if pos.get("enc") == "groups":  # a byte per group of m >= 4, and one bit plane as big
            count = n // 2
        mask = n if nnz or pos.get("enc") != "gaps" else 0  # all-zero: no mask is built
        return out + mask + count + nnz * isz + (nnz if isz > 1 else 0)
    return out


def _plan(header: dict[str, Any], data: bytes, start: int) -> list[tuple[str, str, list, int]]:
    """Checks every leaf entry's sizes, sections and the expansion cap before decoding any.

    Returns ``[(path, kind, [(name, component, dtype, n, chunk)], charged bytes)]``.
    """
    entries, plan, pos, total = header.get("leaves"), [], 0, 0
    budget = max(MIN_DECODED_BYTES, MAX_EXPANSION * len(data))
    if not isinstance(entries, list):
        raise FormatError("header: 'leaves' must be a list")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("path"), str):
            raise FormatError(f"header: leaf {i} is malformed")
        path, kind, items = e["path"], e.get("kind"), e.get("components")
        names = COMPONENTS.get(kind) if isinstance(kind, str) else None
        if names is None or not isinstance(items, list) or len(items) != len(names):
            raise FormatError(f"{path}: unknown kind {kind!r} or wrong components")
        comps, before = [], total
        for name, c in zip(names, items, strict=True):
            where = f"{path}/{name}"
            if (
                not isinstance(c, dict)
                or c.get("name") != name
                or not isinstance(c.get("dtype"), str)
                or c["dtype"] not in DTYPES
            ):
                raise FormatError(f"{where}: malformed component")
            dtype = DTYPES[c["dtype"]]
            n = check_shape(c.get("shape"), dtype, where)
            total += decode_charge(c.get("enc"), dtype, n, c.get("length"), kind)
            if name == "mask" and kind == "kmeans":
                total += 2 * n  # the indices scattered to the mask's shape (uint8), twice
            if total > budget:
                raise FormatError(
                    f"{where}: the arrays declare {total} bytes so far, over the {budget}-byte "
                    f"cap for a {len(data)}-byte file ({MAX_EXPANSION}x, at least {MIN_DECODED_BYTES})"
                )
            off, length = c.get("offset"), c.get("length")
            if (
                off != pos
                or not isinstance(length, int)
                or length < 0
                or start + pos + length > len(data) - 4
            ):
                raise FormatError(
                    f"{where}: section offset {off!r}/length {length!r} out of bounds"
                )
            chunk = data[start + pos : start + pos + length]
            pos += length
            if zlib.crc32(chunk) != c.get("crc32"):
                raise FormatError(f"{where}: section checksum mismatch")
            comps.append((name, c, dtype, n, chunk))
        plan.append((path, kind, comps, total - before))
    if pos != header["payload_length"]:
        raise FormatError("header: sections do not cover the payload")
    return plan


def memory_bound(data: bytes) -> int:
    """The most bytes decoding ``data`` may hold, from its header alone (nothing is decoded).

    Checks the framing, checksums, every declared shape and section, and the
    cap: decoding may hold at most ``max(MIN_DECODED_BYTES, MAX_EXPANSION * len(data))``
    bytes, counting each array, its device copy where it becomes a JAX array, and
    the transient buffers of its encoding (see :func:`decode_charge`).

    Args:
      data: a compressed file's bytes.

    Returns:
      The bound in bytes (at most the cap).

    Raises:
      FormatError: the framing is malformed or the arrays declare more than the cap.

    Example:
      >>> import numpy as np
      >>> memory_bound(encode({"w": np.zeros(1000, np.int8)}))  # 1000 bytes + no transients
      1000
    """
    header, start = read_header(data)
    return sum(size for _, _, _, size in _plan(header, bytes(data), start))


def iter_leaves(
    header: dict[str, Any], data: bytes, start: int, *, build: bool = True
) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """Decodes and checks the leaves one at a time: ``(path, kind, components, leaf)``.

    Every size, section and checksum is checked (and the expansion cap applied to
    the declared shapes) before the first array is built. ``components`` are the
    checked numpy arrays (:func:`check_leaf`); ``leaf`` is the tree's leaf, or
    None when ``build`` is False (for a report that must not hold every leaf).
    """
    entries = header["leaves"] if isinstance(header.get("leaves"), list) else None
    for (path, kind, items, _), e in zip(_plan(header, data, start), entries or [], strict=True):
        comps = {}
        for name, c, dtype, n, chunk in items:
            where = f"{path}/{name}"
            comps[name] = _checked(where, decode_array, c.get("enc"), chunk, dtype, n)
            comps[name] = comps[name].reshape(c["shape"])
        meta = e.get("meta")
        comps = _checked(path, check_leaf, kind, meta, comps, path)
        leaf = build_leaf(kind, meta, comps) if build else None
        yield path, kind, comps, leaf
        del comps, leaf


def decode_components(header: dict[str, Any], data: bytes, start: int) -> list[tuple[str, Any]]:
    """Decodes every leaf described by ``header``: ``[(path, leaf)]`` in header order."""
    return [(path, leaf) for path, _, _, leaf in iter_leaves(header, data, start)]


def check_tree(header: dict[str, Any], paths: list[str]) -> None:
    """Checks the header's tree against the leaves' paths (as :func:`decode` does)."""
    _unflatten(header.get("tree"), list(range(len(paths))), paths)


def decode(data: bytes) -> PyTree:
    """Decodes a file written by :func:`encode`, checking every size and checksum first.

    Raises:
      FormatError: the data is truncated, corrupt, too new or declares impossible sizes.
      TypeError: ``data`` is not bytes.

    Example:
      >>> decode(encode({"a": [1.5, (2, None)]}))
      {'a': [1.5, (2, None)]}
    """
    header, start = read_header(data)
    decoded = decode_components(header, bytes(data), start)
    return _unflatten(header.get("tree"), [leaf for _, leaf in decoded], [p for p, _ in decoded])


def save(path: str | os.PathLike[str], tree: PyTree, *, encoding: Encoding | None = None) -> None:
    """Encodes ``tree`` (see :func:`encode`) and writes it to ``path`` atomically.

    Example:
      >>> import tempfile, pathlib, numpy as np
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jz"
      >>> save(p, {"w": np.arange(3, dtype=np.float32)})
      >>> load(p)["w"]
      array([0., 1., 2.], dtype=float32)
    """
    atomic_write_bytes(path, encode(tree, encoding=encoding))


def load(path: str | os.PathLike[str]) -> PyTree:
    """Reads and decodes a file written by :func:`save`.

    Raises:
      FormatError: the file is malformed, too large, or ``path`` is a directory.
      FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path)
    try:
        return decode(read_file(p))
    except FormatError as e:
        raise FormatError(f"{p}: {e}") from None
