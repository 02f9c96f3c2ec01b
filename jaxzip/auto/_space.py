"""The search space and the search result."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxzip import quant as jz_quant
from jaxzip._types import Params
from jaxzip.auto._common import check_bits_list, check_fraction_list
from jaxzip.auto._sensitivity import Sensitivity

__all__ = ["SearchResult", "SearchSpace", "pareto_front", "timeline"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """Per-layer choices of :func:`jaxzip.auto.search`.

    Attributes:
      sparsities: magnitude-pruning sparsities a layer may take, in ``[0, 1)``
        (kept sorted, least aggressive first; include 0 to allow a dense layer).
      bits: k-means codebook bit widths a layer may take, 1..8 (kept sorted
        from most to fewest bits). 1 bit on a pruned layer is a ternary layer:
        zero (the mask) and two shared values.
      probe_sparsities: the sparsities the sensitivity analysis probes
        (default: ``sparsities`` without 0).
      kmeans_iters: Lloyd iterations of each codebook.
      refine: after the greedy tolerance search, push single layers one notch
        further while the candidate stays feasible.
      finetune_rounds: how many times ``finetune_fn`` may be applied in a row to
        one candidate (longer fine-tuning), tried in this order by the
        refinement that spends a time budget (:func:`jaxzip.auto.search`); must
        start with 1, the length every first candidate gets.

    Example:
      >>> SearchSpace(sparsities=(0.9, 0.0), bits=(4, 8)).bits
      (8, 4)
    """

    sparsities: tuple[float, ...] = (
        0.0,
        0.5,
        0.7,
        0.8,
        0.85,
        0.9,
        0.92,
        0.94,
        0.96,
        0.97,
        0.98,
        0.99,
        0.995,
    )
    bits: tuple[int, ...] = (8, 6, 5, 4, 3, 2, 1)
    probe_sparsities: tuple[float, ...] | None = None
    kmeans_iters: int = 20
    refine: bool = True
    finetune_rounds: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "sparsities", check_fraction_list("SearchSpace.sparsities", self.sparsities)
        )
        object.__setattr__(self, "bits", check_bits_list("SearchSpace.bits", self.bits))
        if self.probe_sparsities is not None:
            probe = check_fraction_list("SearchSpace.probe_sparsities", self.probe_sparsities)
            object.__setattr__(self, "probe_sparsities", probe)
        it = self.kmeans_iters
        if isinstance(it, bool) or not isinstance(it, (int, np.integer)) or it < 0:
            raise ValueError(f"SearchSpace.kmeans_iters: expected an int >= 0, got {it!r}")
        if not isinstance(self.refine, bool):
            raise ValueError(f"SearchSpace.refine: expected a bool, got {self.refine!r}")
        rounds = self.finetune_rounds
        ok = (
            isinstance(rounds, (tuple, list))
            and len(rounds) > 0
            and all(
                not isinstance(r, bool) and isinstance(r, (int, np.integer)) and r >= 1
                for r in rounds
            )
        )
        if not ok or rounds[0] != 1 or list(rounds) != sorted(set(rounds)):
            raise ValueError(
                f"SearchSpace.finetune_rounds: expected increasing distinct ints "
                f">= 1 starting with 1, e.g. (1, 2, 4), got {rounds!r}"
            )
        object.__setattr__(self, "finetune_rounds", tuple(int(r) for r in rounds))

    @property
    def probes(self) -> tuple[float, ...]:
        """The sparsities the sensitivity analysis probes."""
        if self.probe_sparsities is not None:
            return self.probe_sparsities
        return tuple(s for s in self.sparsities if s > 0) or (0.5,)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the space (part of a journal's config)."""
        return {
            "sparsities": list(self.sparsities),
            "bits": list(self.bits),
            "probe_sparsities": list(self.probes),
            "kmeans_iters": int(self.kmeans_iters),
            "refine": self.refine,
            "finetune_rounds": list(self.finetune_rounds),
        }


def pareto_front(trials: Any) -> tuple[dict[str, Any], ...]:
    """The trials no other trial beats on both bytes (fewer) and accuracy (higher), by bytes.

    Example:
      >>> ts = [{"bytes": 10, "accuracy": 0.9}, {"bytes": 20, "accuracy": 0.8},
      ...       {"bytes": 30, "accuracy": 0.95}]
      >>> [t["bytes"] for t in pareto_front(ts)]
      [10, 30]
    """
    front: list[dict[str, Any]] = []
    for t in sorted(trials, key=lambda r: (r["bytes"], -r["accuracy"])):
        if not front or t["accuracy"] > front[-1]["accuracy"]:
            front.append(t)
    return tuple(front)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What :func:`jaxzip.auto.search` found.

    Attributes:
      feasible: whether ``best`` meets ``accuracy >= baseline - max_drop`` (plus
        ``confidence`` standard errors of its drop, see :func:`jaxzip.auto.search`; with
        a confirmation split: on validation *and* on the confirmation split).
      best: the best trial record: the smallest feasible one (with a
        confirmation split: the first, by that ranking, that also passed its
        confirmation), or when none is feasible the most accurate one. Keys: ``key``, ``sparsity`` and
        ``bits`` (per layer path), ``bytes``, ``dense_bytes``, ``ratio``,
        ``accuracy``, ``feasible``, ``layer_bytes``, ``layer_bound_bits``.
      books: the best candidate's params with :class:`jaxzip.quant.KMeansArray`
        leaves (what ``best.jz`` holds).
      baseline: ``eval_fn`` of the input params.
      max_drop: the accuracy bound used.
      trials: every candidate trial record, in order.
      pareto: the trials on the bytes–accuracy Pareto front.
      sensitivity: the per-layer sensitivity used by the greedy strategy (or None).
      layers: the searched leaves' paths.
      strategy: ``"greedy"`` or ``"optuna"``.
      stopped: why the search stopped: ``"done"`` (no time budget: the greedy
        ladder and its one-notch refinement ran to their end), ``"exhausted"``
        (a time budget was given and the refinement tried every neighbour of the
        best at every fine-tuning length without finding a smaller feasible
        one: the evidence that nothing near the best beats it),
        ``"max_trials"`` or ``"time_budget"`` (a budget was spent first).
      computed: how many trials this call computed (the rest came from the journal).
      confirmation: with a confirmation split, what it decided (see
        :func:`jaxzip.auto.search`): ``n``, ``baseline``, ``attempts`` (each
        candidate confirmed, in ranking order: key, bytes, validation and
        confirmation accuracy, drop, passed) and ``confirmed`` (a key or None);
        else None.
      timeline: the best feasible (on validation) ratio against search time:
        ``{"elapsed_s", "ratio", "bytes", "key"}`` each time it improved.
    """

    feasible: bool
    best: dict[str, Any]
    books: Params
    baseline: float
    max_drop: float
    trials: tuple[dict[str, Any], ...]
    pareto: tuple[dict[str, Any], ...]
    sensitivity: Sensitivity | None
    layers: tuple[str, ...]
    strategy: str
    stopped: str
    computed: int
    confirmation: dict[str, Any] | None = None
    timeline: tuple[dict[str, Any], ...] = ()

    @property
    def params(self) -> Params:
        """The best candidate's decoded float params."""
        return jz_quant.dequantize_params(self.books)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (everything but ``books``)."""
        return {
            "feasible": self.feasible,
            "best": self.best,
            "baseline": self.baseline,
            "max_drop": self.max_drop,
            "trials": list(self.trials),
            "pareto": [t["key"] for t in self.pareto],
            "sensitivity": None if self.sensitivity is None else self.sensitivity.to_json(),
            "layers": list(self.layers),
            "strategy": self.strategy,
            "stopped": self.stopped,
            "computed": self.computed,
            "confirmation": self.confirmation,
            "timeline": list(self.timeline),
        }


def timeline(records: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The best feasible ratio each time it improved, with the search time it took."""
    out, best = [], None
    for r in records:
        if r["feasible"] and (best is None or r["bytes"] < best):
            best = r["bytes"]
            out.append(
                {
                    "elapsed_s": r.get("elapsed_s"),
                    "ratio": r["ratio"],
                    "bytes": r["bytes"],
                    "key": r["key"],
                    "index": r["index"],
                }
            )
    return tuple(out)
