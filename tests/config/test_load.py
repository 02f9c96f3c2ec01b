"""Tests for jaxzip/config/_load.py: TOML files, --set overrides, and the resolved config."""

from __future__ import annotations

import dataclasses

import hypothesis
import pytest
from hypothesis import strategies as st

import jaxzip as jz
from jaxzip import ConfigError
from jaxzip.config import (
    DataConfig,
    ExperimentConfig,
    ExperimentSection,
    ModelConfig,
    Section,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    rules,
    save_config,
)
from jaxzip.config._schema import at_least


def test_load_file_states_only_what_differs(write_config):
    path = write_config(
        """
        [experiment]
        name = "mlp_try"

        [model]
        name = "mlp"
        widths = [32, 16]

        [train]
        epochs = 3
        learning_rate = 1   # an int where a float is expected is fine
        """
    )
    cfg = load_config(path)
    expected = ExperimentConfig(
        experiment=ExperimentSection(name="mlp_try"),
        model=ModelConfig(name="mlp", widths=(32, 16)),
        train=TrainConfig(epochs=3, learning_rate=1.0),
    )
    assert cfg == expected
    assert type(cfg.train.learning_rate) is float


def test_empty_file_gives_defaults(write_config):
    assert load_config(write_config("")) == ExperimentConfig()


def test_packaged_default_loads_and_is_quick_digits_job():
    cfg = load_config()  # via importlib.resources, independent of the working directory
    assert cfg.data.name == "digits"
    assert cfg.model.name in ("small_cnn", "mlp")
    assert cfg.train.epochs <= 50


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[trian]\nepochs = 3\n", ["[trian]", "unknown section", "did you mean [train]?"]),
        ("[train]\nepoch = 3\n", ["train.epoch", "unknown key", "did you mean train.epochs?"]),
        ("epochs = 3\n", ["epochs", "did you mean 'epochs' under [train]?"]),
        ("[train]\nepochs = 'ten'\n", ["train.epochs", "expected an integer", "'ten'"]),
        ("[train]\nepochs = true\n", ["train.epochs", "expected an integer", "True (a boolean)"]),
        ("[train]\nepochs = 0\n", ["train.epochs", "expected an integer >= 1", "got 0"]),
        ("[data]\nval_fraction = 1.5\n", ["data.val_fraction", "in (0.0, 1.0)", "1.5"]),
        ("[model]\nwidths = 64\n", ["model.widths", "a list of integers", "got 64"]),
        ("train = 3\n", ["train", "expected a table [train]", "got 3"]),
        ("[train\nepochs = 3\n", ["invalid TOML", "line 1"]),
        ("[train]\nepochs = 3\nepochs = 4\n", ["invalid TOML"]),
    ],
)
def test_bad_files_name_file_and_key(write_config, text, needles):
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="got a directory"):
        load_config(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[train]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "bin.toml")


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.epochs=3", "train.epochs", 3),
        ("train.learning_rate=1e-3", "train.learning_rate", 1e-3),
        ("data.download=false", "data.download", False),
        ("model.widths=[300, 100]", "model.widths", [300, 100]),
        ('model.name="mlp"', "model.name", "mlp"),
        ("model.name=mlp", "model.name", "mlp"),  # not TOML: a bare string
        ("data.data_dir=/data/my mnist", "data.data_dir", "/data/my mnist"),
        ("data.data_dir=", "data.data_dir", ""),
        ("experiment.name=x\ny = 1", "experiment.name", "x\ny = 1"),  # no smuggled keys
        (" train.epochs =5", "train.epochs", 5),
    ],
)
def test_parse_override(text, key, value):
    assert jz.config.parse_override(text) == (key, value)


@pytest.mark.parametrize("text", ["epochs=3", "train.epochs", "train.=3", ".epochs=3", "=3"])
def test_parse_override_malformed(text):
    with pytest.raises(ConfigError, match=r"expected SECTION\.KEY=VALUE"):
        jz.config.parse_override(text)


def test_apply_overrides_good():
    base = load_config()
    cfg = apply_overrides(base, ["train.epochs=3", "model.name=mlp", "model.widths=[8]"])
    assert cfg.train.epochs == 3 and cfg.model == ModelConfig(name="mlp", widths=(8,))
    assert apply_overrides(cfg, ["train.epochs=4", "train.epochs=5"]).train.epochs == 5
    assert apply_overrides(base, []) == base
    assert base.train.epochs != 3  # the input is untouched
    # Overrides are validated together, so their order does not matter:
    both = ["train.warmup_epochs=1", "train.schedule=warmup_cosine"]
    assert apply_overrides(base, both).train.schedule == "warmup_cosine"


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("train.epochs=0", ["--set train.epochs: expected an integer >= 1, got 0"]),
        ("train.epochs=true", ["--set train.epochs: expected an integer", "True"]),
        ("train.epochs=three", ["--set train.epochs:", "'three' (a string)"]),
        ("train.epocs=3", ["--set train.epocs: unknown key", "did you mean train.epochs?"]),
        ("trian.epochs=3", ["--set trian.epochs: unknown section [trian]", "[train]?"]),
        ("train.epochs.x=1", ["--set train.epochs.x: train.epochs is a value, not a section"]),
        ("model.name=resnet", ["--set model.name: expected one of", "'resnet'"]),
        ("epochs=3", ["expected SECTION.KEY=VALUE"]),
    ],
)
def test_apply_overrides_bad(override, needles):
    with pytest.raises(ConfigError) as info:
        apply_overrides(load_config(), [override])
    for needle in needles:
        assert needle in str(info.value)


def test_resolved_config_round_trip(tmp_path):
    cfg = apply_overrides(
        load_config(),
        [
            "experiment.seed=7",
            "model.name=mlp",
            "model.widths=[48, 24]",
            "model.dropout_rate=0.1",
            "train.learning_rate=3.3e-4",
            "train.schedule=warmup_cosine",
            "train.warmup_epochs=0.5",
            "data.val_fraction=0.2",
        ],
    )
    save_config(tmp_path / "config.toml", cfg)
    assert load_config(tmp_path / "config.toml") == cfg
    text = jz.config.dump_config(cfg)
    assert "widths = [" in text and "seed = 7" in text
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_to_dict(cfg)["model"]["widths"] == [48, 24]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _PruneDemo(Section):
    sparsity: float = dataclasses.field(default=0.5, metadata=rules(at_least(0.0)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ExtendedConfig(Section):
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    prune: _PruneDemo | None = None


def test_a_new_section_needs_no_loader_change():
    absent = config_from_dict({}, cls=_ExtendedConfig)
    assert absent.prune is None and "prune" not in config_to_dict(absent)
    cfg = config_from_dict({"prune": {"sparsity": 0.9}}, cls=_ExtendedConfig)
    assert cfg.prune == _PruneDemo(sparsity=0.9)
    assert config_from_dict(config_to_dict(cfg), cls=_ExtendedConfig) == cfg
    with pytest.raises(ConfigError, match=r"x\.toml: prune\.sparsity: expected a number >= 0"):
        config_from_dict({"prune": {"sparsity": -1}}, cls=_ExtendedConfig, source="x.toml")
    with pytest.raises(ConfigError, match=r"did you mean prune\.sparsity"):
        config_from_dict({"prune": {"sparsty": 1}}, cls=_ExtendedConfig)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31),
    epochs=st.integers(1, 10_000),
    lr=st.floats(1e-9, 10.0, allow_nan=False, allow_infinity=False),
    val=st.floats(1e-6, 0.999, allow_nan=False),
    widths=st.lists(st.integers(1, 4096), min_size=1, max_size=4),
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    data_dir=st.text(max_size=20),
)
def test_round_trip_property(tmp_path_factory, seed, epochs, lr, val, widths, name, data_dir):
    cfg = ExperimentConfig(
        experiment=ExperimentSection(name=name, seed=seed),
        data=DataConfig(name="mnist", val_fraction=val, data_dir=data_dir),
        model=ModelConfig(name="mlp", widths=tuple(widths)),
        train=TrainConfig(epochs=epochs, learning_rate=lr),
    )
    path = tmp_path_factory.mktemp("rt") / "config.toml"
    save_config(path, cfg)
    assert load_config(path) == cfg
