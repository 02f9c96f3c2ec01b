""":class:`Stage` and the named stages an experiment config can list.

A stage is a function ``(cfg, state) -> (updates, metrics)`` over the typed
:class:`RunState` plus what the runner needs to check and cache it: the
fields it needs and provides, and a
``depends(cfg)`` description of the config parts its outputs depend on (its
cache key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxzip import quant as jz_quant
from jaxzip.config import STAGE_SPECS, ExperimentConfig, config_to_dict, stage_names
from jaxzip.paths import min_ndim
from jaxzip.pipeline._cache import file_digest
from jaxzip.pipeline._codec_stage import codec_of, encode_stage, kmeans_stage
from jaxzip.pipeline._core_stages import (
    build_model,
    evaluate_splits,
    evaluate_stage,
    load_data,
    train_stage,
)
from jaxzip.pipeline._distill_stage import distill_stage
from jaxzip.pipeline._export_stage import export_files, export_stage
from jaxzip.pipeline._prune_stage import evaluate_dense, prune_stage
from jaxzip.pipeline._quantize_stage import quantize_stage
from jaxzip.pipeline._report import REPORT_FILE, report_stage
from jaxzip.pipeline._state import RunState

__all__ = ["Stage", "default_stages", "named_stage"]

StageFn = Callable[[ExperimentConfig, RunState], tuple[dict[str, Any], dict[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One named step of an experiment.

    Attributes:
      name: shown in the results table and as the key of its wall time.
      run: ``(cfg, state) -> (updates, metrics)``; ``updates`` (:class:`RunState`
        field → value) make the state later stages see, ``metrics`` (name → number)
        are reported.
      needs: state fields an earlier stage must provide (checked before running).
      provides: state fields it sets.
      depends: ``cfg -> JSON-able`` description of every config part its outputs
        depend on; ``None`` makes the stage (and every later one) uncached.
      cache: store and restore its outputs (``False``: always run, but still
        part of the key chain). A function cannot be stored: an ``apply_fn`` is
        stored as the ``arch`` the stage returns with it and rebuilt from it on
        restore; a stage returning a function without an ``arch`` is not cached.
      files: ``cfg -> names`` of the files it writes to the output directory
        (cached with it, and removed at the start of a run).
    """

    name: str
    run: StageFn
    needs: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    depends: Callable[[ExperimentConfig], Any] | None = None
    cache: bool = True
    files: Callable[[ExperimentConfig], tuple[str, ...]] | None = None


def _section(cfg: ExperimentConfig, name: str) -> Any:
    value = getattr(cfg, name)
    return None if value is None else config_to_dict(value)


def _depends_on(*names: str, seed: bool = True) -> Callable[[ExperimentConfig], Any]:
    def depends(cfg: ExperimentConfig) -> Any:
        out = {n: _section(cfg, n) for n in names}
        return {**out, "seed": cfg.experiment.seed} if seed else out

    return depends


def _model_depends(cfg: ExperimentConfig) -> Any:
    return {**_depends_on("model")(cfg), "params_from_sha256": file_digest(cfg.model.params_from)}


def _evaluate_depends(cfg: ExperimentConfig) -> Any:
    return {"eval_batch_size": cfg.train.eval_batch_size}


def _encode_depends(cfg: ExperimentConfig) -> Any:
    c = codec_of(cfg)
    return {"codec": None if c is None else config_to_dict(c)}


def _encode_files(cfg: ExperimentConfig) -> tuple[str, ...]:
    c = codec_of(cfg)
    return () if c is None else (c.file,)


def evaluate_int8(cfg: ExperimentConfig, state: RunState) -> tuple[dict[str, Any], dict[str, Any]]:
    """Stage ``evaluate_int8``: the current model's ``int8_*`` val/test metrics with int8 kernels.

    Post-training quantization, nothing retrained: every kernel (a leaf with 2 or
    more dimensions) is rounded to 8 bits per output channel (min-max scales,
    ``QuantSpec(bits=8, axes=(-1,))``) and dequantized; biases stay float. The
    state's params are left as they are.
    """
    spec = jz_quant.QuantSpec(bits=8, axes=(-1,))
    params = jz_quant.dequantize_params(
        jz_quant.quantize_params(state.params, [(min_ndim(2), spec)])
    )
    return {}, evaluate_splits(cfg, state, params, prefix="int8_")


_STAGES: dict[str, dict[str, Any]] = {
    "data": {"run": load_data, "depends": _depends_on("data"), "cache": False},
    "model": {"run": build_model, "depends": _model_depends},
    "train": {"run": train_stage, "depends": _depends_on("train")},
    "distill": {"run": distill_stage, "depends": _depends_on("distill", "train")},
    "evaluate_dense": {"run": evaluate_dense, "depends": _evaluate_depends},
    "prune": {"run": prune_stage, "depends": _depends_on("prune", "train")},
    "kmeans": {"run": kmeans_stage, "depends": _depends_on("kmeans", "train")},
    "quantize": {"run": quantize_stage, "depends": _depends_on("quantize")},
    "evaluate": {"run": evaluate_stage, "depends": _evaluate_depends},
    "evaluate_int8": {"run": evaluate_int8, "depends": _evaluate_depends},
    "encode": {"run": encode_stage, "depends": _encode_depends, "files": _encode_files},
    "export": {"run": export_stage, "depends": _depends_on("export"), "files": export_files},
    "report": {
        "run": report_stage,
        "depends": _depends_on(seed=False),
        "cache": False,  # reports this run (which stages were cached), so always rerun
        "files": lambda cfg: (REPORT_FILE,),
    },
}


def named_stage(name: str) -> Stage:
    """The :class:`Stage` a config's ``experiment.stages`` means by ``name``.

    Raises:
      ValueError: ``name`` is not one of :data:`jaxzip.config.STAGE_NAMES`.

    Example:
      >>> named_stage("prune").needs
      ('splits', 'params', 'apply_fn')
    """
    if name not in _STAGES:
        raise ValueError(f"named_stage: expected one of {sorted(_STAGES)}, got {name!r}")
    spec = STAGE_SPECS[name]
    return Stage(name, needs=spec.needs, provides=spec.provides, **_STAGES[name])


def default_stages(cfg: ExperimentConfig) -> tuple[Stage, ...]:
    """The stages :func:`run_experiment` runs for ``cfg``, in order.

    ``experiment.stages`` when the config lists them; else derived from its
    sections (:func:`jaxzip.config.stage_names`): with a ``[prune]`` or
    ``[kmeans]`` section the trained (or loaded) model is evaluated
    (``dense_*`` metrics) first, and ``evaluate`` reports the pruned and/or
    weight-shared model (decoded from its codebooks). With ``[kmeans]`` or
    ``[codec]`` (unless ``codec.write = false``), ``encode`` then writes the
    compressed file and checks that it decodes to the evaluated params.

    Example:
      >>> from jaxzip.config import ExperimentConfig
      >>> from jaxzip.config import PruneConfig
      >>> [s.name for s in default_stages(ExperimentConfig())]
      ['data', 'model', 'train', 'evaluate']
      >>> [s.name for s in default_stages(ExperimentConfig(prune=PruneConfig()))]
      ['data', 'model', 'train', 'evaluate_dense', 'prune', 'evaluate']
      >>> from jaxzip.config import KMeansConfig
      >>> [s.name for s in default_stages(ExperimentConfig(kmeans=KMeansConfig()))][3:]
      ['evaluate_dense', 'kmeans', 'evaluate', 'encode']
    """
    return tuple(named_stage(n) for n in stage_names(cfg))
