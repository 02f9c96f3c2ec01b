"""Tests for jaxzip/config/_plan.py: declared stage lists and their validation."""

from __future__ import annotations

import pytest

from jaxzip._errors import ConfigError
from jaxzip.cli import config_keys_help
from jaxzip.config import (
    STAGE_NAMES,
    DistillConfig,
    ExperimentConfig,
    ExperimentSection,
    ExportConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    stage_names,
)
from jaxzip.config._experiment import CodecConfig, KMeansConfig, PruneConfig
from jaxzip.config._plan import STAGE_SPECS
from jaxzip.pipeline import default_stages


def _cfg(stages, **sections) -> ExperimentConfig:
    return ExperimentConfig(experiment=ExperimentSection(stages=stages), **sections)


def test_kmeans_before_model_names_the_stage_position_and_fix(write_config):
    path = write_config(
        """
        [experiment]
        stages = ["data", "kmeans", "evaluate"]
        [kmeans]
        """
    )
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (
        f"{path}: experiment.stages: 'kmeans' at position 2 needs 'params', which no earlier "
        "stage provides (add 'model' before it)"
    )


@pytest.mark.parametrize(
    ("stages", "sections", "needle"),
    [
        (
            ["model"],
            {},
            "'model' at position 1 needs 'splits', which no earlier stage provides "
            "(add 'data' before it)",
        ),
        (
            ["data", "model", "prune"],
            {},
            "'prune' at position 3 needs [prune], which the config lacks (add a [prune] section)",
        ),
        (["data", "model", "train", "train"], {}, "'train' at position 4 is listed twice"),
        (["data", "model", "distill"], {}, "needs [distill]"),
        (["data", "model", "export"], {}, "needs [export]"),
        (["data", "model", "encode"], {}, "needs [codec] or [kmeans]"),
        (["data", "model", "encode"], {"codec": CodecConfig(write=False)}, "codec.write is false"),
        (["data", "evaluate"], {}, "'evaluate' at position 2 needs 'params'"),
        (
            ["data", "model", "kmeans", "train"],
            {"kmeans": KMeansConfig()},
            "'train' at position 4 would change the params after 'kmeans' at position 3 coded "
            "them (list 'train' before 'kmeans')",
        ),
    ],
)
def test_order_and_section_errors(stages, sections, needle):
    with pytest.raises(ConfigError, match=r"experiment\.stages: ") as e:
        _cfg(stages, **sections)
    assert needle in str(e.value)


def test_unknown_stage_name_is_a_field_error():
    with pytest.raises(ConfigError, match=r"experiment\.stages: expected a list of one of"):
        apply_overrides(load_config(), ['experiment.stages=["data", "sparsify"]'])


def test_override_error_names_the_set_argument():
    with pytest.raises(ConfigError, match=r"--set experiment.stages: 'train' at position 1"):
        apply_overrides(load_config(), ['experiment.stages=["train"]'])


def test_declared_list_is_used_as_given_and_round_trips(tmp_path):
    names = [
        "data",
        "model",
        "train",
        "distill",
        "prune",
        "kmeans",
        "evaluate",
        "encode",
        "export",
        "report",
    ]
    cfg = _cfg(
        names,
        distill=DistillConfig(),
        prune=PruneConfig(),
        kmeans=KMeansConfig(),
        export=ExportConfig(),
    )
    assert stage_names(cfg) == tuple(names)
    assert [s.name for s in default_stages(cfg)] == names
    assert config_to_dict(cfg)["experiment"]["stages"] == names
    from jaxzip.config import save_config

    save_config(tmp_path / "c.toml", cfg)
    assert load_config(tmp_path / "c.toml") == cfg


def test_derived_default_unchanged_and_new_sections_add_stages():
    assert stage_names(ExperimentConfig()) == ("data", "model", "train", "evaluate")
    assert load_config().experiment.stages == ()
    cfg = ExperimentConfig(distill=DistillConfig(), prune=PruneConfig(), export=ExportConfig())
    assert stage_names(cfg) == (
        "data",
        "model",
        "train",
        "distill",
        "evaluate_dense",
        "prune",
        "evaluate",
        "export",
    )
    no_write = ExperimentConfig(kmeans=KMeansConfig(), codec=CodecConfig(write=False))
    assert "encode" not in stage_names(no_write)


def test_every_name_has_a_spec_and_every_need_has_a_provider():
    assert set(STAGE_SPECS) == set(STAGE_NAMES)
    provided = {k for s in STAGE_SPECS.values() for k in s.provides}
    assert {k for s in STAGE_SPECS.values() for k in s.needs} <= provided


def test_config_help_shows_the_new_keys():
    text = config_keys_help()
    assert "stages = []" in text and '"distill"' in text
    for section in ("[distill]", "[export]"):
        assert section in text
    assert "temperature = 4.0" in text and 'file = "model.jzx"' in text


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"alpha": -0.1}, "alpha"),
        ({"epochs": 0}, "epochs"),
        ({"widths": []}, "widths"),
        ({"model": "lenet5", "dropout_rate": 0.5}, "dropout_rate"),
        ({"model": "lenet5", "input_dropout_rate": 0.2}, "input_dropout_rate"),
        ({"augment_shift": -1}, "augment_shift"),
    ],
)
def test_distill_config_bad_values(kwargs, name):
    with pytest.raises(ConfigError, match=f"^{name}: expected"):
        DistillConfig(**kwargs)


def test_export_config_bad_file_name():
    with pytest.raises(ConfigError, match=r"^file: expected"):
        ExportConfig(file="../x")
