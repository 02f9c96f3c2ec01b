import numpy as np
import pytest

from jaxzip.codec import Encoding
from jaxzip.codec._streams import decode_array, encode_array


def test_encoding_validates():
    with pytest.raises(ValueError, match="symbols"):
        Encoding(symbols="zip")
    with pytest.raises(ValueError, match="gap_bits"):
        Encoding(gap_bits=9)


def test_auto_picks_sparse_for_pruned_floats():
    x = np.zeros(1000, np.float32)
    x[::50] = 1.25
    spec, data = encode_array(x, None)
    assert spec["enc"] == "sparse" and len(data) < 0.1 * x.nbytes
    np.testing.assert_array_equal(decode_array(spec, data, x.dtype, x.size), x)


def test_negative_zero_kept():
    x = np.array([0.0, -0.0, 1.0], np.float32)
    spec, data = encode_array(x, Encoding(positions="gaps"))
    assert (
        decode_array(spec, data, x.dtype, 3).view(np.uint32).tolist() == x.view(np.uint32).tolist()
    )
