"""Which stages an experiment runs, and the check that their order can work.

Every stage name declares the run-state fields it needs and provides
(:data:`STAGE_SPECS`; :data:`STAGE_NAMES` is its keys, in order). This module
is plain data over the config (it imports no config class: the config imports
it, to check its ``stages`` list). ``[experiment] stages = [...]`` lists stages
explicitly; :func:`check_stages` rejects, before anything runs, a list whose
stage needs a key no earlier stage provides, a stage listed twice, or a stage
listed without its config section. Without the key, :func:`stage_names`
derives the list from the sections present.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxzip.config._schema import FieldError

__all__ = ["STAGE_NAMES", "STAGE_SPECS", "StageError", "StageSpec", "check_stages", "stage_names"]


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What a named stage reads from the run state, sets in it, and which sections it needs.

    Attributes:
      needs: run-state fields that an earlier stage must provide.
      provides: run-state fields it sets.
      sections: config sections of which at least one must be present (empty: none needed).
    """

    needs: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    sections: tuple[str, ...] = ()


_MODEL = ("splits", "params", "apply_fn")
STAGE_SPECS: dict[str, StageSpec] = {
    "data": StageSpec(provides=("splits",)),
    "model": StageSpec(needs=("splits",), provides=("apply_fn", "params", "arch")),
    "train": StageSpec(needs=_MODEL, provides=("params", "history")),
    "distill": StageSpec(
        needs=_MODEL,
        provides=("apply_fn", "params", "arch", "reports"),
        sections=("distill",),
    ),
    "evaluate_dense": StageSpec(needs=_MODEL),
    "prune": StageSpec(needs=_MODEL, provides=("params", "mask", "reports"), sections=("prune",)),
    "kmeans": StageSpec(
        needs=_MODEL, provides=("books", "params", "mask", "reports"), sections=("kmeans",)
    ),
    "quantize": StageSpec(
        needs=_MODEL, provides=("books", "params", "reports"), sections=("quantize",)
    ),
    "evaluate": StageSpec(needs=_MODEL),
    "evaluate_int8": StageSpec(needs=_MODEL),
    "encode": StageSpec(
        needs=("params",), provides=("reports",), sections=("codec", "kmeans", "quantize")
    ),
    "export": StageSpec(needs=_MODEL, provides=("reports",), sections=("export",)),
    "report": StageSpec(),
}
"""The needs, provides and required sections of every stage name, in the usual order."""

STAGE_NAMES: tuple[str, ...] = tuple(STAGE_SPECS)
"""The stage names ``[experiment] stages`` may list, in their usual order."""


class StageError(FieldError):
    """A stage list that cannot work; the message is ``experiment.stages: <why>``."""

    def __init__(self, why: str, given: Any) -> None:
        self.why = why
        super().__init__("experiment.stages", why, given)

    @property
    def detail(self) -> str:
        return self.why


def stage_names(cfg: Any) -> tuple[str, ...]:
    """The stage names ``cfg`` runs: ``experiment.stages`` if given, else derived from its sections.

    The derived list is ``data, model, train``, then ``distill`` (with
    ``[distill]``), ``evaluate_dense`` (with ``[prune]``, ``[kmeans]`` or ``[quantize]``),
    ``prune``, ``kmeans``, ``quantize`` (with their sections), ``evaluate``, ``encode``
    (with ``[kmeans]``, ``[quantize]`` or ``[codec]``, unless ``codec.write = false``) and
    ``export`` (with ``[export]``).

    Example:
      >>> from jaxzip.config import ExperimentConfig
      >>> stage_names(ExperimentConfig())
      ('data', 'model', 'train', 'evaluate')
    """
    if cfg.experiment.stages:
        return tuple(cfg.experiment.stages)
    names = ["data", "model", "train"]
    if cfg.distill is not None:
        names.append("distill")
    compress = [n for n in ("prune", "kmeans", "quantize") if getattr(cfg, n) is not None]
    if compress:
        names.append("evaluate_dense")
    names += [*compress, "evaluate"]
    coded = cfg.codec is not None or cfg.kmeans is not None or cfg.quantize is not None
    if coded and (cfg.codec is None or cfg.codec.write):
        names.append("encode")
    if cfg.export is not None:
        names.append("export")
    return tuple(names)


def _first_provider(key: str) -> str:
    return next(n for n in STAGE_NAMES if key in STAGE_SPECS[n].provides)


def check_stages(cfg: Any) -> None:
    """Raises :class:`StageError` if ``cfg``'s (an ``ExperimentConfig``) stage list cannot work.

    Checks, in list order: no name twice; each stage's section present
    (``[prune]`` for ``prune``; ``[codec]``, ``[kmeans]`` or ``[quantize]`` for ``encode``, and
    not with ``codec.write = false``); each key a stage needs provided by an
    earlier stage; no stage changing the params after one coded them (``books``: the file
    would not hold the model that is evaluated). Positions in messages count from 1.

    Raises:
      StageError: a ``ConfigError`` whose message names the stage and its position.

    Example:
      >>> from jaxzip.config import ExperimentConfig, ExperimentSection
      >>> ExperimentConfig(experiment=ExperimentSection(stages=["data", "kmeans"]))
      Traceback (most recent call last):
      ...
      jaxzip.config._plan.StageError: experiment.stages: 'kmeans' at position 2 needs [kmeans], which the config lacks (add a [kmeans] section)
    """
    names = cfg.experiment.stages
    given = list(names)
    provided: set[str] = set()
    coder = None  # (position, name) of the stage that made the coded weights
    for pos, name in enumerate(names, start=1):
        spec = STAGE_SPECS[name]
        if name in names[: pos - 1]:
            raise StageError(f"{name!r} at position {pos} is listed twice", given)
        if coder is not None and "params" in spec.provides and "books" not in spec.provides:
            raise StageError(
                f"{name!r} at position {pos} would change the params after {coder[1]!r} at "
                f"position {coder[0]} coded them (list {name!r} before {coder[1]!r})",
                given,
            )
        if "books" in spec.provides:
            coder = (pos, name)
        if spec.sections and all(getattr(cfg, s) is None for s in spec.sections):
            wanted = " or ".join(f"[{s}]" for s in spec.sections)
            raise StageError(
                f"{name!r} at position {pos} needs {wanted}, which the config lacks "
                f"(add a [{spec.sections[0]}] section)",
                given,
            )
        if name == "encode" and cfg.codec is not None and not cfg.codec.write:
            raise StageError(
                f"'encode' at position {pos} is listed but codec.write is false "
                "(remove one of them)",
                given,
            )
        for key in spec.needs:
            if key not in provided:
                raise StageError(
                    f"{name!r} at position {pos} needs {key!r}, which no earlier stage "
                    f"provides (add {_first_provider(key)!r} before it)",
                    given,
                )
        provided.update(spec.provides)
