"""Experiment configs (TOML -> frozen, validated dataclasses) and the stage runner.

The command line ``jaxzip run CONFIG --set train.epochs=3`` is
``run_experiment(apply_overrides(load_config(CONFIG), ["train.epochs=3"]), out_dir)``.

Stages: ``[experiment] stages = ["data", "model", "train", "distill", "prune",
"kmeans", "evaluate", "encode", "export", "report"]`` (names from
:data:`STAGE_NAMES`) runs those stages in that order; without the key they are
derived from the sections present (:func:`stage_names`). Before anything runs,
a list whose stage needs what no earlier stage provides (``kmeans`` before
``model``: no params yet), names a stage twice, or lists a stage without its
section (``prune`` without ``[prune]``) is a ``ConfigError`` naming the stage
and its position.

Stage cache: each stage's outputs (params and masks as ``.npz``, codebooks as
``.jz``, reports and metrics as JSON, copies of the files it wrote) are kept in
``out_dir/stages/<NN>-<name>-<hash12>/``; the hash covers the config sections
the stage depends on, the previous stage's hash and the jaxzip version, and
``done.json`` is written last. Rerunning into the same output directory
restores every unchanged stage (``results["cached"]`` names them) and reruns
from the first stage whose inputs changed, or that did not finish.
``run_experiment(..., use_cache=False)`` runs everything. ``data`` and
``report`` always run.
"""

from jaxzip.pipeline._auto import run_auto
from jaxzip.pipeline._codec_stage import encode_stage, kmeans_stage
from jaxzip.pipeline._config import (
    CodecConfig,
    DataConfig,
    DistillConfig,
    ExperimentConfig,
    ExperimentSection,
    ExportConfig,
    KMeansConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
)
from jaxzip.pipeline._core_stages import config_model
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
from jaxzip.pipeline._names import NAMES, TOKEN_MODELS, lookup, make_model, make_optimizer, names
from jaxzip.pipeline._plan import STAGE_NAMES, stage_names
from jaxzip.pipeline._report import format_markdown, format_table, format_value
from jaxzip.pipeline._runner import (
    CONFIG_FILE,
    PARAMS_FILE,
    PENDING_DIR,
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
from jaxzip.pipeline._state import RunState

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_CONFIG_NAME",
    "NAMES",
    "PARAMS_FILE",
    "PENDING_DIR",
    "RESULTS_FILE",
    "STAGE_NAMES",
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
    "RunState",
    "Section",
    "Stage",
    "TrainConfig",
    "apply_overrides",
    "at_least",
    "below",
    "between",
    "config_from_dict",
    "config_model",
    "config_to_dict",
    "default_stages",
    "dump_config",
    "each",
    "encode_stage",
    "format_markdown",
    "format_table",
    "format_value",
    "greater_than",
    "kmeans_stage",
    "load_config",
    "lookup",
    "make_model",
    "make_optimizer",
    "matches",
    "names",
    "nonempty",
    "parse_override",
    "rules",
    "run_auto",
    "run_experiment",
    "save_config",
    "stage_names",
]
