"""Tests for jaxzip/quant/_spec.py."""

import pytest

from jaxzip.quant import MinMax, MSEClip, Percentile, QuantSpec


@pytest.mark.parametrize(
    ("kwargs", "qmin", "qmax", "dtype"),
    [
        ({"bits": 8}, -127, 127, "int8"),
        ({"bits": 4, "signed": False}, 1, 15, "uint8"),
        ({"bits": 8, "symmetric": False}, -128, 127, "int8"),
        ({"bits": 8, "signed": False, "symmetric": False}, 0, 255, "uint8"),
        ({"bits": 1, "symmetric": False}, -1, 0, "int8"),
        ({"bits": 2}, -1, 1, "int8"),
    ],
)
def test_grid_hand_worked(kwargs, qmin, qmax, dtype):
    spec = QuantSpec(**kwargs)
    assert (spec.qmin, spec.qmax, str(spec.dtype)) == (qmin, qmax, dtype)


def test_spec_is_frozen_hashable_keyword_only():
    spec = QuantSpec(bits=4, axes=[-1])
    assert spec.axes == (-1,)
    assert hash(spec) == hash(QuantSpec(bits=4, axes=(-1,)))
    with pytest.raises(TypeError):
        QuantSpec(4)  # keyword-only
    with pytest.raises(AttributeError):
        spec.bits = 3


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"bits": 0}, ValueError, "bits must be in 1..8, got 0"),
        ({"bits": 9}, ValueError, "bits must be in 1..8, got 9"),
        ({"bits": 4.0}, TypeError, "bits must be an int"),
        ({"bits": True}, TypeError, "bits must be an int"),
        ({"bits": 1}, ValueError, "symmetric grid needs bits >= 2"),
        ({"axes": 1}, TypeError, "axes must be a tuple"),
        ({"axes": (0, 0)}, ValueError, "axes must not repeat"),
        ({"group_size": 0}, ValueError, "group_size must be a positive int"),
        ({"rounding": "up"}, ValueError, "rounding must be one of"),
        ({"signed": 1}, TypeError, "signed must be a bool"),
    ],
)
def test_spec_bad_values(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        QuantSpec(**kwargs)


def test_calibration_options_validate():
    assert MinMax() == MinMax()
    with pytest.raises(ValueError, match="percentile must be in"):
        Percentile(percentile=0)
    with pytest.raises(ValueError, match="num_ratios"):
        MSEClip(num_ratios=0)
    with pytest.raises(ValueError, match="min_ratio"):
        MSEClip(min_ratio=1.5)
