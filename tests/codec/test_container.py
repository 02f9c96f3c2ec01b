import contextlib
import json
import struct
import tracemalloc
import zlib

import hypothesis.extra.numpy as hnp
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxzip.codec import Encoding, FormatError, decode, encode, load, save
from jaxzip.codec._frame import MAX_HEADER_BYTES, frame, header_allowance, read_header
from jaxzip.quant import KMeansArray, QArray

DTYPES = [np.float32, np.float16, jnp.bfloat16, np.int8, np.uint8, np.bool_]
ENCODINGS = [None] + [
    Encoding(symbols=s, positions=p, gap_bits=g)
    for s in ("pack", "ans", "huffman")
    for p, g in (("dense", 4), ("bitmask", 4), ("gaps", 1), ("gaps", 3))
]
CFG = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bits(a):
    a = np.asarray(a)
    return a.dtype, a.shape, a.tobytes()


def _same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, (QArray, KMeansArray)):
        for f in (
            ("values", "scale", "zero_point")
            if isinstance(a, QArray)
            else ("indices", "centroids", "mask")
        ):
            assert _bits(getattr(a, f)) == _bits(getattr(b, f))
        np.testing.assert_array_equal(
            np.asarray(jnp.asarray(_deq(a))).view(np.uint8), np.asarray(_deq(b)).view(np.uint8)
        )
    elif a is None or isinstance(a, (bool, int, float)):
        assert a == b or (a != a and b != b)
    else:
        assert _bits(a) == _bits(b)


def _deq(q):
    from jaxzip.quant import dequantize

    return dequantize(q)


def _arrays(dtype):
    elems = st.integers(0, 3).map(float) if dtype == jnp.bfloat16 else None
    d = np.dtype(np.float32) if dtype == jnp.bfloat16 else np.dtype(dtype)
    return hnp.arrays(
        d, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7), elements=elems
    ).map(lambda a: a.astype(dtype))


leaf = st.one_of(
    *[_arrays(d) for d in DTYPES], st.integers(-5, 5), st.floats(allow_nan=False), st.booleans()
)
trees = st.recursive(
    leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.text("abc/_", min_size=1, max_size=3), kids, max_size=3),
    ),
    max_leaves=6,
)


@CFG
@given(tree=trees, enc=st.sampled_from(ENCODINGS))
def test_round_trip_bit_exact(tree, enc):
    _same(tree, decode(encode(tree, encoding=enc, allow_nonfinite=True)))


@pytest.mark.parametrize("enc", ENCODINGS)
def test_quantized_leaves_round_trip(enc):
    rng = np.random.default_rng(0)
    mask = rng.random((9, 5)) < 0.3
    idx = np.where(mask, rng.integers(0, 8, (9, 5)), 0).astype(np.uint8)
    k = KMeansArray(
        indices=jnp.asarray(idx), centroids=jnp.linspace(-1, 1, 8), mask=jnp.asarray(mask), bits=3
    )
    k2 = k.replace(
        indices=jnp.asarray(rng.integers(0, 8, (9, 5)).astype(np.uint8))
    )  # nonzero where masked
    q = QArray(
        values=jnp.asarray(rng.integers(-8, 8, (6, 4)).astype(np.int8)),
        scale=jnp.full((1, 4), 0.1),
        zero_point=jnp.zeros((1, 4), jnp.int32),
        bits=4,
        axes=(1,),
        dtype=np.dtype(jnp.bfloat16),
    )
    tree = {"a": [k, k2], "q": (q, None), "e": np.zeros((0, 3), np.float32), "s": np.float16(2.5)}
    _same(tree, decode(encode(tree, encoding=enc, allow_nonfinite=True)))


def test_save_load(tmp_path):
    tree = {"w": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3)}
    save(tmp_path / "m.jz", tree)
    _same(tree, load(tmp_path / "m.jz"))
    with pytest.raises(FormatError, match="directory"):
        load(tmp_path)


def test_unsupported_leaf_names_path():
    with pytest.raises(TypeError, match="a/1"):
        encode({"a": [1, "text"]})
    with pytest.raises(TypeError, match="encoding"):
        encode({}, encoding="ans")


def _sample():
    return encode(
        {"w": np.arange(20, dtype=np.int8) % 3, "f": np.linspace(0, 1, 5, dtype=np.float32)}
    )


def _refit(header: bytes, payload: bytes = b"") -> bytes:
    """A version-1 file (plain JSON header) around ``header``'s text, checksums valid."""
    return frame(header, payload, version=1)


def test_version_1_files_are_still_read_and_version_2_headers_are_deflated():
    tree = {"w": np.arange(20, dtype=np.int8) % 3, "f": np.linspace(0, 1, 5, dtype=np.float32)}
    data = encode(tree)
    header, start = read_header(data)
    assert struct.unpack_from("<H", data, 8)[0] == 2 == header["version"]
    text = json.dumps({**header, "version": 1}, separators=(",", ":")).encode()
    assert start - 20 < len(text) / 2  # the stored header is deflated
    old = _refit(text, data[start:-4])  # the same file as version 1 wrote it
    assert struct.unpack_from("<H", old, 8)[0] == 1
    _same(tree, decode(old))


def _deflated(text: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(text) + packer.flush()


def _v2(hbytes: bytes) -> bytes:
    """A version-2 file whose stored header bytes are ``hbytes`` as given, checksums valid."""
    body = b"\x89JZC\r\n\x1a\n" + struct.pack("<HHII", 2, 0, len(hbytes), zlib.crc32(hbytes))
    body += hbytes
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_bad_deflated_header_is_a_format_error():
    text = json.dumps(read_header(_sample())[0]).encode()
    with pytest.raises(FormatError, match="header is not valid deflate data"):
        decode(_v2(b"\xff" * 16))
    with pytest.raises(FormatError, match="header is not one complete deflate stream"):
        decode(_v2(_deflated(text)[:-3]))
    with pytest.raises(FormatError, match="header is not one complete deflate stream"):
        decode(_v2(_deflated(text) + b"tail"))
    bomb = _deflated(b" " * (MAX_HEADER_BYTES + 10))  # about 16 KiB that inflates to 16 MiB
    assert len(bomb) < 100_000
    with pytest.raises(
        FormatError,
        match=r"header inflates beyond 521920 bytes, the most a "
        r"16310-byte deflated header may",
    ):
        decode(_v2(bomb))
    # the allowance grows with the stored size (32x), up to 16 MiB
    assert header_allowance(100) == 256 << 10 and header_allowance(10_000) == 320_000
    assert header_allowance(10**7) == MAX_HEADER_BYTES
    tracemalloc.start()
    with pytest.raises(FormatError, match="header inflates beyond"):
        decode(_v2(bomb))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20  # never the 16 MiB the bomb holds


def test_a_header_too_compressible_for_the_reader_is_written_as_version_1(monkeypatch):
    import jaxzip.codec._frame as frame_module

    tree = {f"w{i}": np.zeros(3, np.float32) for i in range(40)}  # a very repetitive header
    monkeypatch.setattr(frame_module, "MIN_HEADER_ALLOWANCE", 16)
    monkeypatch.setattr(frame_module, "HEADER_INFLATION", 2)
    data = encode(tree)
    assert struct.unpack_from("<H", data, 8)[0] == 1 == read_header(data)[0]["version"]
    _same(tree, decode(data))


def test_bad_inputs():
    data = _sample()
    for bad in (b"", data[:10], data[:-1], b"NOTAFILE" + data[8:], data + b"\x00"):
        with pytest.raises(FormatError):
            decode(bad)
    newer = bytearray(data)
    newer[8] = 3
    with pytest.raises(FormatError, match=r"version 3 is not supported; this jaxzip reads 1\.\.2"):
        decode(bytes(newer))
    huge = (
        b'{"format":"jaxzip.codec","version":1,"tree":{"t":"leaf","i":0},"payload_length":0,'
        b'"leaves":[{"path":"w","kind":"numpy","meta":{},"components":[{"name":"value",'
        b'"dtype":"float32","shape":[1000000,1000000],"enc":{"enc":"pack","bits":0,"offset":0},'
        b'"offset":0,"length":0,"crc32":0}]}]}'
    )
    with pytest.raises(FormatError, match="bytes, over"):
        decode(_refit(huge))
    with pytest.raises(TypeError):
        decode("text")


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fuzz_only_format_error(data):
    blob = bytearray(_sample())
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
    if op == "flip":
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif op == "insert":
        i = data.draw(st.integers(0, len(blob)))
        blob[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    else:  # a header edit with valid checksums: only the schema checks stand guard
        parsed, start = read_header(bytes(blob))
        version = data.draw(st.sampled_from([1, 2]))
        header = bytearray(json.dumps({**parsed, "version": version}).encode())
        i = data.draw(st.integers(0, len(header) - 1))
        header[i] = data.draw(st.sampled_from(b'0123456789"{}[],:-ae'))
        blob = bytearray(frame(bytes(header), bytes(blob[start:-4]), version=version))
    with contextlib.suppress(FormatError):
        decode(bytes(blob))
