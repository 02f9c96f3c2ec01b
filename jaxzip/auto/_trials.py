"""Runs and journals trials: each finished trial is recorded before the next starts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxzip import codec as jz_codec
from jaxzip._io import atomic_write_bytes, atomic_write_json
from jaxzip._keys import named_key
from jaxzip._types import Params
from jaxzip.auto._build import Build, build_candidate, takes_distill
from jaxzip.auto._common import EvalFn, decode, settings_key
from jaxzip.auto._drops import discordant, drop_se, paired_drop_se, read_score
from jaxzip.auto._journal import Journal, SearchClock
from jaxzip.auto._sensitivity import probe

__all__ = ["BEST_FILE", "BEST_JSON", "BudgetExhausted", "Trials", "by_size"]

BEST_FILE = "best.jz"
BEST_JSON = "best.json"


class BudgetExhausted(Exception):
    """Raised between trials when the time or trial budget is spent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    """Evaluates baseline, probes and candidates, each at most once (journal first).

    Search time (:meth:`elapsed`, what the time budget is spent on, and what
    :meth:`fits` reads) is a :class:`jaxzip.auto._journal.SearchClock`: on the
    journal's clock while records are replayed, so a resumed search decides as
    the run it continues did and has what that run left of the budget.
    """

    def __init__(
        self,
        params: Params,
        *,
        eval_fn: EvalFn,
        build: Build,
        layers: tuple[str, ...],
        key: jax.Array,
        max_drop: float,
        journal: Journal | None,
        out_dir: Path | None,
        time_budget_s: float | None,
        max_trials: int | None,
        bar: Any = None,
        confirm_fn: EvalFn | None = None,
        confirm_n: int | None = None,
        val_n: int | None = None,
        confidence: float = 0.0,
    ) -> None:
        self.params, self.eval_fn, self.build = params, eval_fn, build
        self.confirm_fn, self.confirm_n = confirm_fn, confirm_n
        self.val_n, self.confidence = val_n, confidence
        self._hits: tuple[float, np.ndarray | None] | None = None  # see _baseline_score
        self._val_hits: tuple[float, np.ndarray | None] | None = None  # see _baseline_eval
        self.clock = SearchClock()  # search time, on the journal's clock while replaying
        self.layers, self.iters, self.key, self.max_drop = layers, build.iters, key, max_drop
        self.journal, self.out_dir, self.bar = journal, out_dir, bar
        self.max_trials = max_trials
        self.memo: dict[str, dict[str, Any]] = {}
        self.candidates: list[dict[str, Any]] = []
        self.books: dict[str, Params] = {}  # key -> books computed by this process
        self.computed = 0
        self.sensitivity: Any = None  # set by the greedy strategy
        # whether candidates distill (when the hooks let the search choose: takes_distill)
        self.distill = True
        self.can_choose_distill = takes_distill(build)
        self.dense_bytes = 4 * int(sum(np.size(x) for x in jax.tree.leaves(params)))
        self.budget_s: float | None = None  # the baseline is always measured
        self.baseline = float(self._record({"kind": "baseline"}, self._eval_baseline)["accuracy"])
        self.budget_s = time_budget_s

    # -- bookkeeping -------------------------------------------------------------------------
    def _check_time(self) -> None:
        if self.budget_s is not None and self.elapsed() >= self.budget_s:
            raise BudgetExhausted("time_budget")

    def fits(self, rounds: int, count: int = 1) -> bool:
        """Whether ``count`` candidates at ``rounds`` are expected to end within the time budget.

        The estimate is the median of the computed candidates' seconds per
        round (each record's ``seconds`` over its ``rounds``); True without a
        time budget or before any candidate has been timed.
        """
        if self.budget_s is None:
            return True
        per_round = [r["seconds"] / r.get("rounds", 1) for r in self.candidates if "seconds" in r]
        if not per_round:
            return True
        need = float(np.median(per_round)) * rounds * count
        return self.elapsed() + need <= self.budget_s

    def elapsed(self) -> float:
        """Search seconds (:class:`jaxzip.auto._journal.SearchClock`)."""
        return self.clock.elapsed()

    def _record(
        self,
        settings: dict[str, Any],
        compute: Callable[[], dict[str, Any]],
        on_new: Callable[[dict[str, Any]], None] | None = None,
        *,
        timed: bool = True,
    ) -> dict[str, Any]:
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
        else:
            self.clock.replayed(rec)
        self.memo[key] = rec
        return rec

    def _eval(self, params: Params, what: str) -> tuple[float, np.ndarray | None]:
        return read_score(self.eval_fn(params), self.val_n, f"eval_fn (on {what})")

    def _baseline_eval(self) -> tuple[float, np.ndarray | None]:
        """The input params' ranking accuracy and, when ``eval_fn`` gives it, each example's
        correctness (computed once per process: a replayed record holds only the accuracy)."""
        if self._val_hits is None:
            self._val_hits = self._eval(self.params, "the input params")
        return self._val_hits

    def _eval_baseline(self) -> dict[str, Any]:
        return {"accuracy": self._baseline_eval()[0], "dense_bytes": self.dense_bytes}

    @staticmethod
    def _paired(
        hits: np.ndarray | None, baseline: Callable[[], tuple[float, Any]], what: str
    ) -> dict[str, Any]:
        """``{"discordant": [b, c], "eval_n": n}`` of a candidate's per-example ``hits``
        against the input params' (``baseline()``), or ``{}`` when ``hits`` is None."""
        if hits is None:
            return {}
        base = baseline()[1]
        if base is None:
            raise ValueError(
                f"{what}: gave each example's correctness, but an accuracy for the input params"
            )
        return {"discordant": list(discordant(base, hits)), "eval_n": int(hits.size)}

    # -- probes ------------------------------------------------------------------------------
    def probe(self, path: str, *, sparsity: float = 0.0, bits: int | None = None) -> float:
        """Accuracy with ``path`` alone pruned to ``sparsity`` or shared at ``bits``."""
        if bits is None and sparsity == 0:
            return self.baseline
        settings = {"kind": "probe", "path": path, "sparsity": sparsity, "bits": bits}

        def compute() -> dict[str, Any]:
            p = probe(self.params, path, sparsity=sparsity, bits=bits, iters=self.iters)
            return {"accuracy": self._eval(p, f"{path} at sparsity {sparsity}, bits {bits}")[0]}

        return float(self._record(settings, compute)["accuracy"])

    # -- candidates --------------------------------------------------------------------------
    def candidate(
        self, sparsity: Mapping[str, float], bits: Mapping[str, int], rounds: int = 1
    ) -> dict[str, Any]:
        """The record of one candidate (computed, or replayed from the journal).

        ``rounds``: how many times ``finetune_fn`` is applied (longer fine-tuning);
        1 is left out of the settings, so its key is that of the plain candidate.
        The candidate distills as ``self.distill`` says (``"distill": false`` in the
        settings when it does not; left out when it does).
        """
        settings: dict[str, Any] = {
            "kind": "candidate",
            "sparsity": {p: float(sparsity[p]) for p in self.layers},
            "bits": {p: int(bits[p]) for p in self.layers},
        }
        if rounds != 1:
            settings["rounds"] = int(rounds)
        if not self.distill:
            settings["distill"] = False
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
        acc, hits = self._eval(decode(books), f"candidate {key}")
        self.books[key] = books
        self.computed += 1
        rec = {
            "index": len(self.candidates),
            "accuracy": acc,
            **self._paired(hits, self._baseline_eval, f"eval_fn (on candidate {key})"),
            "bytes": len(data),
            "dense_bytes": self.dense_bytes,
            "ratio": self.dense_bytes / len(data),
            "layer_bytes": {x.path: int(x.bytes) for x in report.leaves},
            "layer_bound_bits": {x.path: float(x.bound_bits) for x in report.leaves},
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return {**rec, "feasible": self.is_feasible(rec)}

    def _build(self, settings: Mapping[str, Any], key: str) -> Params:
        rng = named_key(self.key, key)  # the candidate's own key, named by its settings hash
        return build_candidate(
            self.params,
            settings["sparsity"],
            settings["bits"],
            build=self.build,
            key=rng,
            rounds=settings.get("rounds", 1),
            distill=settings.get("distill", True),
        )

    def drop_se(self, rec: Mapping[str, Any]) -> float | None:
        """The standard error of a candidate's ranking drop: paired from its discordant pairs
        when journaled, else unpaired on ``val_n`` examples, else None."""
        if "discordant" in rec:
            return paired_drop_se(*rec["discordant"], rec["eval_n"])
        if self.val_n is None:
            return None
        return drop_se(self.baseline, rec["accuracy"], self.val_n)

    def is_feasible(self, rec: Mapping[str, Any]) -> bool:
        """``accuracy >= baseline - max_drop``, plus ``confidence`` standard errors of the drop
        (:meth:`drop_se`) when one is known (recomputed: both may differ from the run's)."""
        se = self.drop_se(rec) if self.confidence else None
        margin = self.confidence * se if se is not None else 0.0
        return bool(rec["accuracy"] >= self.baseline - self.max_drop + margin)

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
        atomic_write_json(
            self.out_dir / BEST_JSON, {"baseline": self.baseline, "max_drop": self.max_drop, **rec}
        )

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
    def _baseline_score(self) -> tuple[float, np.ndarray | None]:
        """The input params' confirmation accuracy and, when ``confirm_fn`` gives it, each
        example's correctness (computed once per process: a replayed record holds only the
        accuracy)."""
        if self._hits is None:
            what = "confirm_fn (on the input params)"
            self._hits = read_score(self.confirm_fn(self.params), self.confirm_n, what)
        return self._hits

    def confirm_baseline(self) -> float:
        """``confirm_fn`` of the input params (journaled; within the time budget)."""
        assert self.confirm_fn is not None
        rec = self._record(
            {"kind": "confirm_baseline"}, lambda: {"accuracy": self._baseline_score()[0]}
        )
        return float(rec["accuracy"])

    def confirm(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        """``confirm_fn`` of a candidate's decoded params (journaled; run even when the time
        budget is spent): ``{"accuracy"}``, and ``"discordant"`` (``[b, c]``, see
        :func:`jaxzip.auto.discordant`) when ``confirm_fn`` gives each example's correctness."""
        assert self.confirm_fn is not None
        fn, key = self.confirm_fn, rec["key"]

        def compute() -> dict[str, Any]:
            what = f"confirm_fn (on candidate {key})"
            acc, hits = read_score(fn(decode(self.books_of(rec))), self.confirm_n, what)
            pairs = self._paired(hits, self._baseline_score, what)
            return {"accuracy": acc, **({"discordant": pairs["discordant"]} if pairs else {})}

        return self._record({"kind": "confirm", "candidate": key}, compute, timed=False)

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
