"""The typed, frozen state of a run: the one thing the stages of ``jaxzip run`` read and write."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxzip._types import Mask, Params
from jaxzip.data import Splits
from jaxzip.models import ApplyFn

__all__ = ["OUTPUTS", "RunState"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunState:
    """What a run knows after each stage; a stage returns the fields it changes.

    A stage reads fields (``state.params``) and returns ``updates`` (field name →
    new value) that the runner applies with :meth:`updated`; nothing else is
    shared between stages. A field is None until a stage provides it.

    Attributes:
      out_dir: the run's output directory.
      progress: whether stages show progress bars and epoch lines.
      results: what the runner knows so far: ``stages`` (each stage's metrics),
        ``wall_time_s`` and ``cached`` (for the ``report`` stage).
      scratch: a directory of the running stage's own (under its cache entry, so
        keyed like its outputs) for files that let it resume after a kill, e.g. a
        training checkpoint; None without the cache. Removed when the stage is stored.
      splits: the train/val/test :class:`jaxzip.data.Splits` (``data``).
      apply_fn: the current model (``model``, ``distill``).
      arch: what the current model was built from (see ``model_arch``).
      params: the current params (``model``, ``train``, ``distill``, ``prune``, ``kmeans``).
      mask: the pruning mask (``prune``, ``kmeans``).
      books: the stored form of quantized params: k-means codebooks (``kmeans``) or
        ``QArray`` kernels (``quantize``).
      history: dense training's per-epoch records (``train``).
      reports: the detailed reports for ``results.json``, by section (``"distill"``,
        ``"prune"``, ``"kmeans"``, ``"quantize"``, ``"codec"``, ``"export"``); a stage's
        reports are added to the earlier ones.

    Example:
      >>> s = RunState(out_dir=Path("out"))
      >>> s.updated({"mask": {"w": True}}).mask, s.mask
      ({'w': True}, None)
      >>> s.updated({"reports": {"a": 1}}).updated({"reports": {"b": 2}}).reports
      {'a': 1, 'b': 2}
      >>> s.updated({"masks": 1})
      Traceback (most recent call last):
      ...
      ValueError: run state: 'masks' is not a field a stage can set; the fields are ['apply_fn', 'arch', 'books', 'history', 'mask', 'params', 'reports', 'splits']
    """

    out_dir: Path
    progress: bool = True
    results: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    scratch: Path | None = None
    splits: Splits | None = None
    apply_fn: ApplyFn | None = None
    arch: Mapping[str, Any] | None = None
    params: Params | None = None
    mask: Mask | None = None
    books: Params | None = None
    history: list[dict[str, Any]] | None = None
    reports: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def updated(self, updates: Mapping[str, Any]) -> RunState:
        """A copy with ``updates`` (field → value) applied; only :data:`OUTPUTS` may be set,
        and ``reports`` are added to the earlier ones.

        Raises:
          ValueError: a name that is not one of :data:`OUTPUTS`.
        """
        for name in updates:
            if name not in OUTPUTS:
                raise ValueError(
                    f"run state: {name!r} is not a field a stage can set; "
                    f"the fields are {sorted(OUTPUTS)}"
                )
        if "reports" in updates:
            updates = {**updates, "reports": {**self.reports, **updates["reports"]}}
        return dataclasses.replace(self, **updates)


OUTPUTS: frozenset[str] = frozenset(
    f.name
    for f in dataclasses.fields(RunState)
    if f.name not in ("out_dir", "progress", "results", "scratch")
)
"""The fields of :class:`RunState` that stages provide (the runner sets the others)."""
