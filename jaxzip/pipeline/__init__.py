"""Experiment configs (TOML -> frozen, validated dataclasses) and the stage runner.

The command line ``jaxzip run CONFIG --set train.epochs=3`` is
``run_experiment(apply_overrides(load_config(CONFIG), ["train.epochs=3"]), out_dir)``.
"""

from jaxzip.pipeline._codec_stage import encode_stage, kmeans_stage
from jaxzip.pipeline._config import (
    CodecConfig,
    DataConfig,
    ExperimentConfig,
    ExperimentSection,
    KMeansConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
)
from jaxzip.pipeline._load import (
    DEFAULT_CONFIG_NAME,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    save_config,
)
from jaxzip.pipeline._report import format_table, format_value
from jaxzip.pipeline._runner import (
    CONFIG_FILE,
    PARAMS_FILE,
    RESULTS_FILE,
    Stage,
    default_stages,
    run_experiment,
)
from jaxzip.pipeline._schema import (
    Check,
    FieldError,
    Section,
    at_least,
    below,
    between,
    each,
    greater_than,
    matches,
    nonempty,
    rules,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_CONFIG_NAME",
    "PARAMS_FILE",
    "RESULTS_FILE",
    "Check",
    "CodecConfig",
    "DataConfig",
    "ExperimentConfig",
    "ExperimentSection",
    "FieldError",
    "KMeansConfig",
    "ModelConfig",
    "PruneConfig",
    "Section",
    "Stage",
    "TrainConfig",
    "apply_overrides",
    "at_least",
    "below",
    "between",
    "config_from_dict",
    "config_to_dict",
    "default_stages",
    "dump_config",
    "each",
    "encode_stage",
    "format_table",
    "format_value",
    "greater_than",
    "kmeans_stage",
    "load_config",
    "matches",
    "nonempty",
    "parse_override",
    "rules",
    "run_experiment",
    "save_config",
]
