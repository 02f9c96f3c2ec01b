"""Fuzz campaign over jaxzip's saved files: mutated files must fail only with the loader's error.

Builds a few real files (compressed-model files of a small pruned + k-means
LeNet-like tree under several pinned encodings, an exported-model file and a
params ``.npz``), then decodes N mutated variants, each from its own seeded
generator, under a per-case watchdog. Mutations: bit flips, byte sets,
truncation, insertion, deletion, splices with another file, 32-bit field
edits (huge declared sizes), and structure-aware edits that re-serialise the
JSON header / a payload section / an ``.npy`` header and recompute every
checksum, so they reach the stream decoders behind the checksums.

Outcomes per target: ``ok_identical``, ``ok_different`` (only possible for
mutations that recomputed the checksums; one for a raw mutation is a checksum
escape and is flagged), ``expected_error`` (``FormatError`` for the codec and
exported-model loaders, ``jaxzip.CheckpointError`` for ``load_params``), other exceptions by
type with a sample, ``hang`` (over ``--timeout`` seconds) and ``crash`` (the
worker process died). Peak memory per decode is measured with tracemalloc and
reported as a multiple of the mutated file's size. Each codec and exported-model case is
also run through ``jaxzip inspect``, which must agree with the loader (exit 2 with one
line where it refuses, 0 where it loads); a disagreement counts as an unexpected outcome.

Then the crafted classes of ``fuzz_crafted.py`` (declared-size bombs at the cap,
inconsistent k-means / QArray leaves, bad trees, NaN headers and info, bad StableHLO),
every checksum recomputed, each through load and inspect; the bombs that must load run in
fresh processes whose peak RSS over a baseline process is set beside the cap.

  python experiments/fuzz_codec.py --cases 2000                 # a quick run
  python experiments/fuzz_codec.py --cases 100000 --workers 2   # the full campaign
  python experiments/fuzz_codec.py --cases 1000 --bomb-bytes 1048576   # + 1 MB crafted bombs
  python experiments/fuzz_codec.py --replay 1234                # re-run one case, traceback shown
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import random
import signal
import statistics
import struct
import sys
import tempfile
import time
import traceback
import tracemalloc
import zipfile
import zlib
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_crafted as crafted  # experiments/ is on sys.path, as for _common

CODEC_PREFIX = struct.Struct("<8sHHII")
DEPLOY_PREFIX = struct.Struct("<8sHHIQQIII")
TARGET_MIX = (("codec", 0.8), ("deploy", 0.1), ("npz", 0.1))
INTERESTING = (
    0,
    1,
    -1,
    2,
    3,
    7,
    8,
    9,
    15,
    16,
    255,
    256,
    65535,
    2**20,
    2**24,
    2**26,
    2**28,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**39,
    2**40,
    2**62,
    2**63,
    2**64,
    -(2**63),
    10**30,
)
WORDS = (
    "raw",
    "pack",
    "ans",
    "huffman",
    "sparse",
    "bitmask",
    "gaps",
    "dense",
    "leaf",
    "dict",
    "list",
    "tuple",
    "none",
    "qarray",
    "kmeans",
    "py",
    "numpy",
    "jax",
    "npscalar",
    "float32",
    "int8",
    "uint8",
    "bool",
    "int64",
    "bfloat16",
    "float64",
    "object",
    "",
    "values",
    "mask",
    "indices",
    "centroids",
    "value",
    "scale",
    "zero_point",
    "int",
    "float",
)


# ---- the corpus -------------------------------------------------------------------------


def lenet_tree(seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A small pruned + k-means LeNet-like tree ``(compressed, dense params)``, built in numpy.

    ``Conv_0/kernel`` is a 4-bit per-channel QArray, ``Dense_0/kernel`` an 80%-pruned
    4-bit KMeansArray, ``Dense_1/kernel`` 80%-pruned raw floats (a sparse stream),
    the biases dense or all-zero floats, plus Python and numpy scalars, None and an int array.
    """
    import jax.numpy as jnp

    import jaxzip as jz

    rng = np.random.default_rng(seed)

    def pruned(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        w = rng.normal(size=shape).astype(np.float32)
        keep = np.abs(w) >= np.quantile(np.abs(w), 0.8)
        return np.where(keep, w, np.float32(0)), keep

    conv = rng.normal(size=(3, 3, 1, 4)).astype(np.float32)
    w0, m0 = pruned((36, 24))
    w1, _ = pruned((24, 10))
    params = {
        "Conv_0": {"kernel": conv, "bias": np.zeros(4, np.float32)},
        "Dense_0": {"kernel": w0, "bias": rng.normal(size=24).astype(np.float32)},
        "Dense_1": {"kernel": w1, "bias": np.zeros(10, np.float32)},
    }
    scale = np.abs(conv).max(axis=(0, 1, 2), keepdims=True) / 7
    qconv = jz.quant.QArray(
        values=jnp.asarray(np.clip(np.round(conv / scale), -8, 7).astype(np.int8)),
        scale=jnp.asarray(scale),
        zero_point=jnp.zeros((1, 1, 1, 4), jnp.int32),
        bits=4,
        axes=(3,),
        group_size=None,
        group_axis=None,
        dtype=np.dtype(np.float32),
    )
    centroids = np.sort(rng.normal(size=16)).astype(np.float32)
    idx = np.abs(w0[..., None] - centroids).argmin(-1).astype(np.uint8) * m0
    books = jz.quant.KMeansArray(
        indices=jnp.asarray(idx.astype(np.uint8)),
        centroids=jnp.asarray(centroids),
        mask=jnp.asarray(m0),
        bits=4,
        dtype=np.dtype(np.float32),
    )
    w2 = rng.integers(-7, 8, size=(128, 32)).astype(np.int8)  # 2:4 on the input axis: groups
    top2 = np.argsort(np.abs(w2).reshape(32, 4, 32), axis=1, kind="stable") >= 2
    tree = {
        "Conv_0": {"kernel": qconv, "bias": jnp.zeros(4)},
        "Dense_0": {"kernel": books, "bias": params["Dense_0"]["bias"]},
        "Dense_1": {"kernel": w1, "bias": params["Dense_1"]["bias"]},
        "Dense_2": {"kernel": np.where(top2.reshape(128, 32), w2, np.int8(0))},
        "meta": [np.int16(3), 2.5, True, None, (jnp.arange(5, dtype=jnp.int32),)],
    }
    return tree, params


def build_corpus(seed: int) -> dict[str, list[bytes]]:
    """The files to mutate, by target: codec (4 encodings), deploy (1), npz (1); the same
    bytes whoever calls it."""
    import jax.numpy as jnp

    import jaxzip as jz

    tree, params = lenet_tree(seed)
    encs = [None] + [
        jz.codec.Encoding(symbols=s, positions=p, gap_bits=g)
        for s, p, g in (("huffman", "gaps", 3), ("pack", "bitmask", 4), ("ans", "gaps", 5))
    ]
    codec_files = [jz.codec.encode(tree, encoding=e) for e in encs]

    def apply(p, x, *, train, key):
        return jnp.tanh(x @ p["w"]) * p["s"]  # x: (1, 36)

    small = {"w": tree["Dense_0"]["kernel"], "s": jnp.float32(2.0)}
    with tempfile.TemporaryDirectory() as d:  # export's bytes do not depend on the caller
        jz.deploy.export(apply, small, jnp.ones((1, 36)), Path(d) / "m.jzx")
        deploy_file = (Path(d) / "m.jzx").read_bytes()
        jz.train.save_params(Path(d) / "p.npz", params)
        npz_file = (Path(d) / "p.npz").read_bytes()
    return {"codec": codec_files, "deploy": [deploy_file], "npz": [npz_file]}


# ---- mutations -------------------------------------------------------------------------


def raw_mutation(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[bytes, str]:
    """One byte-level mutation (no checksum fixed)."""
    b, n = bytearray(data), len(data)
    op = rng.choice(("flip", "set", "truncate", "insert", "delete", "splice", "dup", "u32", "u64"))
    at = rng.randrange(n + 1) if n else 0
    if op == "flip" and n:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif op == "set" and n:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(n)] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    elif op == "truncate":
        b = b[:at]
    elif op == "insert":
        b[at:at] = rng.randbytes(rng.choice((1, 2, 4, 8, rng.randint(1, 64))))
    elif op == "delete":
        del b[at : at + rng.randint(1, 64)]
    elif op == "splice":
        other = rng.choice(others)
        b = b[:at] + other[rng.randrange(len(other) + 1) :]
    elif op == "dup" and n:
        j = rng.randrange(n)
        b[at:at] = b[j : j + rng.randint(1, 64)]
    elif op in ("u32", "u64") and n >= 8:
        fmt = "<I" if op == "u32" else "<Q"
        size = struct.calcsize(fmt)
        i = (
            rng.randrange(min(n - size + 1, 64))
            if rng.random() < 0.7
            else rng.randrange(n - size + 1)
        )
        v = rng.choice(INTERESTING) % (1 << (8 * size))
        b[i : i + size] = struct.pack(fmt, v)
    return bytes(b), f"raw:{op}"


def _random_value(rng: random.Random, old: Any) -> Any:
    if isinstance(old, int) and not isinstance(old, bool) and rng.random() < 0.5:
        return rng.choice((old + 1, old - 1, old * 2, old // 2, -old, old + 2**32, old * 1000))
    make = rng.choice(
        (
            lambda: rng.choice(INTERESTING),
            lambda: rng.choice(WORDS),
            lambda: None,
            lambda: True,
            lambda: False,
            lambda: 1.5,
            lambda: -0.0,
            lambda: 1e308,
            lambda: float("inf"),
            lambda: float("nan"),
            lambda: [],
            lambda: {},
            lambda: [rng.choice(INTERESTING)] * rng.randint(1, 40),
            lambda: {"t": "leaf", "i": rng.choice(INTERESTING)},
            lambda: "x" * rng.randint(1, 300),
            lambda: _deep(rng.choice((10, 70, 200))),
        )
    )
    return make()


def _deep(depth: int) -> Any:
    node: Any = {"t": "leaf", "i": 0}
    for _ in range(depth):
        node = {"t": "list", "c": [node]}
    return node


def mutate_json(rng: random.Random, obj: Any, prefer: str | None = None) -> tuple[Any, str]:
    """Edits one random location of a JSON value in place: replace, delete, duplicate, swap."""
    locs: list[tuple[Any, Any, Any, str]] = []

    def walk(x: Any, parent: Any, key: Any, path: str, depth: int = 0) -> None:
        if parent is not None:
            locs.append((parent, key, x, path))
        if depth > 12:
            return
        items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
        for k, v in items:
            walk(v, x, k, f"{path}/{k}", depth + 1)

    walk(obj, None, None, "")
    if not locs:
        return _random_value(rng, obj), "json:root"
    pool = [loc for loc in locs if prefer and prefer in loc[3]] or locs
    parent, key, old, path = rng.choice(pool)
    op = rng.choice(("replace", "replace", "replace", "delete", "dup", "swap"))
    if op == "delete":
        del parent[key]
    elif op == "dup" and isinstance(parent, list):
        parent.insert(key, old)
    elif op == "swap" and len(parent) > 1:
        keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        other = rng.choice(keys)
        parent[key], parent[other] = parent[other], parent[key]
    else:
        op = "replace"
        parent[key] = _random_value(rng, old)
    return obj, f"json:{op}:{path.rsplit('/', 1)[-1] if path else ''}"


def split_codec(data: bytes) -> tuple[int, dict[str, Any], bytes]:
    """``(version, header, payload)`` of a valid codec file (version 2: deflated header)."""
    _, version, _, hlen, _ = CODEC_PREFIX.unpack_from(data)
    start = CODEC_PREFIX.size + hlen
    stored = data[CODEC_PREFIX.size : start]
    return (
        version,
        json.loads(zlib.decompress(stored, -15) if version >= 2 else stored),
        data[start:-4],
    )


def join_codec(header: Any, payload: bytes, version: int = 2, magic: bytes = b"") -> bytes:
    """A codec file with consistent header length and header / file checksums (the header
    deflated from version 2 on, as the codec writes it)."""
    hb = json.dumps(header, separators=(",", ":")).encode()
    if version >= 2:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        hb = packer.compress(hb) + packer.flush()
    magic = magic or b"\x89JZC\r\n\x1a\n"
    body = CODEC_PREFIX.pack(magic, version, 0, len(hb), zlib.crc32(hb)) + hb + payload
    return body + struct.pack("<I", zlib.crc32(body))


def codec_mutation(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[bytes, str]:
    """A structure-aware mutation of a codec file with every checksum recomputed."""
    _, header, payload = split_codec(data)
    comps = [c for e in header["leaves"] for c in e["components"]]
    op = rng.choice(("header", "header", "spec", "section", "section", "version"))
    if op == "version":
        return join_codec(header, payload, version=rng.choice((0, 1, 3, 255, 65535))), "fix:version"
    if op in ("header", "spec"):
        prefer = "enc" if op == "spec" else None
        header, what = mutate_json(rng, header, prefer)
        try:
            return join_codec(header, payload), f"fix:{op}:{what}"
        except ValueError:  # e.g. a circular structure cannot happen, but be safe
            return data, "fix:noop"
    c = rng.choice(comps)
    sec = payload[c["offset"] : c["offset"] + c["length"]]
    new, what = raw_mutation(rng, sec, others)
    delta = len(new) - len(sec)
    for d in comps:
        if d["offset"] > c["offset"]:
            d["offset"] += delta
    c["length"], c["crc32"] = len(new), zlib.crc32(new)
    header["payload_length"] += delta
    payload = payload[: c["offset"]] + new + payload[c["offset"] + len(sec) :]
    return join_codec(header, payload), f"fix:section:{c['enc'].get('enc')}:{what}"


def split_deploy(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    f = DEPLOY_PREFIX.unpack_from(data)
    a, ilen, hlen = DEPLOY_PREFIX.size, f[3], f[4]
    return (
        json.loads(data[a : a + ilen]),
        data[a + ilen : a + ilen + hlen],
        data[a + ilen + hlen : -4],
    )


def join_deploy(info: Any, hlo: bytes, weights: bytes) -> bytes:
    ib = json.dumps(info, separators=(",", ":")).encode()
    crcs = (zlib.crc32(ib), zlib.crc32(hlo), zlib.crc32(weights))
    head = DEPLOY_PREFIX.pack(b"\x89JZX\r\n\x1a\n", 1, 0, len(ib), len(hlo), len(weights), *crcs)
    body = head + ib + hlo + weights
    return body + struct.pack("<I", zlib.crc32(body))


def deploy_mutation(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[bytes, str]:
    info, hlo, weights = split_deploy(data)
    op = rng.choice(("info", "weights", "weights", "hlo"))
    if op == "info":
        info, what = mutate_json(rng, info)
    elif op == "weights":
        weights, what = codec_mutation(rng, weights, others)
    else:
        hlo, what = raw_mutation(rng, hlo, [hlo])
    return join_deploy(info, hlo, weights), f"fix:{op}:{what}"


def npz_mutation(rng: random.Random, data: bytes, others: list[bytes]) -> tuple[bytes, str]:
    """Rewrites one member of the zip: its ``.npy`` header dict or its data bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = rng.choice(sorted(members))
    npy = members[name]
    hlen = struct.unpack_from("<H", npy, 8)[0]
    head, body = npy[10 : 10 + hlen].decode("latin1"), npy[10 + hlen :]
    op = rng.choice(("shape", "dtype", "order", "body", "rename"))
    if op == "shape":
        shape = rng.choice(
            (
                "()",
                "(0,)",
                "(2**40,)",
                "(1099511627776, 8)",
                "(-1,)",
                "(3, 3, 1, 40)",
                "(4294967296,)",
                "(1, 1, 1, 1, 1, 1)",
                "(10000000000000000000,)",
            )
        )
        head = head[: head.index("'shape':")] + f"'shape': {shape}, }}"
    elif op == "dtype":
        new = rng.choice(("'|O'", "'<f8'", "'|b1'", "'<U10'", "'V4'", "'<c8'", "[('a', '<f4')]"))
        i = head.index("'descr':") + len("'descr': ")
        head = head[:i] + new + head[head.index(",", i) :]
    elif op == "order":
        head = head.replace("False", "True")
    elif op == "body":
        body, _ = raw_mutation(rng, body, [body])
    else:
        members[name + "x"] = members.pop(name)
    hb = head.encode("latin1")
    members[name if name in members else name + "x"] = (
        npy[:8] + struct.pack("<H", len(hb)) + hb + body
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, v in members.items():
            z.writestr(n, v)
    return out.getvalue(), f"fix:npy:{op}"


STRUCTURED = {"codec": codec_mutation, "deploy": deploy_mutation, "npz": npz_mutation}


def make_case(seed: int, case: int, corpus: dict[str, list[bytes]]) -> tuple[str, int, bytes, str]:
    """``(target, base index, mutated bytes, mutation name)`` for one case id (deterministic)."""
    rng = random.Random(seed * 1_000_003 + case)
    r, acc = rng.random(), 0.0
    target = TARGET_MIX[-1][0]
    for t, w in TARGET_MIX:
        acc += w
        if r < acc:
            target = t
            break
    base = rng.randrange(len(corpus[target]))
    data = corpus[target][base]
    others = [f for fs in corpus.values() for f in fs]
    ops = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if rng.random() < 0.5:
            try:
                data, op = STRUCTURED[target](rng, data, others)
            except Exception:  # an earlier raw mutation broke the structure: mutate raw
                data, op = raw_mutation(rng, data, others)
        else:
            data, op = raw_mutation(rng, data, others)
        ops.append(op)
    return target, base, data, "+".join(ops)


# ---- running one case -------------------------------------------------------------------


class Hang(BaseException):  # a BaseException: `except Exception` cannot eat it
    """Raised by the SIGALRM watchdog inside a case that ran past its time limit."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang


class Runner:
    """Decodes cases in this process: the originals to compare against, a scratch dir, timers."""

    def __init__(self, corpus: dict[str, list[bytes]], timeout: float, scratch: Path) -> None:
        import jax

        import jaxzip as jz

        self.jz, self.jax, self.corpus, self.timeout = jz, jax, corpus, timeout
        self.scratch = scratch
        self.inspect_cases = True  # also run `jaxzip inspect` on each codec/deploy case
        self.want = {"codec": [self._flat(jz.codec.decode(f)) for f in corpus["codec"]]}
        self.like = self._npz_like(corpus["npz"][0])
        self.want["npz"] = [self._flat(self._load_npz(corpus["npz"][0]))]
        self._old_handler = signal.signal(signal.SIGALRM, _on_alarm)
        self._started_tracing = not tracemalloc.is_tracing()
        if self._started_tracing:
            tracemalloc.start()

    def close(self) -> None:
        """Restores the SIGALRM handler and stops tracemalloc if this runner started it."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old_handler)
        if self._started_tracing:
            tracemalloc.stop()

    def _flat(self, tree: Any) -> tuple[Any, list[tuple[str, tuple[int, ...], bytes]]]:
        leaves, treedef = self.jax.tree.flatten(tree, is_leaf=lambda x: x is None)
        arrs = [np.asarray(x) if x is not None else np.zeros(0) for x in leaves]
        return str(treedef), [(a.dtype.str, a.shape, a.tobytes()) for a in arrs]

    def _npz_like(self, data: bytes) -> dict[str, Any]:
        like: dict[str, Any] = {}
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            for name in z.files:
                layer, leaf = name.split("/")
                like.setdefault(layer, {})[leaf] = z[name]
        return like

    def _load_npz(self, data: bytes) -> Any:
        path = self.scratch / "case.npz"
        path.write_bytes(data)
        return self.jz.train.load_params(path, self.like)

    def inspect(self, target: str, data: bytes) -> str:
        """``jaxzip inspect`` on the case (codec and deploy targets): ``ok``, ``refused`` or other."""
        if target == "npz":
            return "n/a"
        path = self.scratch / ("case.jz" if target == "codec" else "case.jzx")
        path.write_bytes(data)
        return crafted.run_mode("inspect", path)[0]

    def _decode(self, target: str, data: bytes) -> Any:
        if target == "codec":
            return self._flat(self.jz.codec.decode(data))
        if target == "npz":
            return self._flat(self._load_npz(data))
        path = self.scratch / "case.jzx"
        path.write_bytes(data)
        return self.jz.deploy.load_exported(path)

    def run(self, target: str, base: int, data: bytes) -> tuple[str, str, int]:
        """``(outcome, detail, peak bytes)`` for decoding ``data`` as ``target``, then inspecting.

        ``jaxzip inspect`` must agree with the loader (exit 2 with one line where it
        refuses, 0 where it loads); a disagreement is the outcome ``other:inspect-...``.
        """
        expected = self.jz.codec.FormatError if target != "npz" else self.jz.CheckpointError
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            got = self._decode(target, data)
            signal.setitimer(signal.ITIMER_REAL, 0)
            want = self.want.get(target)
            outcome = (
                "ok"
                if want is None
                else (
                    "ok_identical"
                    if got == want[base if target == "codec" else 0]
                    else "ok_different"
                )
            )
            detail = ""
        except Hang:
            outcome, detail = "hang", f"over {self.timeout} s"
        except expected as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            outcome, detail = "expected_error", str(e)[:200]
        except Exception as e:  # counting every other exception is the point
            signal.setitimer(signal.ITIMER_REAL, 0)
            tb = traceback.extract_tb(e.__traceback__)
            at = next((f for f in reversed(tb) if "jaxzip" in f.filename), tb[-1])
            where = f"{Path(at.filename).name}:{at.lineno}"
            outcome = f"other:{type(e).__module__}.{type(e).__qualname__}@{where}"
            detail = str(e)[:300]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        peak = tracemalloc.get_traced_memory()[1] - before
        if self.inspect_cases and outcome in (
            "ok",
            "ok_identical",
            "ok_different",
            "expected_error",
        ):
            signal.setitimer(signal.ITIMER_REAL, self.timeout)
            try:
                seen = self.inspect(target, data)
            except Hang:
                seen = "hang"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            want = "refused" if outcome == "expected_error" else "ok"
            if seen not in (want, "n/a"):
                outcome, detail = f"other:inspect-{seen}-where-load-{want}", detail
        return outcome, detail, peak


def run_one(runner: Runner, seed: int, case: int) -> dict[str, Any]:
    target, base, data, ops = make_case(seed, case, runner.corpus)
    outcome, detail, peak = runner.run(target, base, data)
    return {
        "case": case,
        "target": target,
        "ops": ops,
        "outcome": outcome,
        "detail": detail,
        "peak": peak,
        "size": len(data),
    }


def _worker(conn: Any, corpus: dict[str, list[bytes]], seed: int, timeout: float) -> None:
    import os

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    with tempfile.TemporaryDirectory() as d:
        runner = Runner(corpus, timeout, Path(d))
        conn.send("ready")
        while True:
            chunk = conn.recv()
            if chunk is None:
                break
            for case in chunk:
                conn.send(run_one(runner, seed, case))
        import resource

        conn.send({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})


# ---- the campaign -----------------------------------------------------------------------


def _start(ctx: Any, corpus: dict[str, list[bytes]], seed: int, timeout: float) -> dict[str, Any]:
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_worker, args=(child, corpus, seed, timeout), daemon=True)
    proc.start()
    child.close()
    return {"proc": proc, "conn": parent, "pending": [], "last": time.monotonic(), "ready": False}


def run_pool(
    corpus: dict[str, list[bytes]],
    *,
    seed: int,
    cases: int,
    workers: int,
    timeout: float,
    chunk: int = 64,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Runs the cases in ``workers`` spawned processes; a silent or dead worker is replaced.

    The case a worker was on when it died is a ``crash``; one it was on when it
    fell silent for ``3 * timeout + 10`` s (a hang SIGALRM could not interrupt,
    e.g. inside C code) is a ``hang``; the rest of its chunk is requeued.
    """
    ctx = mp.get_context("spawn")
    todo = [list(range(i, min(i + chunk, cases))) for i in range(0, cases, chunk)]
    slots = [_start(ctx, corpus, seed, timeout) for _ in range(workers)]
    records: list[dict[str, Any]] = []
    rss: list[int] = []
    hard, t0, shown = 3 * timeout + 10, time.monotonic(), 0

    def lost(i: int, outcome: str) -> None:
        s = slots[i]
        if not s["ready"]:
            raise RuntimeError(f"a fuzz worker died while starting (exit {s['proc'].exitcode})")
        s["proc"].kill()
        s["proc"].join()
        case, rest = s["pending"][0], s["pending"][1:]
        target, _, data, ops = make_case(seed, case, corpus)
        detail = f"worker exit code {s['proc'].exitcode}"
        records.append(
            {
                "case": case,
                "target": target,
                "ops": ops,
                "outcome": outcome,
                "detail": detail,
                "peak": 0,
                "size": len(data),
            }
        )
        if rest:
            todo.insert(0, rest)
        slots[i] = _start(ctx, corpus, seed, timeout)

    while todo or any(s["pending"] for s in slots):
        for s in slots:
            if s["ready"] and not s["pending"] and todo:
                s["pending"] = todo.pop(0)
                s["conn"].send(s["pending"])
                s["last"] = time.monotonic()
        ready = wait([s["conn"] for s in slots], timeout=1.0)
        for i, s in enumerate(slots):
            if s["conn"] in ready:
                try:
                    msg = s["conn"].recv()
                except (EOFError, OSError):
                    lost(i, "crash")
                    continue
                s["last"] = time.monotonic()
                if msg == "ready":
                    s["ready"] = True
                else:
                    records.append(msg)
                    s["pending"].remove(msg["case"])
            elif s["pending"] and time.monotonic() - s["last"] > hard:
                lost(i, "hang")
        if progress and len(records) - shown >= 5000:
            shown = len(records)
            print(f"  {shown}/{cases} cases, {time.monotonic() - t0:.0f} s", file=sys.stderr)
    for s in slots:
        s["conn"].send(None)
        rss.append(s["conn"].recv()["rss_kb"])
        s["proc"].join()
    return records, rss


def summarize(records: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    """Counts by target and outcome, samples of unexpected exceptions, peak-memory multiples."""
    out: dict[str, Any] = {"cases": len(records), "seconds": round(elapsed, 1), "targets": {}}
    for target in sorted({r["target"] for r in records}):
        rs = [r for r in records if r["target"] == target]
        counts = Counter(r["outcome"] for r in rs)
        escapes = [r for r in rs if r["outcome"] == "ok_different" and "fix:" not in r["ops"]]
        others: dict[str, Any] = {}
        for r in rs:
            if r["outcome"].startswith("other:") or r["outcome"] in ("hang", "crash"):
                o = others.setdefault(r["outcome"], {"count": 0, "sample": r})
                o["count"] += 1
        mult = sorted(
            r["peak"] / max(r["size"], 1) for r in rs if r["outcome"] not in ("hang", "crash")
        )
        worst = max(rs, key=lambda r: r["peak"] / max(r["size"], 1))
        out["targets"][target] = {
            "counts": dict(sorted(counts.items())),
            "checksum_escapes": len(escapes),
            "unexpected": others,
            "peak_over_size": {
                "median": round(statistics.median(mult), 2) if mult else None,
                "p99": round(mult[int(0.99 * (len(mult) - 1))], 2) if mult else None,
                "max": round(mult[-1], 2) if mult else None,
                "max_peak_bytes": max(r["peak"] for r in rs),
                "worst": {k: worst[k] for k in ("case", "ops", "outcome", "peak", "size")},
            },
        }
    out["unexpected_total"] = sum(
        o["count"] for t in out["targets"].values() for o in t["unexpected"].values()
    )
    out["hangs"] = sum(t["counts"].get("hang", 0) for t in out["targets"].values())
    return out


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"{s['cases']} cases in {s['seconds']} s"]
    for target, t in s["targets"].items():
        counts = ", ".join(f"{k}={v}" for k, v in t["counts"].items())
        m = t["peak_over_size"]
        lines.append(f"{target:7s} {counts}")
        lines.append(
            f"        checksum escapes={t['checksum_escapes']}  peak/size median="
            f"{m['median']} p99={m['p99']} max={m['max']} "
            f"(max peak {m['max_peak_bytes']} B)"
        )
        for kind, o in t["unexpected"].items():
            smp = o["sample"]
            lines.append(
                f"        {kind}: {o['count']}  e.g. case {smp['case']} ({smp['ops']}): "
                f"{smp['detail'][:120]}"
            )
    lines.append(
        f"unexpected exceptions, crashes and hangs: {s['unexpected_total']} (hangs {s['hangs']})"
    )
    return "\n".join(lines)


def run_campaign(
    *,
    cases: int,
    seed: int,
    corpus_seed: int = 0,
    workers: int = 2,
    timeout: float = 5.0,
    progress: bool = False,
    inspect: bool = True,
) -> dict[str, Any]:
    """Builds the corpus and runs ``cases`` mutated files; ``workers=0`` runs in this process.

    ``inspect=False`` skips ``jaxzip inspect`` on each case (only with ``workers=0``).
    """
    corpus = build_corpus(corpus_seed)
    t0 = time.monotonic()
    if workers == 0:
        with tempfile.TemporaryDirectory() as d:
            runner = Runner(corpus, timeout, Path(d))
            runner.inspect_cases = inspect
            try:
                records = [run_one(runner, seed, c) for c in range(cases)]
            finally:
                runner.close()
        rss: list[int] = []
    else:
        records, rss = run_pool(
            corpus, seed=seed, cases=cases, workers=workers, timeout=timeout, progress=progress
        )
    summary = summarize(records, time.monotonic() - t0)
    summary.update(
        seed=seed,
        corpus_seed=corpus_seed,
        workers=workers,
        timeout_s=timeout,
        corpus_bytes={k: [len(f) for f in v] for k, v in corpus.items()},
        worker_max_rss_kb=rss,
    )
    return summary


def replay(case: int, *, seed: int, corpus_seed: int) -> None:
    """Re-runs one case in this process and lets its exception propagate (for debugging)."""
    corpus = build_corpus(corpus_seed)
    target, base, data, ops = make_case(seed, case, corpus)
    print(f"case {case}: target {target}, base {base}, {len(data)} bytes, ops {ops}")
    with tempfile.TemporaryDirectory() as d:
        runner = Runner(corpus, 1e6, Path(d))
        try:
            got = runner._decode(target, data)
        finally:
            runner.close()
    print("decoded:", "identical" if got == runner.want.get(target, [None])[base] else "different")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000, help="mutated files to decode")
    ap.add_argument("--seed", type=int, required=True, help="seed of the mutations")
    ap.add_argument("--corpus-seed", type=int, default=0, help="seed of the model in the corpus")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (0: in-process)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds before a case is a hang")
    ap.add_argument("--json", type=Path, default=Path("fuzz_codec.json"), help="summary file")
    ap.add_argument("--replay", type=int, default=None, help="re-run one case id and raise")
    ap.add_argument(
        "--crafted",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the crafted cases (bombs, inconsistent leaves and trees, "
        "NaN, bad StableHLO), load and inspect each",
    )
    ap.add_argument(
        "--bomb-bytes",
        type=int,
        default=1 << 20,
        help="file size of the declared-size bombs (their peak RSS is measured)",
    )
    args = ap.parse_args(argv)
    if args.cases < 1 or args.workers < 0 or args.timeout <= 0 or args.bomb_bytes < 1:
        ap.error("--cases and --bomb-bytes must be >= 1, --workers >= 0 and --timeout > 0")
    if args.replay is not None:
        replay(args.replay, seed=args.seed, corpus_seed=args.corpus_seed)
        return None
    from jaxzip.io import atomic_write_json

    summary = run_campaign(
        cases=args.cases,
        seed=args.seed,
        corpus_seed=args.corpus_seed,
        workers=args.workers,
        timeout=args.timeout,
        progress=True,
    )
    if args.crafted:
        with tempfile.TemporaryDirectory() as d:
            summary["crafted"] = crafted.run_crafted(
                bomb_bytes=args.bomb_bytes, scratch=Path(d), rss=True, workers=max(1, args.workers)
            )
    summary["command"] = "python experiments/fuzz_codec.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    atomic_write_json(args.json, summary)
    print(format_summary(summary))
    if "crafted" in summary:
        print(crafted.format_crafted(summary["crafted"]))
    print(f"wrote {args.json}")
    return summary


if __name__ == "__main__":
    main()
