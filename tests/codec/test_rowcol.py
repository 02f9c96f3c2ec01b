import numpy as np
import pytest

from jaxzip import codec
from jaxzip.codec import Encoding, FormatError
from jaxzip.codec._rowcol import decode_rowcol, encode_rowcol
from jaxzip.codec._streams import _decode_symbols_u8, _encode_symbols, decode_array, encode_array


def _pack(v):
    return _encode_symbols(v, "pack")


def _structured(rows, cols, seed=0):
    """A mask whose density varies by row and column, as magnitude pruning leaves them."""
    rng = np.random.default_rng(seed)
    p = np.outer(rng.beta(0.5, 3, rows), rng.beta(2, 2, cols))
    p[: rows // 5] = 0  # dead inputs (an image border)
    return rng.random((rows, cols)) < p


@pytest.mark.parametrize("g", [2, 4, 8, 16])
@pytest.mark.parametrize("shape", [(60, 40), (1, 50), (50, 1), (7, 3), (2, 300)])
def test_round_trip(shape, g):
    m = _structured(*shape, seed=g).reshape(-1)
    spec, data = encode_rowcol(m, shape[-1], g, _pack)
    out = decode_rowcol(spec, data, m.size, int(m.sum()), _decode_symbols_u8)
    np.testing.assert_array_equal(out, m)
    assert sum(spec["ones"]) == m.sum() and len(spec["ones"]) == g * g


@pytest.mark.parametrize("fill", [False, True])
def test_constant_masks_cost_no_bits(fill):
    m = np.full((30, 20), fill)
    spec, data = encode_rowcol(m.reshape(-1), 20, 4, _pack)
    # one group per axis (all counts tie): 0 bits per group symbol, and no ANS words
    assert data == b"" and spec["ones"][0] == (600 if fill else 0)
    out = decode_rowcol(spec, data, 600, int(m.sum()), _decode_symbols_u8)
    np.testing.assert_array_equal(out, m.reshape(-1))


def test_hand_checked_cells():
    # rows 0-2 keep columns 0-1 only: counts rows (2,2,2,0,0,0), cols (3,3,0,0)
    m = np.zeros((6, 4), bool)
    m[:3, :2] = True
    spec, data = encode_rowcol(m.reshape(-1), 4, 2, _pack)
    # groups: rows with 0 ones -> 0, with 2 -> 1; the same for columns; cell (1, 1) is full
    assert spec["ones"] == [0, 0, 0, 6]
    # 1-bit row groups then column groups, least significant bit first; no ANS words
    assert data == bytes([0b000111]) + bytes([0b0011])


def test_smaller_than_gaps_on_structured_masks_and_picked():
    m = _structured(300, 200)
    w = np.where(m, 1.5, 0.0).astype(np.float32)
    auto_spec, auto = encode_array(w, None)
    plain = [encode_array(w, Encoding(positions="gaps", gap_bits=b))[0] for b in range(1, 9)]
    plain.append(encode_array(w, Encoding(positions="bitmask"))[0])
    assert auto_spec["pos"]["enc"] == "rowcol"
    assert auto_spec["pos_len"] < 0.9 * min(s["pos_len"] for s in plain)
    np.testing.assert_array_equal(decode_array(auto_spec, auto, w.dtype, w.size), w.reshape(-1))


def test_iid_mask_keeps_the_plain_coders():
    # no row or column structure: grouping cannot pay for its side information
    m = np.random.default_rng(1).random((40, 30)) < 0.1
    spec, _ = encode_array(m, None)
    assert spec["pos"]["enc"] in ("gaps", "bitmask")


@pytest.mark.parametrize("shape", [(0, 4), (5,), (3, 4, 5), ()])
def test_pinned_encoding_any_shape(shape):
    x = np.zeros(shape, np.int8)
    if x.size:
        x.reshape(-1)[:: max(1, x.size // 3)] = 3
    spec, data = encode_array(x, Encoding(positions="rowcol"))
    np.testing.assert_array_equal(decode_array(spec, data, x.dtype, x.size), x.reshape(-1))


def test_deterministic_and_through_the_container():
    m = _structured(80, 50, seed=3)
    tree = {"w": np.where(m, np.float32(0.25), np.float32(0)), "mask": m}
    a, b = codec.encode(tree), codec.encode(tree)
    assert a == b
    out = codec.decode(a)
    np.testing.assert_array_equal(out["mask"], m)
    np.testing.assert_array_equal(out["w"], tree["w"])


def _coded():
    m = _structured(40, 30, seed=5).reshape(-1)
    spec, data = encode_rowcol(m, 30, 4, _pack)
    return m, spec, data


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s, d: ({**s, "cols": 7}, d), "does not divide"),
        (lambda s, d: ({**s, "cols": True}, d), "bad cols"),
        (lambda s, d: ({**s, "groups": 1}, d), "bad groups"),
        (lambda s, d: ({**s, "groups": 17}, d), "bad groups"),
        (lambda s, d: ({**s, "ones": s["ones"][:-1]}, d), "ones must be 16 ints"),
        (lambda s, d: ({**s, "ones": [*s["ones"][:-1], 1.5]}, d), "ones must be 16 ints"),
        (lambda s, d: ({**s, "ones": [10**9, *s["ones"][1:]]}, d), "do not fit"),
        (lambda s, d: ({**s, "row_len": len(d) + 1}, d), "bad row_len"),
        (lambda s, d: ({**s, "row_groups": None}, d), "bad row_groups"),
        (lambda s, d: ({**s, "row_groups": {**s["row_groups"], "offset": 20}}, d), "outside"),
        (lambda s, d: (s, d + b"\x01"), "multiple of 4"),
        (lambda s, d: (s, d + b"\x01\x00\x00\x00"), "left over|cannot decode|cell counts"),
        (lambda s, d: (s, d[:-4]), "cannot decode|cell counts|left over"),
    ],
)
def test_corrupt_specs_and_payloads_are_refused(change, match):
    m, spec, data = _coded()
    spec, data = change(spec, data)
    with pytest.raises(FormatError, match=match):
        decode_rowcol(spec, data, m.size, int(m.sum()), _decode_symbols_u8)


def test_wrong_nnz_is_refused():
    m, spec, data = _coded()
    with pytest.raises(FormatError, match="sum to"):
        decode_rowcol(spec, data, m.size, int(m.sum()) + 1, _decode_symbols_u8)


def test_flipped_ans_words_never_pass_silently():
    m, spec, data = _coded()
    head = spec["row_len"] + spec["col_len"]
    for i in range(head, len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        try:
            out = decode_rowcol(spec, bytes(bad), m.size, int(m.sum()), _decode_symbols_u8)
        except FormatError:
            continue
        # a flip that still decodes must keep every cell's count (the checked invariant)
        assert out.sum() == m.sum()


def test_decoding_stays_within_the_memory_bound():
    import tracemalloc

    # one column: a group byte per row, the worst case for the side information
    m = np.random.default_rng(0).random((1_000_000, 1)) < 0.3
    data = codec.encode({"m": m}, encoding=Encoding(positions="rowcol"))
    bound = codec.memory_bound(data)
    tracemalloc.start()
    out = codec.decode(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_array_equal(out["m"], m)
    assert peak <= bound + (4 << 20), (peak, bound)
