"""Tests for jaxzip/config/_experiment.py: the sections, their defaults and their rules."""

from __future__ import annotations

import dataclasses
import typing

import pytest

import jaxzip as jz
from jaxzip import ConfigError
from jaxzip.config import DataConfig, ExperimentConfig, ExperimentSection, ModelConfig, TrainConfig
from jaxzip.config._experiment import DatasetName
from jaxzip.config._names import AllocationName, ModelName, OptimizerName, ScheduleName


def test_defaults_are_valid_and_hashable():
    cfg = ExperimentConfig()
    assert cfg.experiment == ExperimentSection(name="digits_small_cnn", seed=0)
    assert cfg.data == DataConfig(name="digits", data_dir="", val_fraction=0.1, download=True)
    assert cfg.model.name == "small_cnn" and cfg.train.optimizer == "adam"
    assert hash(cfg) == hash(ExperimentConfig())  # frozen dataclasses all the way down
    hints = typing.get_type_hints(ExperimentConfig)
    for section in dataclasses.fields(cfg):
        # an optional section (``X | None = None``) is checked through its class
        cls = typing.get_args(hints[section.name])[0] if section.default is None else None
        for f in dataclasses.fields(cls() if cls else section.default_factory()):
            assert f.default is not dataclasses.MISSING, f"{section.name}.{f.name} has no default"


def test_choices_come_from_the_libraries():
    assert typing.get_args(DatasetName) == jz.data.DATASETS
    assert typing.get_args(ModelName) == jz.config.names("model")
    assert typing.get_args(OptimizerName) == jz.config.names("optimizer")
    assert typing.get_args(ScheduleName) == jz.config.names("schedule")
    assert typing.get_args(AllocationName) == jz.config.names("allocation")


@pytest.mark.parametrize("name", typing.get_args(ModelName))
def test_every_model_name_builds(name):
    m = ModelConfig(name=name)
    kwargs = {"widths": m.widths, "dropout_rate": m.dropout_rate} if name == "mlp" else {}
    if name == "transformer":  # its output size is the vocabulary
        kwargs = {"vocab_size": 10, "num_layers": m.num_layers, "d_model": m.d_model}
        assert jz.config.make_model(name, **kwargs) is not None
        return
    assert jz.config.make_model(name, num_classes=10, **kwargs) is not None


@pytest.mark.parametrize(
    ("make", "key", "text"),
    [
        (lambda: ExperimentSection(name="a/b"), "name", "letters, digits"),
        (lambda: ExperimentSection(name=""), "name", "got ''"),
        (lambda: ExperimentSection(seed=-1), "seed", "in [0, 9223372036854775807]"),
        (lambda: DataConfig(name="cifar10"), "name", "one of 'digits', 'mnist'"),
        (lambda: DataConfig(val_fraction=0.0), "val_fraction", "in (0.0, 1.0)"),
        (lambda: DataConfig(val_fraction=1), "val_fraction", "in (0.0, 1.0)"),
        (lambda: DataConfig(data_dir="/x"), "data_dir", '"" for data.name "digits"'),
        (lambda: ModelConfig(widths=(0,)), "widths", "each >= 1"),
        (
            lambda: ModelConfig(dropout_rate=0.5),
            "dropout_rate",
            'only "mlp" and "transformer" have dropout',
        ),
        (lambda: ModelConfig(name="mlp", dropout_rate=1.0), "dropout_rate", "[0.0, 1.0)"),
        (
            lambda: ModelConfig(input_dropout_rate=0.2),
            "input_dropout_rate",
            'only "mlp" has dropout',
        ),
        (
            lambda: ModelConfig(name="mlp", input_dropout_rate=-0.1),
            "input_dropout_rate",
            "[0.0, 1.0)",
        ),
        (lambda: TrainConfig(epochs=-1), "epochs", "an integer >= 0"),
        (lambda: TrainConfig(batch_size=2.0), "batch_size", "an integer"),
        (lambda: TrainConfig(learning_rate=0), "learning_rate", "> 0.0"),
        (lambda: TrainConfig(optimizer="rmsprop"), "optimizer", "one of 'sgd'"),
        (lambda: TrainConfig(weight_decay=-1e-4), "weight_decay", ">= 0.0"),
        (lambda: TrainConfig(momentum=1.0), "momentum", "[0.0, 1.0)"),
        (lambda: TrainConfig(warmup_epochs=1), "warmup_epochs", '"warmup_cosine" warms up'),
        (
            lambda: TrainConfig(schedule="warmup_cosine", epochs=3, warmup_epochs=3),
            "warmup_epochs",
            "in (0, train.epochs = 3)",
        ),
        (
            lambda: TrainConfig(schedule="warmup_cosine", epochs=0, warmup_epochs=0),
            "warmup_epochs",
            'a number > 0 with train.schedule = "warmup_cosine"',
        ),
        (lambda: ExperimentConfig(train={"epochs": 3}), "train", "a table of TrainConfig"),
    ],
)
def test_bad_values(make, key, text):
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.key == key
    assert text in str(info.value)


def test_good_values_by_hand():
    t = TrainConfig(schedule="warmup_cosine", epochs=10, warmup_epochs=1, learning_rate=1)
    assert (t.warmup_epochs, t.learning_rate) == (1.0, 1.0)
    # no [train] epochs: the warm-up is the retraining stages', in their own epochs
    assert TrainConfig(schedule="warmup_cosine", epochs=0, warmup_epochs=5).warmup_epochs == 5
    m = ModelConfig(name="mlp", widths=[300, 100], dropout_rate=0.25)
    assert m.widths == (300, 100)
    assert DataConfig(name="mnist", data_dir="/data/mnist", download=False).download is False
