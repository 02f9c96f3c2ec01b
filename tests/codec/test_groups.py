"""Tests for jaxzip/codec/_groups.py: sparse positions coded as one symbol per group."""

import numpy as np
import pytest

from jaxzip import codec, quant
from jaxzip.codec import Encoding, FormatError
from jaxzip.codec._groups import decode_groups, group_layouts, group_symbols
from jaxzip.codec._streams import _decode_symbols_u8, _encode_symbols, decode_array, encode_array


def _n_of_m(shape, n=2, m=4, axis=0, seed=0):
    """A mask keeping ``n`` of every ``m`` consecutive elements along ``axis``."""
    rng = np.random.default_rng(seed)
    moved = list(shape)
    moved[axis], moved[-1] = moved[-1], moved[axis]
    scores = rng.random((*moved[:-1], moved[-1] // m, m))
    keep = np.argsort(scores, axis=-1) < n
    return np.swapaxes(keep.reshape(moved), axis, -1)


def _coded(mask, m, stride, coder="pack"):
    spec, data = _encode_symbols(group_symbols(mask.reshape(-1), m, stride), coder)
    return {"enc": "groups", "m": m, "stride": stride, "coder": spec}, data


@pytest.mark.parametrize("coder", ["pack", "ans", "huffman"])
@pytest.mark.parametrize(
    "shape, m, stride", [((8, 6), 4, 6), ((8, 6), 8, 6), ((3, 8), 4, 1), ((16, 2, 5), 8, 10)]
)
def test_round_trip(shape, m, stride, coder):
    mask = np.random.default_rng(m + stride).random(shape) < 0.4
    spec, data = _coded(mask, m, stride, coder)
    out = decode_groups(spec, data, mask.size, int(mask.sum()), _decode_symbols_u8)
    np.testing.assert_array_equal(out, mask.reshape(-1))


def test_hand_checked_symbols_and_layouts():
    # groups of 4 down the first axis of a (4, 2) array: column 0 keeps rows 0 and 2
    m = np.array([[1, 0], [0, 0], [1, 1], [0, 0]], bool)
    assert group_symbols(m.reshape(-1), 4, 2).tolist() == [0b0101, 0b0100]
    assert group_symbols(m.reshape(-1), 4, 1).tolist() == [0b0001, 0b0011]
    assert group_layouts((12, 8)) == [(4, 1), (4, 8), (8, 1)]
    assert group_layouts((6,)) == [] and group_layouts((0, 4)) == [] and group_layouts(()) == []


@pytest.mark.parametrize("axis", [0, 1])
def test_n_of_m_masks_are_coded_by_group_and_smaller(axis):
    mask = _n_of_m((64, 48), axis=axis)
    w = np.where(mask, np.int8(3), np.int8(0))
    spec, data = encode_array(w, None)
    assert spec["pos"]["enc"] == "groups" and spec["pos"]["m"] == 4
    assert spec["pos"]["stride"] == (48 if axis == 0 else 1)
    plain = [encode_array(w, Encoding(positions=p))[0]["pos_len"] for p in ("bitmask", "rowcol")]
    plain += [encode_array(w, Encoding(positions="gaps", gap_bits=b))[0]["pos_len"] for b in (1, 2)]
    # log2(C(4, 2)) = 2.58 bits a group of 4 against about 4 for the coders without groups
    assert spec["pos_len"] < 0.75 * min(plain)
    assert spec["pos_len"] * 8 < 3.0 * mask.size / 4  # 2.58 bits a group + ANS's table
    np.testing.assert_array_equal(decode_array(spec, data, w.dtype, w.size), w.reshape(-1))


def test_unstructured_masks_keep_the_other_coders():
    m = np.random.default_rng(1).random((40, 32)) < 0.5
    spec, _ = encode_array(np.where(m, np.float32(1.5), np.float32(0)), None)
    assert spec["enc"] == "sparse" and spec["pos"]["enc"] != "groups"


def test_a_pruned_int4_kernel_through_the_container():
    rng = np.random.default_rng(2)
    w = np.where(_n_of_m((96, 32), axis=0), rng.normal(size=(96, 32)), 0).astype(np.float32)
    tree = {"kernel": quant.quantize(w, quant.QuantSpec(bits=4, axes=(1,)))}
    data = codec.encode(tree)
    assert data == codec.encode(tree)  # deterministic
    out = codec.decode(data)
    for name in ("values", "scale"):
        np.testing.assert_array_equal(
            np.asarray(getattr(out["kernel"], name)), np.asarray(getattr(tree["kernel"], name))
        )
    leaf = codec.size_report(data).leaves[0]
    assert leaf.bytes < len(codec.encode(tree, encoding=Encoding(positions="bitmask")))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s, d: ({**s, "m": 3}, d), "bad m"),
        (lambda s, d: ({**s, "m": True}, d), "bad m"),
        (lambda s, d: ({**s, "stride": 0}, d), "bad stride"),
        (lambda s, d: ({**s, "stride": 1.0}, d), "bad stride"),
        (lambda s, d: ({**s, "stride": 10**9}, d), "bad stride"),
        (lambda s, d: ({**s, "stride": 5}, d), "does not divide"),
        (lambda s, d: ({**s, "coder": None}, d), "bad coder"),
        (lambda s, d: ({**s, "coder": {**s["coder"], "offset": 13}}, d), "outside 0..15"),
        (lambda s, d: ({**s, "coder": {**s["coder"], "offset": -1}}, d), "outside 0..15"),
        (lambda s, d: (s, d[:-1]), "packed|expected|bytes"),
    ],
)
def test_corrupt_specs_and_payloads_are_refused(change, match):
    mask = _n_of_m((16, 6), axis=0)
    spec, data = change(*_coded(mask, 4, 6))
    with pytest.raises(FormatError, match=match):
        decode_groups(spec, data, mask.size, int(mask.sum()), _decode_symbols_u8)


def test_a_count_other_than_nnz_is_refused():
    mask = _n_of_m((16, 6), axis=0)
    spec, data = _coded(mask, 4, 6)
    with pytest.raises(FormatError, match="positions, expected"):
        decode_groups(spec, data, mask.size, int(mask.sum()) - 1, _decode_symbols_u8)


def test_decoding_stays_within_the_memory_bound():
    import tracemalloc

    mask = _n_of_m((4096, 256), axis=0)
    data = codec.encode({"m": np.where(mask, np.int8(1), np.int8(0))})
    bound = codec.memory_bound(data)
    tracemalloc.start()
    out = codec.decode(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(out["m"], mask.astype(np.int8))
    assert peak <= bound + (4 << 20), (peak, bound)
