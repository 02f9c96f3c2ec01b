"""The run of an experiment config: ``jaxzip run``'s stages over a typed state, with their cache.

The command line ``jaxzip run CONFIG --set train.epochs=3`` is
``run_experiment(apply_overrides(load_config(CONFIG), ["train.epochs=3"]), out_dir)``
(the config functions are :mod:`jaxzip.config`'s).

Stages: ``[experiment] stages = ["data", "model", "train", "distill", "prune",
"kmeans", "evaluate", "encode", "export", "report"]`` (names from
:data:`jaxzip.config.STAGE_NAMES`) runs those stages in that order; without the key they are
derived from the sections present (:func:`jaxzip.config.stage_names`). Before anything runs,
a list whose stage needs what no earlier stage provides (``kmeans`` before
``model``: no params yet), names a stage twice, or lists a stage without its
section (``prune`` without ``[prune]``) is a ``ConfigError`` naming the stage
and its position.

Stage cache: each stage's outputs (params, masks and codebooks as ``.jz``,
reports and metrics as JSON, copies of the files it wrote) are kept in
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
from jaxzip.pipeline._core_stages import config_model
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
from jaxzip.pipeline._state import RunState

__all__ = [
    "CONFIG_FILE",
    "PARAMS_FILE",
    "PENDING_DIR",
    "RESULTS_FILE",
    "RunState",
    "Stage",
    "config_model",
    "default_stages",
    "encode_stage",
    "format_markdown",
    "format_table",
    "format_value",
    "kmeans_stage",
    "run_auto",
    "run_experiment",
]
