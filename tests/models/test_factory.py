"""Tests for jaxzip/models/_factory.py."""

from __future__ import annotations

import pytest

from jaxzip import ConfigError
from jaxzip.models import MLP, MODEL_NAMES, LeNet5, SmallCNN, make_model


def test_every_name_builds():
    assert make_model("mlp", widths=(4,)) == MLP((4,))
    assert make_model("lenet_300_100", num_classes=5) == MLP((300, 100), num_classes=5)
    assert make_model("lenet5") == LeNet5()
    assert make_model("small_cnn", num_classes=3) == SmallCNN(num_classes=3)
    assert set(MODEL_NAMES) == {"mlp", "lenet_300_100", "lenet5", "small_cnn"}


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match=r"unknown model name 'vgg'.*'mlp'.*'small_cnn'"):
        make_model("vgg")
    with pytest.raises(ValueError, match="unknown model name"):
        make_model(None)


def test_unexpected_kwarg_names_it_and_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"\['widths'\].*accepts \['num_classes', 'act_quant'\]"):
        make_model("lenet5", widths=(3,))
    with pytest.raises(ConfigError, match="dropout"):
        make_model("lenet_300_100", dropout=0.5)


def test_mlp_needs_widths():
    with pytest.raises(ConfigError, match="widths"):
        make_model("mlp")


def test_bad_value_becomes_config_error():
    with pytest.raises(ConfigError, match="dropout_rate"):
        make_model("mlp", widths=(3,), dropout_rate=2.0)


def test_list_widths_from_a_config_file():
    assert make_model("mlp", widths=[1200, 1200], dropout_rate=0.5) == MLP(
        (1200, 1200), dropout_rate=0.5
    )
