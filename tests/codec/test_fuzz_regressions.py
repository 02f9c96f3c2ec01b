"""Regression tests for decoder bugs found by experiments/fuzz_codec.py (checksums recomputed)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from jaxzip import codec
from jaxzip.codec._container import MAX_EXPANSION, MIN_DECODED_BYTES
from jaxzip.codec._frame import frame, read_header


def _edit(data: bytes, fn) -> bytes:
    """Applies ``fn`` to the parsed header and re-frames the file with valid checksums."""
    header, start = read_header(data)
    fn(header)
    return frame(header, data[start:-4], version=header["version"])


def test_unhashable_dtype_is_a_format_error():
    data = codec.encode({"w": np.arange(3, dtype=np.float32)})

    def fn(h):
        h["leaves"][0]["components"][0]["dtype"] = {"x": 1}

    with pytest.raises(codec.FormatError, match="w/value: malformed component"):
        codec.decode(_edit(data, fn))


@pytest.mark.parametrize("shape", [[2**24], [2**16, 2**16]])
def test_huge_declared_constant_stream_is_refused_without_allocating(shape):
    # a 0-byte constant stream (pack, 0 bits) can declare any number of elements
    data = codec.encode({"w": np.zeros(8, np.int8)})

    def fn(h):
        h["leaves"][0]["components"][0]["shape"] = shape

    bad = _edit(data, fn)
    tracemalloc.start()
    try:
        with pytest.raises(codec.FormatError, match=r"w/value: the arrays declare \d+ bytes"):
            codec.decode(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * len(bad) + (1 << 16)


def test_budget_allows_highly_compressed_real_files():
    # all-zero arrays up to the floor decode, as do files within MAX_EXPANSION
    tree = {"w": np.zeros(MIN_DECODED_BYTES // 4, np.float32)}
    out = codec.decode(codec.encode(tree))
    assert out["w"].shape == tree["w"].shape and not out["w"].any()
    too_big = {"w": np.zeros(MIN_DECODED_BYTES // 4 + 1, np.float32)}
    data = codec.encode(too_big)
    assert MAX_EXPANSION * len(data) < MIN_DECODED_BYTES
    with pytest.raises(codec.FormatError, match="cap"):
        codec.decode(data)


CASES = [
    ([-128, 127, 0, -1], np.int8),
    ([0, 255, 254], np.uint8),
    ([2**64 - 1, 2**64 - 2, 2**64 - 200], np.uint64),
    ([-(2**63), -(2**63) + 5], np.int64),
    ([True, True], np.bool_),
    ([False, True], np.bool_),
]


def test_symbol_streams_decode_exactly_at_dtype_limits():
    # the decoder adds the offset in the target dtype (modulo 2**bits), not via int64;
    # uint64 values above int64's range used to encode to an undecodable stream
    for values, dtype in CASES:
        x = np.array(values, dtype)
        for symbols in ("pack", "ans", "huffman"):
            enc = codec.Encoding(symbols=symbols)
            out = codec.decode(codec.encode({"x": x}, encoding=enc))["x"]
            assert out.dtype == x.dtype and out.tolist() == x.tolist(), (values, symbols)


def test_offset_pushing_values_out_of_range_is_a_format_error():
    data = codec.encode(
        {"x": np.array([0, 1, 2], np.int8)}, encoding=codec.Encoding(symbols="pack")
    )

    def fn(h):
        h["leaves"][0]["components"][0]["enc"]["offset"] = 126

    with pytest.raises(codec.FormatError, match="out of range for int8"):
        codec.decode(_edit(data, fn))


# ---- issue 19: crafted files with every checksum recomputed ----


def _bomb(n: int, dtype: str = "int8") -> bytes:
    """A small file whose constant stream (0 bytes on disk) declares ``n`` elements of 1."""
    data = codec.encode({"w": np.zeros(8, np.int8), "f": np.linspace(0, 1, 64, dtype=np.float32)})

    def fn(h):
        c = h["leaves"][1]["components"][0] if h["leaves"][0]["path"] == "f" else None
        c = c or h["leaves"][0]["components"][0]
        c.update(dtype=dtype, shape=[n], enc={"enc": "pack", "bits": 0, "offset": 1})

    return _edit(data, fn)


def test_size_report_stays_within_the_decode_bound():
    # defect 2: the entropy bound widened the decoded array to int64 (~34 bytes per
    # declared element); the report now needs the largest leaf and a 256 KiB chunk at most
    budget = MIN_DECODED_BYTES
    bad = _bomb(budget - 4096)
    assert MAX_EXPANSION * len(bad) < budget
    tracemalloc.start()
    try:
        report = codec.size_report(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.leaves[0].size == budget - 4096 and report.leaves[0].bound_bits == 0.0
    assert peak <= budget + (512 << 10), peak


def test_size_report_bound_matches_the_direct_computation():
    # the chunked bound equals the formula on a hand-worked case: 4 int8 values, 2 nonzero
    x = np.array([0, 3, 0, 3], np.int8)
    dense = 4.0  # H([2, 2]) * 4 = 1 bit each
    sparse = np.log2(6) + 0.0  # C(4, 2) positions, one distinct nonzero value
    got = codec.size_report({"x": x}).leaves[0].bound_bits
    assert got == pytest.approx(min(dense, sparse))


def _kmeans_file():
    from jaxzip.quant import KMeansArray

    mask = np.array([[True, False, True], [False, True, True]])
    idx = np.where(mask, np.array([[1, 0, 2], [0, 3, 1]]), 0).astype(np.uint8)
    k = KMeansArray(
        indices=idx, centroids=np.linspace(-1, 1, 4, dtype=np.float32), mask=mask, bits=2
    )
    return codec.encode({"k": k})


def _set_meta(**kw):
    def fn(h):
        h["leaves"][0]["meta"].update(kw)

    return fn


def _set_comp(name, **kw):
    def fn(h):
        (c,) = [c for c in h["leaves"][0]["components"] if c["name"] == name]
        c.update(kw)

    return fn


@pytest.mark.parametrize(
    ("fn", "needle"),
    [
        (_set_meta(masked=False), "indices"),  # 4 stored indices read as the full (2, 3) array
        (_set_meta(dtype="int8"), "dtype"),  # would decode to all-zero int8 weights
        (_set_meta(bits=3), "bits"),  # 4 centroids are not a 3-bit codebook
        (_set_meta(bits=9), "bits"),
        (_set_comp("centroids", shape=[2, 2]), "centroids"),
    ],
)
def test_inconsistent_kmeans_leaf_is_refused(fn, needle):
    assert codec.decode(_kmeans_file())["k"].bits == 2
    with pytest.raises(codec.FormatError, match=f"k: .*{needle}"):
        codec.decode(_edit(_kmeans_file(), fn))


def test_kmeans_index_past_the_codebook_is_refused():
    from jaxzip.quant import KMeansArray

    k = KMeansArray(
        indices=np.array([0, 5], np.uint8),
        centroids=np.zeros(4, np.float32),
        mask=np.array([True, True]),
        bits=2,
    )
    with pytest.raises(codec.FormatError, match=r"k: .*index"):
        codec.decode(codec.encode({"k": k}))


def _qarray_file():
    from jaxzip.quant import QuantSpec, quantize

    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    return codec.encode({"q": quantize(x, QuantSpec(bits=4, axes=(1,)))})


@pytest.mark.parametrize(
    ("fn", "needle"),
    [
        (_set_meta(axes=[0]), "scale"),  # scale (1, 6) does not fit per-row axes
        (_set_meta(axes=[5]), "axes"),
        (_set_meta(bits=2), "bits"),  # 4-bit values do not fit 2 bits
        (_set_meta(dtype="int32"), "dtype"),
        (_set_meta(group_size=2, group_axis=None), "group"),
        (_set_comp("scale", dtype="int32"), "scale"),  # same bytes read as integer steps
    ],
)
def test_inconsistent_qarray_leaf_is_refused(fn, needle):
    codec.decode(_qarray_file())
    with pytest.raises(codec.FormatError, match=f"q: .*{needle}"):
        codec.decode(_edit(_qarray_file(), fn))


def test_duplicate_dict_keys_are_refused():
    # defect 7c: {"a": x, "a": y} silently dropped a leaf
    data = codec.encode({"a": np.zeros(2, np.float32), "b": np.ones(2, np.float32)})

    def fn(h):
        h["tree"]["k"] = ["a", "a"]
        h["leaves"][1]["path"] = "a"

    with pytest.raises(codec.FormatError, match="duplicate key 'a'"):
        codec.decode(_edit(data, fn))


@pytest.mark.parametrize("indices", [[0, 0], [1, 0]])
def test_leaf_indices_must_be_used_once_in_order(indices):
    data = codec.encode([np.zeros(2, np.float32), np.ones(2, np.float32)])

    def fn(h):
        for node, i in zip(h["tree"]["c"], indices, strict=True):
            node["i"] = i

    with pytest.raises(codec.FormatError, match="leaf"):
        codec.decode(_edit(data, fn))


def test_leaf_path_must_match_its_place_in_the_tree():
    data = codec.encode({"a": np.zeros(2, np.float32)})

    def fn(h):
        h["leaves"][0]["path"] = "b"

    with pytest.raises(codec.FormatError, match="path 'b'"):
        codec.decode(_edit(data, fn))


def test_every_quantizer_output_still_decodes():
    # the leaf checks must accept every valid QArray / KMeansArray the library makes
    import jax.numpy as jnp

    from jaxzip.quant import QuantSpec, binarize, kmeans, quantize, ternarize

    x = jnp.linspace(-1, 1, 96, dtype=jnp.float32).reshape(8, 12)
    layouts = ({"axes": ()}, {"axes": (1,)}, {"axes": (1,), "group_size": 4, "group_axis": 0})
    specs = [
        QuantSpec(bits=b, symmetric=s, signed=g, **lay)
        for b in (2, 4, 8)
        for s, g in ((True, True), (False, True), (False, False))
        for lay in layouts
    ]
    leaves = [quantize(x, s) for s in specs]
    leaves += [binarize(x), binarize(x, axes=(1,)), ternarize(x), kmeans(x, bits=3, iters=2)]
    leaves += [kmeans(x, bits=2, mask=x > 0, iters=2), kmeans(x.astype(jnp.bfloat16), bits=1)]
    out = codec.decode(codec.encode(leaves))
    for a, b in zip(leaves, out, strict=True):
        assert type(a) is type(b) and a.bits == b.bits
