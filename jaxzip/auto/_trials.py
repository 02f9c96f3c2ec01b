"""Runs and journals trials: each finished trial is recorded before the next starts."""

from __future__ import annotations

import dataclasses
import inspect
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import codec as jz_codec
from jaxzip import prune as jz_prune
from jaxzip import quant as jz_quant
from jaxzip._io import atomic_write_bytes, atomic_write_json
from jaxzip._keys import named_key
from jaxzip._types import Mask, Params
from jaxzip.auto._common import (
    EvalFn,
    check_score,
    decode,
    layer_mask,
    settings_key,
    share_weights,
)
from jaxzip.auto._journal import Journal
from jaxzip.auto._sensitivity import probe
from jaxzip.paths import leaves_with_paths

__all__ = [
    "BEST_FILE",
    "BEST_JSON",
    "BudgetExhausted",
    "Build",
    "Trials",
    "build_candidate",
    "by_size",
    "takes_rounds",
]  # fmt: skip

BEST_FILE = "best.jz"
BEST_JSON = "best.json"

FinetuneFn = Callable[..., Params]
"""``finetune_fn(params, mask, *, key[, rounds]) -> params``: short training that keeps the
mask; with a ``rounds`` keyword it is asked for ``rounds`` times its usual length."""

PruneFn = Callable[..., Params]
"""``prune_fn(params, sparsity, *, key, rounds) -> params``: training from the baseline that
prunes as it goes (e.g. gradual magnitude pruning) to ``sparsity[path]`` per searched layer;
the zeros of each layer it returns are that layer's mask."""

CodebookFn = Callable[..., Params]
"""``codebook_fn(books, *, key) -> books``: fine-tunes the centroids (and float leaves) of the
shared weights, indices fixed (e.g. :func:`jaxzip.quant.make_codebook_step`)."""


@dataclasses.dataclass(frozen=True)
class Build:
    """How :func:`build_candidate` makes a candidate from the baseline: its training hooks.

    Attributes:
      finetune_fn: training after one-shot magnitude pruning that keeps the mask.
      prune_fn: training that prunes as it goes; replaces one-shot pruning and ``finetune_fn``.
      codebook_fn: fine-tuning of the k-means centroids after weight sharing.
      iters: Lloyd iterations of each codebook.
    """

    finetune_fn: FinetuneFn | None = None
    prune_fn: PruneFn | None = None
    codebook_fn: CodebookFn | None = None
    iters: int = 20

    def describe(self) -> dict[str, bool]:
        """Which hooks are set (part of a journal's config: they change every result)."""
        return {"finetune": self.finetune_fn is not None, "prune_fn": self.prune_fn is not None,
                "codebook_fn": self.codebook_fn is not None}  # fmt: skip


def takes_rounds(finetune_fn: Callable[..., Any]) -> bool:
    """Whether ``finetune_fn`` accepts a ``rounds`` keyword (one longer fine-tuning)."""
    try:
        sig = inspect.signature(finetune_fn)
    except (TypeError, ValueError):
        return False
    p = sig.parameters.get("rounds")
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


class BudgetExhausted(Exception):
    """Raised between trials when the time or trial budget is spent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _same_structure(what: str, got: Params, want: Params) -> None:
    if jax.tree.structure(got) != jax.tree.structure(want):
        raise ValueError(f"{what}: must return params of the input's structure "
                         f"{jax.tree.structure(want)}, got {jax.tree.structure(got)}")  # fmt: skip


def _pruned_by(params: Params, sparsity: Mapping[str, float]) -> Mask:
    """The mask ``prune_fn``'s result carries (its nonzeros), checked against the targets."""
    mask = jax.tree.map(lambda x: jnp.asarray(x) != 0, params)
    for path, m in leaves_with_paths(mask):
        if path in sparsity:
            n = int(np.size(m))
            zeros = n - int(jnp.count_nonzero(m))
            want = int(np.floor(float(sparsity[path]) * n))
            if zeros < want - max(1, n // 1000):
                raise ValueError(f"prune_fn: must prune {path} to sparsity {sparsity[path]:g} "
                                 f"({want} of {n} weights zero), got {zeros} zeros")  # fmt: skip
    return mask


def _kinds(books: Params) -> tuple[Any, list[bool]]:
    leaves, treedef = jax.tree.flatten(books, is_leaf=jz_quant.is_quantized)
    return treedef, [jz_quant.is_quantized(x) for x in leaves]


def build_candidate(
    params: Params,
    sparsity: Mapping[str, float],
    bits: Mapping[str, int],
    *,
    build: Build,
    key: jax.Array,
    rounds: int = 1,
) -> Params:
    """prune (one-shot + ``finetune_fn``, or ``prune_fn``) → k-means per layer → ``codebook_fn``.

    One-shot: each layer is pruned by magnitude, then ``finetune_fn`` trains
    with the mask kept. Longer fine-tuning (``rounds > 1``): a ``finetune_fn``
    that takes a ``rounds`` keyword is called once with it (e.g. to run one
    schedule ``rounds`` times as long); any other is applied ``rounds`` times
    in a row, round 0 with ``key`` and round ``i`` with ``named_key(key, f"round{i}")``.
    With ``build.prune_fn``, it is called once with the baseline, the sparsities
    and ``rounds`` instead, and each layer's zeros in its result are the mask.
    ``build.codebook_fn`` then fine-tunes the codebooks with ``named_key(key, "codebook")``.

    Returns the params with :class:`jaxzip.quant.KMeansArray` leaves for the layers.
    """
    if build.prune_fn is not None:
        pruned = build.prune_fn(params, dict(sparsity), key=key, rounds=rounds)
        _same_structure("prune_fn", pruned, params)
        mask = _pruned_by(pruned, sparsity)
    else:
        mask = layer_mask(params, sparsity)
        pruned = jz_prune.apply_mask(params, mask)
    if build.prune_fn is None and build.finetune_fn is not None:
        once = rounds > 1 and takes_rounds(build.finetune_fn)
        extra = {"rounds": rounds} if once else {}
        for i in range(1 if once else rounds):
            k = key if i == 0 else named_key(key, f"round{i}")
            tuned = build.finetune_fn(pruned, mask, key=k, **extra)
            _same_structure("finetune_fn", tuned, params)
            pruned = jz_prune.apply_mask(tuned, mask)
    books = share_weights(pruned, bits, mask, iters=build.iters)
    if build.codebook_fn is not None:
        tuned = build.codebook_fn(books, key=named_key(key, "codebook"))
        if _kinds(tuned) != _kinds(books):
            raise ValueError("codebook_fn: must return books of the input's structure (a "
                             "KMeansArray wherever the input has one)")  # fmt: skip
        books = tuned
    return books


def by_size(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ranking of feasible candidates: smallest file, then most accurate, then first tried."""
    return (rec["bytes"], -rec["accuracy"], rec["index"])


def _pick_best(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    feasible = [r for r in records if r["feasible"]]
    if feasible:
        return min(feasible, key=by_size)
    if records:
        return min(records, key=lambda r: (-r["accuracy"], r["bytes"], r["index"]))
    return None


class Trials:
    """Evaluates baseline, probes and candidates, each at most once (journal first)."""

    def __init__(self, params: Params, *, eval_fn: EvalFn, build: Build,
                 layers: tuple[str, ...], key: jax.Array, max_drop: float,
                 journal: Journal | None, out_dir: Path | None, time_budget_s: float | None,
                 max_trials: int | None, bar: Any = None,
                 confirm_fn: EvalFn | None = None) -> None:  # fmt: skip
        self.params, self.eval_fn, self.build = params, eval_fn, build
        self.confirm_fn = confirm_fn
        # search time: continued across resumes from the latest time the journal holds
        self.t0 = time.monotonic()
        done = journal.records if journal is not None else ()
        self.offset = max((float(r.get("elapsed_s", 0.0)) for r in done), default=0.0)
        self.layers, self.iters, self.key, self.max_drop = layers, build.iters, key, max_drop
        self.journal, self.out_dir, self.bar = journal, out_dir, bar
        self.max_trials = max_trials
        self.memo: dict[str, dict[str, Any]] = {}
        self.candidates: list[dict[str, Any]] = []
        self.books: dict[str, Params] = {}  # key -> books computed by this process
        self.computed = 0
        self.sensitivity: Any = None  # set by the greedy strategy
        self.dense_bytes = 4 * int(sum(np.size(x) for x in jax.tree.leaves(params)))
        self.deadline = None  # the baseline is always measured
        start = time.monotonic()
        self.baseline = float(self._record({"kind": "baseline"}, self._eval_baseline)["accuracy"])
        self.deadline = None if time_budget_s is None else start + time_budget_s

    # -- bookkeeping -------------------------------------------------------------------------
    def _check_time(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise BudgetExhausted("time_budget")

    def fits(self, rounds: int, count: int = 1) -> bool:
        """Whether ``count`` candidates at ``rounds`` are expected to end within the time budget.

        The estimate is the median of the computed candidates' seconds per
        round (each record's ``seconds`` over its ``rounds``); True without a
        deadline or before any candidate has been timed.
        """
        if self.deadline is None:
            return True
        per_round = [r["seconds"] / r.get("rounds", 1) for r in self.candidates if "seconds" in r]
        if not per_round:
            return True
        need = float(np.median(per_round)) * rounds * count
        return time.monotonic() + need <= self.deadline

    def elapsed(self) -> float:
        """Search seconds: this process's, plus those of the runs the journal continues."""
        return self.offset + time.monotonic() - self.t0

    def _record(self, settings: dict[str, Any], compute: Callable[[], dict[str, Any]],
                on_new: Callable[[dict[str, Any]], None] | None = None, *,
                timed: bool = True) -> dict[str, Any]:  # fmt: skip
        key = settings_key(settings)
        if key in self.memo:
            return self.memo[key]
        rec = self.journal.get(key) if self.journal is not None else None
        if rec is None:
            if timed:
                self._check_time()
            rec = {"key": key, **settings, **compute()}
            rec["elapsed_s"] = round(self.elapsed(), 3)
            rec = json.loads(json.dumps(rec))  # the same JSON types as a replayed record
            if on_new is not None:
                on_new(rec)
            if self.journal is not None:
                self.journal.append(rec)
        self.memo[key] = rec
        return rec

    def _eval(self, params: Params, what: str) -> float:
        return check_score(self.eval_fn(params), f"eval_fn (on {what})")

    def _eval_baseline(self) -> dict[str, Any]:
        return {"accuracy": self._eval(self.params, "the input params"),
                "dense_bytes": self.dense_bytes}  # fmt: skip

    # -- probes ------------------------------------------------------------------------------
    def probe(self, path: str, *, sparsity: float = 0.0, bits: int | None = None) -> float:
        """Accuracy with ``path`` alone pruned to ``sparsity`` or shared at ``bits``."""
        if bits is None and sparsity == 0:
            return self.baseline
        settings = {"kind": "probe", "path": path, "sparsity": sparsity, "bits": bits}

        def compute() -> dict[str, Any]:
            p = probe(self.params, path, sparsity=sparsity, bits=bits, iters=self.iters)
            return {"accuracy": self._eval(p, f"{path} at sparsity {sparsity}, bits {bits}")}

        return float(self._record(settings, compute)["accuracy"])

    # -- candidates --------------------------------------------------------------------------
    def candidate(self, sparsity: Mapping[str, float], bits: Mapping[str, int],
                  rounds: int = 1) -> dict[str, Any]:  # fmt: skip
        """The record of one candidate (computed, or replayed from the journal).

        ``rounds``: how many times ``finetune_fn`` is applied (longer fine-tuning);
        1 is left out of the settings, so its key is that of the plain candidate.
        """
        settings = {"kind": "candidate",
                    "sparsity": {p: float(sparsity[p]) for p in self.layers},
                    "bits": {p: int(bits[p]) for p in self.layers}}  # fmt: skip
        if rounds != 1:
            settings["rounds"] = int(rounds)
        key = settings_key(settings)
        fresh = key not in self.memo
        if fresh and self.max_trials is not None and len(self.candidates) >= self.max_trials:
            raise BudgetExhausted("max_trials")
        rec = self._record(settings, lambda: self._compute(settings, key), self._on_new)
        if fresh:
            self.candidates.append(rec)
            self._show()
        return rec

    def _compute(self, settings: dict[str, Any], key: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        books = self._build(settings, key)
        data = jz_codec.encode(books)
        report = jz_codec.size_report(data)
        acc = self._eval(decode(books), f"candidate {key}")
        self.books[key] = books
        self.computed += 1
        return {
            "index": len(self.candidates), "accuracy": acc, "bytes": len(data),
            "dense_bytes": self.dense_bytes, "ratio": self.dense_bytes / len(data),
            "feasible": bool(acc >= self.baseline - self.max_drop),
            "layer_bytes": {x.path: int(x.bytes) for x in report.leaves},
            "layer_bound_bits": {x.path: float(x.bound_bits) for x in report.leaves},
            "seconds": round(time.perf_counter() - t0, 3),
        }  # fmt: skip

    def _build(self, settings: Mapping[str, Any], key: str) -> Params:
        rng = named_key(self.key, key)  # the candidate's own key, named by its settings hash
        return build_candidate(self.params, settings["sparsity"], settings["bits"],
                               build=self.build, key=rng, rounds=settings.get("rounds", 1))  # fmt: skip

    def is_feasible(self, rec: Mapping[str, Any]) -> bool:
        """``accuracy >= baseline - max_drop`` (recomputed: max_drop may differ from the run's)."""
        return bool(rec["accuracy"] >= self.baseline - self.max_drop)

    def best(self) -> dict[str, Any] | None:
        """The best candidate so far (see :class:`SearchResult`)."""
        recs = [{**r, "feasible": self.is_feasible(r)} for r in self.candidates]
        return _pick_best(recs)

    def _on_new(self, rec: dict[str, Any]) -> None:
        """Saves ``best.jz``/``best.json`` when ``rec`` beats the best so far (before journaling)."""
        if self.out_dir is None:
            return
        rec = {**rec, "feasible": self.is_feasible(rec)}
        old = self.best()
        if _pick_best([old, rec] if old else [rec]) is rec:
            self.save_best(rec, self.books[rec["key"]])

    def save_best(self, rec: Mapping[str, Any], books: Params) -> None:
        """Writes ``best.jz`` then ``best.json`` (each atomically) to ``out_dir``."""
        assert self.out_dir is not None
        atomic_write_bytes(self.out_dir / BEST_FILE, jz_codec.encode(books))
        atomic_write_json(self.out_dir / BEST_JSON, {"baseline": self.baseline,
                                                     "max_drop": self.max_drop, **rec})  # fmt: skip

    def books_of(self, rec: Mapping[str, Any]) -> Params:
        """The books of a candidate: in memory, from ``best.jz`` if it holds it, or rebuilt."""
        key = rec["key"]
        if key in self.books:
            return self.books[key]
        if self.out_dir is not None and (self.out_dir / BEST_JSON).exists():
            saved = json.loads((self.out_dir / BEST_JSON).read_text(encoding="utf-8"))
            if saved.get("key") == key and (self.out_dir / BEST_FILE).exists():
                return jz_codec.load(self.out_dir / BEST_FILE)
        books = self._build(rec, key)
        self.books[key] = books
        return books

    # -- confirmation ------------------------------------------------------------------------
    def confirm_baseline(self) -> float:
        """``confirm_fn`` of the input params (journaled; within the time budget)."""
        assert self.confirm_fn is not None
        fn = self.confirm_fn
        rec = self._record(
            {"kind": "confirm_baseline"},
            lambda: {"accuracy": check_score(fn(self.params), "confirm_fn (on the input params)")},
        )
        return float(rec["accuracy"])

    def confirm(self, rec: Mapping[str, Any]) -> float:
        """``confirm_fn`` of a candidate's decoded params (journaled; run past the deadline)."""
        assert self.confirm_fn is not None
        fn, key = self.confirm_fn, rec["key"]

        def compute() -> dict[str, Any]:
            acc = check_score(fn(decode(self.books_of(rec))), f"confirm_fn (on candidate {key})")
            return {"accuracy": acc}

        return float(self._record({"kind": "confirm", "candidate": key}, compute,
                                  timed=False)["accuracy"])  # fmt: skip

    def _show(self) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        best = self.best()
        if best is not None:
            self.bar.set_postfix_str(
                f"best {best['bytes']} B, {best['ratio']:.1f}x, acc {best['accuracy']:.4f}"
                + ("" if best["feasible"] else " (infeasible)")
            )
