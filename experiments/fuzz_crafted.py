"""Crafted malicious files for the fuzz campaign (issue 19), every checksum recomputed.

Classes (``CLASSES``), each case a file and what a correct loader must do with it:

* ``bomb``: declared-size bombs. Arrays whose sections are (nearly) empty but
  declare up to the loader's cap of decoded bytes (constant streams, a skewed ANS
  stream, constant gap positions, one full rowcol cell, constant group symbols, a
  masked k-means leaf, a QArray, 64 leaves),
  each built twice: just under the cap (a consistent file: it must load, within
  the memory bound) and just over it (refused before anything is built).
* ``kmeans`` / ``qarray``: leaves whose metadata disagree with their arrays
  (``masked`` flag, ``dtype``, ``bits`` vs the codebook, scale layout vs axes).
* ``tree``: duplicate dict keys, leaf indices reused or out of order, a leaf
  left out, a leaf path that differs from its place.
* ``nan``: NaN / Infinity in a ``.jz`` header or an exported model's info.
* ``hlo``: exported models whose StableHLO does not deserialize, uses a custom
  call outside the allow-list, takes other weights than the file holds,
  disagrees with its info, or was exported for another platform.

Each case is run through ``load`` (``codec.load`` / ``deploy.load_exported``)
and ``jaxzip inspect``; both must agree. Run as a script with ``--one MODE
FILE`` it loads one file in a fresh process and prints the outcome and the
process's peak RSS (used by ``fuzz_codec.py --crafted`` to measure memory).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import resource
import struct
import sys
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CODEC_MAGIC = b"\x89JZC\r\n\x1a\n"
CODEC_PREFIX = struct.Struct("<8sHHII")
CLASSES = ("bomb", "kmeans", "qarray", "tree", "nan", "hlo")
# docs/security.md: decoding holds at most the cap plus a few MiB of chunked working buffers
WORKING_BYTES = 4 << 20


@dataclasses.dataclass(frozen=True)
class Case:
    """One crafted file: its class, name, suffix (``.jz``/``.jzx``), bytes, and the verdict due.

    ``expect`` is ``"refuse"`` (the loaders must raise their FormatError) or
    ``"load"`` (a consistent file that must load within the memory bound).
    """

    cls: str
    name: str
    suffix: str
    data: bytes
    expect: str


# ---- framing ----------------------------------------------------------------------------


def frame_jz(header: dict[str, Any], payload: bytes) -> bytes:
    """A version-2 ``.jz`` file (deflated JSON header) around ``header`` and ``payload`` with
    every length and CRC recomputed."""
    header = {**header, "version": 2, "payload_length": len(payload)}
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    hb = packer.compress(json.dumps(header, separators=(",", ":")).encode()) + packer.flush()
    body = CODEC_PREFIX.pack(CODEC_MAGIC, 2, 0, len(hb), zlib.crc32(hb)) + hb + payload
    return body + struct.pack("<I", zlib.crc32(body))


def split_jz(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """``(header, sections in component order)`` of a valid ``.jz`` file (version 1 or 2)."""
    _, version, _, hlen, _ = CODEC_PREFIX.unpack_from(data)
    stored = data[CODEC_PREFIX.size : CODEC_PREFIX.size + hlen]
    header = json.loads(zlib.decompress(stored, -15) if version >= 2 else stored)
    payload = data[CODEC_PREFIX.size + hlen : -4]
    comps = [c for e in header["leaves"] for c in e["components"]]
    return header, [payload[c["offset"] : c["offset"] + c["length"]] for c in comps]


def build_jz(tree: Any, leaves: list[dict[str, Any]], sections: list[bytes]) -> bytes:
    """A ``.jz`` file from a tree, leaf entries and one section per component (offsets set here)."""
    comps = [c for e in leaves for c in e["components"]]
    assert len(comps) == len(sections)
    off = 0
    for c, sec in zip(comps, sections, strict=True):
        c.update(offset=off, length=len(sec), crc32=zlib.crc32(sec))
        off += len(sec)
    header = {"format": "jaxzip.codec", "version": 1, "tree": tree, "leaves": leaves}
    return frame_jz(header, b"".join(sections))


def edit_jz(data: bytes, fn: Callable[[dict[str, Any], list[bytes]], None]) -> bytes:
    """Applies ``fn(header, sections)`` (in place) and re-frames the file consistently."""
    header, sections = split_jz(data)
    fn(header, sections)
    return build_jz(header["tree"], header["leaves"], sections)


def comp(name: str, dtype: str, shape: list[int], enc: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape, "enc": enc}


def const(offset: int) -> dict[str, Any]:
    """A constant stream: 0 bits per element, every value ``offset``."""
    return {"enc": "pack", "bits": 0, "offset": offset}


# ---- bombs ------------------------------------------------------------------------------


def _skewed_ans(n: int) -> bytes:
    """An ANS section for ``n`` symbols, all 0 but the last (1): a few words for any ``n``."""
    from constriction import stream

    counts = np.array([n - 1, 1], np.float64)
    model = stream.model.Categorical(counts, perfect=False)
    coder, step = stream.stack.AnsCoder(), 1 << 22
    for start in reversed(range(0, n, step)):  # chunks in reverse = one encode_reverse
        chunk = np.zeros(min(step, n - start), np.int32)
        if start + chunk.size == n:
            chunk[-1] = 1
        coder.encode_reverse(chunk, model)
    body = coder.get_compressed().astype("<u4").tobytes()
    return bytes([0, 1]) + np.array([n - 1, 1], "<u4").tobytes() + body


def _bomb_leaves(kind: str, n: int) -> tuple[list[dict[str, Any]], list[bytes], list[Any]]:
    """Leaf entries, sections and tree nodes of one bomb kind declaring ``n`` elements."""
    if kind == "const-int8":
        return (
            [
                {
                    "path": "b",
                    "kind": "numpy",
                    "meta": {},
                    "components": [comp("value", "int8", [n], const(1))],
                }
            ],
            [b""],
            ["b"],
        )
    if kind == "const-int32-ans":
        enc = {"enc": "ans", "offset": 7, "k": 1}
        sec = b"\x00" + struct.pack("<I", n & 0xFFFFFFFF)
        return (
            [
                {
                    "path": "b",
                    "kind": "numpy",
                    "meta": {},
                    "components": [comp("value", "int32", [n], enc)],
                }
            ],
            [sec],
            ["b"],
        )
    if kind == "skewed-ans-int8":
        enc = {"enc": "ans", "offset": 0, "k": 2}
        return (
            [
                {
                    "path": "b",
                    "kind": "numpy",
                    "meta": {},
                    "components": [comp("value", "int8", [n], enc)],
                }
            ],
            [_skewed_ans(n)],
            ["b"],
        )
    if kind == "sparse-gaps-int8":
        enc = {
            "enc": "sparse",
            "nnz": n,
            "pos_len": 0,
            "values": const(1),
            "pos": {"enc": "gaps", "bits": 1, "count": n, "coder": const(0)},
        }
        return (
            [
                {
                    "path": "b",
                    "kind": "numpy",
                    "meta": {},
                    "components": [comp("value", "int8", [n], enc)],
                }
            ],
            [b""],
            ["b"],
        )
    if kind == "sparse-rowcol-int8":  # one column, one full cell: no ANS bits, no group bits
        pos = {
            "enc": "rowcol",
            "cols": 1,
            "groups": 2,
            "ones": [n, 0, 0, 0],
            "row_groups": const(0),
            "row_len": 0,
            "col_groups": const(0),
            "col_len": 0,
        }
        enc = {"enc": "sparse", "nnz": n, "pos_len": 0, "values": const(1), "pos": pos}
        return (
            [
                {
                    "path": "b",
                    "kind": "numpy",
                    "meta": {},
                    "components": [comp("value", "int8", [n, 1], enc)],
                }
            ],
            [b""],
            ["b"],
        )
    if kind == "sparse-groups-int8":  # n groups of 4, every symbol 15: all 4n elements kept
        pos = {"enc": "groups", "m": 4, "stride": 1, "coder": const(15)}
        enc = {"enc": "sparse", "nnz": 4 * n, "pos_len": 0, "values": const(1), "pos": pos}
        return (
            [
                {
                    "path": "b",
                    "kind": "numpy",
                    "meta": {},
                    "components": [comp("value", "int8", [4 * n], enc)],
                }
            ],
            [b""],
            ["b"],
        )
    if kind == "kmeans-masked":
        comps = [
            comp("mask", "bool", [n], const(1)),
            comp("centroids", "float32", [2], {"enc": "raw"}),
            comp("indices", "uint8", [n], const(1)),
        ]
        leaf = {
            "path": "b",
            "kind": "kmeans",
            "components": comps,
            "meta": {"bits": 1, "dtype": "float32", "masked": True},
        }
        return [leaf], [b"", np.array([-1, 1], "<f4").tobytes(), b""], ["b"]
    if kind == "qarray":
        rows = max(1, n // 64)
        comps = [
            comp("values", "int8", [rows, 64], const(3)),
            comp("scale", "float32", [1, 1], {"enc": "raw"}),
            comp("zero_point", "int32", [1, 1], const(0)),
        ]
        meta = {"bits": 4, "axes": [], "group_size": None, "group_axis": None, "dtype": "float32"}
        leaf = {"path": "b", "kind": "qarray", "components": comps, "meta": meta}
        return [leaf], [b"", np.array([0.5], "<f4").tobytes(), b""], ["b"]
    if kind == "many-leaves":
        m = max(1, n // 64)
        leaves = [
            {
                "path": f"b{i}",
                "kind": "numpy",
                "meta": {},
                "components": [comp("value", "int8", [m], const(1))],
            }
            for i in range(64)
        ]
        return leaves, [b""] * 64, [f"b{i}" for i in range(64)]
    raise ValueError(kind)


BOMBS = (
    "const-int8",
    "const-int32-ans",
    "skewed-ans-int8",
    "sparse-gaps-int8",
    "sparse-rowcol-int8",
    "sparse-groups-int8",
    "kmeans-masked",
    "qarray",
    "many-leaves",
)


def bomb_file(kind: str, n: int, filler: bytes) -> bytes:
    """A file of ``filler`` (a raw uint8 leaf, to set the file size) and one bomb declaring ``n``."""
    leaves, sections, keys = _bomb_leaves(kind, n)
    fill = {
        "path": "filler",
        "kind": "numpy",
        "meta": {},
        "components": [comp("value", "uint8", [len(filler)], {"enc": "raw"})],
    }
    tree = {
        "t": "dict",
        "k": ["filler", *keys],
        "c": [{"t": "leaf", "i": i} for i in range(len(keys) + 1)],
    }
    return build_jz(tree, [fill, *leaves], [filler, *sections])


def _fits(data: bytes) -> bool:
    """Whether the loader's planner accepts the file's declared sizes (nothing is decoded)."""
    from jaxzip.codec import FormatError, memory_bound

    try:
        memory_bound(data)
    except FormatError:
        return False
    return True


def largest_bomb(kind: str, file_bytes: int, seed: int = 0) -> int:
    """The largest ``n`` the loader accepts for a bomb of ``kind`` in a ~``file_bytes`` file."""
    filler = np.random.default_rng(seed).bytes(file_bytes)
    sized = "const-int8" if kind == "skewed-ans-int8" else kind  # same charge, cheap to build
    lo, hi = 1, 1 << 34
    while lo < hi:  # binary search on the planner's cap check (nothing is decoded)
        mid = (lo + hi + 1) // 2
        if _fits(bomb_file(sized, mid, filler)):
            lo = mid
        else:
            hi = mid - 1
    if kind == "skewed-ans-int8":  # its body is a few words longer: back off until it fits
        while not _fits(bomb_file(kind, lo, filler)):
            lo -= max(1, lo // 1000)
    return lo


def bomb_cases(file_bytes: int, kinds: tuple[str, ...] = BOMBS) -> list[Case]:
    """Each bomb kind just under the cap (``expect="load"``) and just over (``"refuse"``)."""
    filler = np.random.default_rng(0).bytes(file_bytes)
    out = []
    for kind in kinds:
        n = largest_bomb(kind, file_bytes)
        over = n + (64 if kind in ("qarray", "many-leaves") else 1)
        if kind == "skewed-ans-int8":  # backed off from the cap: step past it again
            over = largest_bomb("const-int8", file_bytes) + 1
            while _fits(bomb_file(kind, over, filler)):
                over += max(1, over // 1000)
        out.append(Case("bomb", f"{kind}-under", ".jz", bomb_file(kind, n, filler), "load"))
        out.append(Case("bomb", f"{kind}-over", ".jz", bomb_file(kind, over, filler), "refuse"))
    return out


# ---- inconsistent leaves, trees, NaN --------------------------------------------------------


def _sample_tree() -> dict[str, Any]:
    from jaxzip.quant import KMeansArray, QuantSpec, quantize

    mask = np.array([[True, False, True], [False, True, True]])
    idx = np.where(mask, np.array([[1, 0, 2], [0, 3, 1]]), 0).astype(np.uint8)
    books = np.linspace(-1, 1, 4, dtype=np.float32)
    masked = KMeansArray(indices=idx, centroids=books, mask=mask, bits=2)
    dense = KMeansArray(indices=idx + 1 - mask, centroids=books, mask=mask, bits=2)  # unmasked
    x = np.linspace(-1, 1, 48, dtype=np.float32).reshape(4, 12)
    q = quantize(x, QuantSpec(bits=4, axes=(1,)))
    g = quantize(x, QuantSpec(bits=4, symmetric=False, axes=(0,), group_size=4, group_axis=1))
    return {"k": masked, "kd": dense, "q": q, "g": g, "w": np.ones(3, np.float32)}


def _leaf(header: dict[str, Any], path: str) -> dict[str, Any]:
    return next(e for e in header["leaves"] if e["path"] == path)


def _meta(path: str, **kw: Any) -> Callable[[dict[str, Any], list[bytes]], None]:
    def fn(h: dict[str, Any], s: list[bytes]) -> None:
        _leaf(h, path)["meta"].update(kw)

    return fn


def _comp(path: str, name: str, **kw: Any) -> Callable[[dict[str, Any], list[bytes]], None]:
    def fn(h: dict[str, Any], s: list[bytes]) -> None:
        entry = _leaf(h, path)
        c = next(c for c in entry["components"] if c["name"] == name)
        if "section" in kw:  # replace the section itself
            i = [x for e in h["leaves"] for x in e["components"]].index(c)
            s[i] = kw.pop("section")
        c.update(kw)

    return fn


def _tree(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any], list[bytes]], None]:
    return lambda h, s: fn(h)


def leaf_cases() -> list[Case]:
    """Inconsistent k-means and QArray leaves, malformed trees and a NaN header (``refuse``)."""
    import jaxzip as jz

    base = jz.codec.encode(_sample_tree(), encoding=jz.codec.Encoding(symbols="pack"))
    kmeans = {
        "masked-to-false": _meta("k", masked=False),
        "unmasked-to-true": _meta("kd", masked=True),
        "masked-null": _meta("k", masked=None),
        "dtype-int8": _meta("k", dtype="int8"),
        "dtype-bool": _meta("kd", dtype="bool"),
        "bits-3-for-4-centroids": _meta("k", bits=3),
        "bits-1": _meta("kd", bits=1),
        "bits-9": _meta("k", bits=9),
        "bits-true": _meta("k", bits=True),
        "centroids-2x2": _comp("k", "centroids", shape=[2, 2]),
        "centroids-int32": _comp("k", "centroids", dtype="int32"),
        "index-past-codebook": _comp("kd", "indices", enc=const(200), section=b""),
        "indices-shape": _comp("kd", "indices", shape=[3, 2]),
        "mask-uint8": _comp("k", "mask", dtype="uint8"),
        "no-meta-bits": lambda h, s: _leaf(h, "k")["meta"].pop("bits"),
    }
    qarray = {
        "axes-other": _meta("q", axes=[0]),
        "axes-out-of-range": _meta("q", axes=[2]),
        "axes-repeated": _meta("q", axes=[1, 1]),
        "bits-2": _meta("q", bits=2),
        "bits-0": _meta("q", bits=0),
        "dtype-int32": _meta("q", dtype="int32"),
        "group-without-axis": _meta("g", group_axis=None),
        "group-not-dividing": _meta("g", group_size=5),
        "group-on-scaled-axis": _meta("g", group_axis=0),
        "scale-int32": _comp("q", "scale", dtype="int32"),
        "zero-point-float": _comp(
            "g",
            "zero_point",
            dtype="float32",
            enc={"enc": "raw"},
            section=np.zeros(12, "<f4").tobytes(),
        ),
        "scale-shape": _comp("q", "scale", shape=[12, 1]),
    }

    def dup_root(t: dict[str, Any]) -> None:
        t["tree"]["k"][1] = t["tree"]["k"][0]

    def reuse(t: dict[str, Any]) -> None:
        t["tree"]["c"][1]["i"] = 0

    def swap(t: dict[str, Any]) -> None:
        t["tree"]["c"][0]["i"], t["tree"]["c"][1]["i"] = 1, 0

    def drop(t: dict[str, Any]) -> None:
        t["tree"]["k"].pop()
        t["tree"]["c"].pop()

    def none(t: dict[str, Any]) -> None:
        t["tree"]["c"][-1] = {"t": "none"}

    def rename(t: dict[str, Any]) -> None:
        t["leaves"][0]["path"] = "elsewhere"

    def nested(t: dict[str, Any]) -> None:
        t["tree"]["c"][-1] = {
            "t": "dict",
            "k": ["a", "a"],
            "c": [t["tree"]["c"][-1], {"t": "none"}],
        }
        t["leaves"][-1]["path"] = "w/a"

    trees = {
        "dup-root-key": dup_root,
        "leaf-reused": reuse,
        "leaves-swapped": swap,
        "leaf-left-out": drop,
        "leaf-replaced-by-none": none,
        "path-differs": rename,
        "dup-nested-key": nested,
    }
    out = [Case("kmeans", k, ".jz", edit_jz(base, f), "refuse") for k, f in kmeans.items()]
    out += [Case("qarray", k, ".jz", edit_jz(base, f), "refuse") for k, f in qarray.items()]
    out += [Case("tree", k, ".jz", edit_jz(base, _tree(f)), "refuse") for k, f in trees.items()]
    header, sections = split_jz(base)
    text = json.dumps(header)
    for const_ in ("NaN", "Infinity", "-Infinity"):
        bad = text.replace('"version": 1,', f'"version": 1, "x": {const_},', 1).encode()
        body = CODEC_PREFIX.pack(CODEC_MAGIC, 1, 0, len(bad), zlib.crc32(bad)) + bad
        body += b"".join(sections)
        out.append(
            Case(
                "nan",
                f"jz-header-{const_}",
                ".jz",
                body + struct.pack("<I", zlib.crc32(body)),
                "refuse",
            )
        )
    return out


# ---- exported models ----------------------------------------------------------------------


JZX_MAGIC = b"\x89JZX\r\n\x1a\n"
JZX_PREFIX = struct.Struct("<8sHHIQQIII")


def pack_jzx(info: dict[str, Any] | str, hlo: bytes, weights: bytes) -> bytes:
    """An exported-model file with every length and CRC recomputed (``info`` as JSON text or dict)."""
    ib = (info if isinstance(info, str) else json.dumps(info)).encode()
    crcs = (zlib.crc32(ib), zlib.crc32(hlo), zlib.crc32(weights))
    body = JZX_PREFIX.pack(JZX_MAGIC, 1, 0, len(ib), len(hlo), len(weights), *crcs)
    body += ib + hlo + weights
    return body + struct.pack("<I", zlib.crc32(body))


def split_jzx(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """``(info, hlo, weights)`` of a valid exported-model file: the sections of
    ``docs/format.md``, read from the prefix's lengths (nothing checked: for a file
    :func:`jaxzip.deploy.export` just wrote)."""
    _, _, _, ilen, hlen, wlen, *_ = JZX_PREFIX.unpack_from(data)
    a = JZX_PREFIX.size
    info = json.loads(data[a : a + ilen])
    return info, data[a + ilen : a + ilen + hlen], data[a + ilen + hlen : a + ilen + hlen + wlen]


def hlo_cases() -> list[Case]:
    """Exported models with a bad StableHLO, a disallowed custom call, or a NaN / wrong info."""
    import jax
    import jax.numpy as jnp

    import jaxzip as jz

    def apply(p: Any, x: Any, *, train: bool, key: Any) -> Any:
        return jnp.tanh(x @ p["w"])

    with contextlib.ExitStack() as stack:
        import tempfile

        d = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        jz.deploy.export(apply, {"w": jnp.eye(2)}, jnp.ones((1, 2)), d / "m.jzx")
        good = (d / "m.jzx").read_bytes()
    info, hlo, weights = split_jzx(good)
    compact = json.dumps(info, separators=(",", ":"))  # as the exporter writes it
    if pack_jzx(compact, hlo, weights) != good:  # the spec read right
        raise AssertionError("fuzz_crafted: pack_jzx does not rebuild an exported file")
    w = [jax.ShapeDtypeStruct((2, 2), jnp.float32)]
    x = jax.ShapeDtypeStruct((1, 2), jnp.float32)
    exported = jax.export.deserialize(bytearray(hlo))

    def evil(flat: Any, x: Any) -> Any:
        out = jax.ShapeDtypeStruct((1, 2), jnp.float32)
        return jax.ffi.ffi_call("evil_target", out)(x @ flat[0])

    no_check = [jax.export.DisabledSafetyCheck.custom_call("evil_target")]
    evil_hlo = jax.export.export(jax.jit(evil), disabled_checks=no_check)(w, x).serialize()
    wide = jax.export.export(jax.jit(lambda f, x: x @ f[0]))(
        [jax.ShapeDtypeStruct((2, 3), jnp.float32)], x
    ).serialize()
    cuda = jax.export.export(jax.jit(lambda f, x: x @ f[0]), platforms=("cuda",))(w, x).serialize()
    module = exported.mlir_module_serialized
    hlos = {
        "flatbuffer-garbage": b"not a serialized jax.export at all",
        "module-garbage": dataclasses.replace(exported, mlir_module_serialized=b"garbage"),
        "module-truncated": dataclasses.replace(
            exported, mlir_module_serialized=module[: len(module) // 2]
        ),
        "custom-call-evil": evil_hlo,
        "weights-other-shape": wide,
        "other-platform": cuda,
    }
    out = []
    for name, h in hlos.items():
        blob = h if isinstance(h, (bytes, bytearray)) else h.serialize()
        out.append(Case("hlo", name, ".jzx", pack_jzx(info, bytes(blob), weights), "refuse"))
    out.append(
        Case(
            "hlo",
            "info-output-shape",
            ".jzx",
            pack_jzx({**info, "output_shape": [1, 3]}, hlo, weights),
            "refuse",
        )
    )
    for field, const_ in (("jax_version", "NaN"), ("extra", "Infinity"), ("num_weights", "NaN")):
        text = json.dumps({**info, field: 0}).replace(f'"{field}": 0', f'"{field}": {const_}')
        out.append(
            Case(
                "nan", f"jzx-info-{field}-{const_}", ".jzx", pack_jzx(text, hlo, weights), "refuse"
            )
        )
    return out


def all_cases(bomb_bytes: int, kinds: tuple[str, ...] = BOMBS) -> list[Case]:
    """Every crafted case, bombs of about ``bomb_bytes`` bytes."""
    return bomb_cases(bomb_bytes, kinds) + leaf_cases() + hlo_cases()


# ---- running one case ---------------------------------------------------------------------


def run_mode(mode: str, path: Path) -> tuple[str, str]:
    """``(outcome, detail)`` of loading ``path`` with ``mode`` ``"load"`` or ``"inspect"``.

    Outcomes: ``ok``, ``refused`` (the loader's FormatError; for inspect exit 2 and
    exactly one ``jaxzip: error:`` line), ``other:<type>`` (any other exception, or
    inspect's output not one line).
    """
    import jaxzip as jz

    if mode == "load":
        try:
            if path.suffix == ".jzx":
                jz.deploy.load_exported(path)
            else:
                jz.codec.load(path)
        except jz.codec.FormatError as e:
            return "refused", str(e)[:200]
        except Exception as e:  # every other exception is a finding
            return f"other:{type(e).__name__}", "".join(traceback.format_exception(e))[-400:]
        return "ok", ""
    from jaxzip.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(["inspect", str(path)])
    except Exception as e:  # an exception out of main is a traceback for the user
        return f"other:{type(e).__name__}", "".join(traceback.format_exception(e))[-400:]
    lines = err.getvalue().splitlines()
    if rc == 0:
        return "ok", ""
    if rc == 2 and len(lines) == 1 and lines[0].startswith("jaxzip: error: "):
        return "refused", lines[0][:200]
    return f"other:exit{rc}", err.getvalue()[-400:]


def _subprocess(mode: str, path: Path, timeout: float) -> dict[str, Any]:
    """Loads ``path`` in a fresh Python: outcome and the process's peak RSS (``hang``/``crash``)."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", mode, str(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"outcome": "hang", "detail": f"over {timeout} s", "rss_kb": 0}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {
            "outcome": "crash",
            "detail": f"exit {done.returncode}: {done.stderr[-300:]}",
            "rss_kb": 0,
        }
    return json.loads(lines[-1])


def run_crafted(
    *,
    bomb_bytes: int,
    scratch: Path,
    rss: bool,
    workers: int = 2,
    timeout: float = 600.0,
    kinds: tuple[str, ...] = BOMBS,
) -> dict[str, Any]:
    """Runs every crafted case through load and inspect; returns the figures.

    With ``rss=True`` each bomb that must load runs in fresh processes (load, then
    inspect), and the rise of the peak RSS over the resident memory just before the
    load (imports and JAX's runtime done) is set beside the cap; every other case
    runs in this process, its peak traced with tracemalloc.
    """
    import concurrent.futures as cf
    import tracemalloc

    cases = all_cases(bomb_bytes, kinds)
    records: list[dict[str, Any]] = []
    fresh = [c for c in cases if rss and c.cls == "bomb" and c.expect == "load"]
    tracing = not tracemalloc.is_tracing()
    if tracing:
        tracemalloc.start()
    try:
        for c in cases:
            if c in fresh:
                continue
            path = scratch / f"{c.cls}-{c.name}{c.suffix}"
            path.write_bytes(c.data)
            row = {"cls": c.cls, "name": c.name, "expect": c.expect, "bytes": len(c.data)}
            for mode in ("load", "inspect"):
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                row[mode], row[f"{mode}_detail"] = run_mode(mode, path)
                row[f"{mode}_peak"] = tracemalloc.get_traced_memory()[1] - before
            path.unlink()
            records.append(row)
    finally:
        if tracing:
            tracemalloc.stop()
    if fresh:

        def measure(c: Case) -> dict[str, Any]:
            path = scratch / f"{c.cls}-{c.name}{c.suffix}"
            path.write_bytes(c.data)
            row = {"cls": c.cls, "name": c.name, "expect": c.expect, "bytes": len(c.data)}
            for mode in ("load", "inspect"):
                got = _subprocess(mode, path, timeout)
                row[mode], row[f"{mode}_detail"] = got["outcome"], got["detail"]
                row[f"{mode}_rss_extra"] = got.get("extra_kb", 0) * 1024
                row[f"{mode}_rss_peak"] = got["rss_kb"] * 1024
            path.unlink()
            return row

        with cf.ThreadPoolExecutor(max(1, workers)) as pool:
            records += list(pool.map(measure, fresh))
    return summarize_crafted(records)


def _verdict(row: dict[str, Any]) -> str:
    want = "ok" if row["expect"] == "load" else "refused"
    if row["load"] == want and row["inspect"] == want:
        return "as expected"
    if row["expect"] == "refuse" and "ok" in (row["load"], row["inspect"]):
        return "INCONSISTENT FILE LOADED"
    return "UNEXPECTED"


def summarize_crafted(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per class and the bombs' memory beside the cap."""
    from jaxzip.codec import MAX_EXPANSION, MIN_DECODED_BYTES

    classes: dict[str, Any] = {}
    for r in records:
        r["verdict"] = _verdict(r)
        k = classes.setdefault(r["cls"], {"cases": 0, "as_expected": 0, "failures": []})
        k["cases"] += 1
        if r["verdict"] == "as expected":
            k["as_expected"] += 1
        else:
            k["failures"].append(
                {
                    x: r[x]
                    for x in ("name", "expect", "load", "inspect", "load_detail", "inspect_detail")
                }
            )
    bombs = []
    for r in records:
        if r["cls"] != "bomb":
            continue
        cap = max(MIN_DECODED_BYTES, MAX_EXPANSION * r["bytes"])
        row = {"name": r["name"], "bytes": r["bytes"], "cap": cap}
        for mode in ("load", "inspect"):
            used = r.get(f"{mode}_rss_extra", r.get(f"{mode}_peak"))
            row[mode] = used
            row[f"{mode}_over_cap"] = round(used / cap, 3)
            row[f"{mode}_within"] = used <= cap + WORKING_BYTES
            if f"{mode}_rss_peak" in r:
                row[f"{mode}_rss_peak"] = r[f"{mode}_rss_peak"]
        row["measure"] = "rss" if "load_rss_extra" in r else "traced"
        bombs.append(row)
    failures = sum(len(k["failures"]) for k in classes.values())
    loaded = sum(r["verdict"] == "INCONSISTENT FILE LOADED" for r in records)
    other = sum(
        any(str(r[m]).startswith(("other", "hang", "crash")) for m in ("load", "inspect"))
        for r in records
    )
    worst = max((max(b["load_over_cap"], b["inspect_over_cap"]) for b in bombs), default=0.0)
    over = sum(not (b["load_within"] and b["inspect_within"]) for b in bombs)
    return {
        "cases": len(records),
        "classes": classes,
        "bombs": bombs,
        "failures": failures,
        "inconsistent_loaded": loaded,
        "tracebacks_hangs_crashes": other,
        "worst_memory_over_cap": worst,
        "over_memory_bound": over,
    }


def format_crafted(s: dict[str, Any]) -> str:
    """The crafted-case figures as text."""
    lines = [f"crafted cases: {s['cases']} (checksums recomputed), load and inspect each"]
    for cls, k in s["classes"].items():
        lines.append(f"  {cls:7s} {k['cases']:3d} cases, {k['as_expected']} as expected")
        for f in k["failures"]:
            lines.append(
                f"          FAIL {f['name']}: expect {f['expect']}, load {f['load']}, "
                f"inspect {f['inspect']} ({f['load_detail'][:80]})"
            )
    if s["bombs"]:
        lines.append(
            "  bombs: memory used beside the cap max(1 MiB, 1024 x file bytes); bound: cap + "
            f"{WORKING_BYTES >> 20} MiB of working buffers; [rss] = a fresh process's peak RSS "
            "over its resident memory before the load, [tra] = tracemalloc peak"
        )
        for b in s["bombs"]:
            lines.append(
                f"    {b['name']:26s} [{b['measure'][:3]}] {b['bytes']:>9d} B  "
                f"cap {b['cap'] / 2**20:8.1f} MiB  "
                f"load {b['load'] / 2**20:8.1f} MiB ({b['load_over_cap']:.2f})  "
                f"inspect {b['inspect'] / 2**20:8.1f} MiB ({b['inspect_over_cap']:.2f})"
            )
    lines.append(
        f"  failures {s['failures']}, inconsistent files loaded {s['inconsistent_loaded']}, "
        f"tracebacks/hangs/crashes {s['tracebacks_hangs_crashes']}, "
        f"over the memory bound {s['over_memory_bound']} (worst memory / cap "
        f"{s['worst_memory_over_cap']:.2f})"
    )
    return "\n".join(lines)


def _one(mode: str, path: str) -> None:
    import os

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax.numpy as jnp

    import jaxzip.cli  # noqa: F401  (imports done before the measurement starts)

    jnp.zeros(()).block_until_ready()  # and JAX's runtime up
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    before = int(Path("/proc/self/statm").read_text().split()[1]) * page_kb  # resident now
    outcome, detail = run_mode(mode, Path(path))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # high-water mark, imports too
    print(
        json.dumps(
            {
                "outcome": outcome,
                "detail": detail,
                "rss_kb": peak,
                "extra_kb": max(0, peak - before),
            }
        )
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Load one file in this process; print outcome, RSS.")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "FILE"), required=True)
    args = ap.parse_args()
    if args.one[0] not in ("load", "inspect", "baseline"):
        ap.error("MODE is load, inspect or baseline")
    if args.one[0] == "baseline":  # imports and a tiny valid file, for the RSS baseline
        import jaxzip  # noqa: F401
        from jaxzip.cli import main  # noqa: F401

        print(json.dumps({"outcome": "ok", "detail": "", "rss_kb": 0}))
        sys.exit(0)
    _one(*args.one)
