"""Experiment configs: TOML -> frozen, validated dataclasses, and the one name -> object table.

This is the edge where strings become objects. A config file (or ``--set``)
names a model, an optimizer, a schedule, an allocation, a quantizer or a search
strategy; :data:`NAMES` maps each name to what the library takes (linen modules, optax
transformations, allocation and strategy specs, quantization functions), and the builders of
:mod:`jaxzip.config._build` turn whole sections into them (``[train]`` into an
optax transformation, ``[model]`` into a linen module, ``experiment.seed`` into
the run's root key). :mod:`jaxzip.pipeline` runs what a config describes.

Example:
  >>> from jaxzip import config
  >>> cfg = config.apply_overrides(config.load_config(), ["train.epochs=3"])
  >>> cfg.train.epochs, config.stage_names(cfg)
  (3, ('data', 'model', 'train', 'evaluate'))
"""

from jaxzip.config._build import (
    augment_of,
    config_arch,
    flop_layers,
    make_module,
    make_train_tx,
    model_arch,
    run_key,
)
from jaxzip.config._experiment import (  # and the _sections.py sections it imports
    CodecConfig,
    DataConfig,
    DistillConfig,
    ExperimentConfig,
    ExperimentSection,
    ExportConfig,
    KMeansConfig,
    ModelConfig,
    PruneConfig,
    QuantizeConfig,
    TrainConfig,
)
from jaxzip.config._load import (
    DEFAULT_CONFIG_NAME,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    save_config,
)
from jaxzip.config._names import NAMES, TOKEN_MODELS, lookup, make_model, make_optimizer, names
from jaxzip.config._plan import STAGE_NAMES, STAGE_SPECS, StageSpec, stage_names
from jaxzip.config._schema import Check, FieldError, Section, rules, setting

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "NAMES",
    "STAGE_NAMES",
    "STAGE_SPECS",
    "TOKEN_MODELS",
    "Check",
    "CodecConfig",
    "DataConfig",
    "DistillConfig",
    "ExperimentConfig",
    "ExperimentSection",
    "ExportConfig",
    "FieldError",
    "KMeansConfig",
    "ModelConfig",
    "PruneConfig",
    "QuantizeConfig",
    "Section",
    "StageSpec",
    "TrainConfig",
    "apply_overrides",
    "augment_of",
    "config_arch",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "flop_layers",
    "load_config",
    "lookup",
    "make_model",
    "make_module",
    "make_optimizer",
    "make_train_tx",
    "model_arch",
    "names",
    "parse_override",
    "rules",
    "run_key",
    "save_config",
    "setting",
    "stage_names",
]
