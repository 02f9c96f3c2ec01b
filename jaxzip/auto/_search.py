"""Accuracy-bounded compression search: smallest file within ``max_drop`` of the baseline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxzip._keys import check_key, named_key
from jaxzip._types import Params, Where
from jaxzip.auto._common import EvalFn, layer_paths
from jaxzip.auto._greedy import Greedy
from jaxzip.auto._journal import Journal
from jaxzip.auto._optuna import Optuna
from jaxzip.auto._sensitivity import Sensitivity
from jaxzip.auto._space import SearchResult, SearchSpace, pareto_front
from jaxzip.auto._trials import BudgetExhausted, FinetuneFn, Trials
from jaxzip.paths import describe, leaves_with_paths

__all__ = ["JOURNAL_FILE", "Strategy", "search"]

JOURNAL_FILE = "journal.jsonl"
Strategy = Greedy | Optuna


def _check_number(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or (v <= 0 if positive else v < 0):
        want = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: expected a finite number {want}, got {value!r}")
    return v


def _journal_config(params: Params, layers: tuple[str, ...], where: Where, space: SearchSpace,
                    key: jax.Array, strategy: Strategy, finetune: bool) -> dict[str, Any]:  # fmt: skip
    leaves = dict(leaves_with_paths(params))
    key_data = np.asarray(jax.random.key_data(key)).tolist()  # the key's identity, for the hash
    return {"search": 1, "where": describe(where), "space": space.to_dict(), "key": key_data,
            "layers": {p: list(np.shape(leaves[p])) for p in layers},
            "strategy": strategy.name, "finetune": finetune}  # fmt: skip


def search(
    params: Params,
    *,
    eval_fn: EvalFn,
    max_drop: float,
    where: Where,
    key: jax.Array,
    finetune_fn: FinetuneFn | None = None,
    space: SearchSpace = SearchSpace(),  # noqa: B008 - frozen, hashable
    strategy: Strategy = Greedy(),  # noqa: B008 - frozen, hashable
    out_dir: str | os.PathLike[str] | None = None,
    journal: Journal | str | os.PathLike[str] | None = None,
    time_budget_s: float | None = None,
    max_trials: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """Searches per-layer sparsity and k-means bits for the smallest file within ``max_drop``.

    A candidate gives each selected layer a sparsity and a bit width from
    ``space``. It is built as: magnitude-prune each layer → ``finetune_fn``
    (if given; it must keep the mask) → a k-means codebook per layer (pruned
    weights stay 0) → ``jaxzip.codec.encode`` (its length is the candidate's
    ``bytes``) → ``eval_fn`` of the decoded params. It is feasible iff
    ``accuracy >= baseline - max_drop``.

    The strategy proposes the candidates: :class:`Greedy` (sensitivity curves,
    a bisected trade-off ladder, then one-notch refinements) or :class:`Optuna`
    (NSGA-II for ``max_trials`` trials, returning the Pareto front).

    Every finished trial (baseline, probes, candidates) is appended to the
    journal before the next starts, and a trial already in the journal is
    reused, not recomputed; since all decisions are made from trial records,
    a rerun after a kill replays to the same result. With ``out_dir``, the
    journal defaults to ``out_dir/journal.jsonl`` and ``best.jz`` (the codec
    file) and ``best.json`` are rewritten whenever the best candidate improves.
    Budgets are checked between trials.

    Args:
      params: the trained params (the baseline).
      eval_fn: ``eval_fn(params) -> float``, validation accuracy.
      max_drop: allowed accuracy drop, in ``eval_fn``'s units (>= 0).
      where: the layers to compress (regex, predicate or sequence).
      key: the PRNG key of fine-tuning (each candidate's key is derived from it by
        the candidate's settings) and of the optuna sampler.
      finetune_fn: optional ``finetune_fn(params, mask, *, key) -> params``.
      space: the per-layer choices.
      strategy: :class:`Greedy` (the default) or :class:`Optuna`.
      out_dir: where ``best.jz``, ``best.json`` (and the default journal) go.
      journal: a :class:`Journal`, or the path of one (opened with this
        search's settings as its config); default ``out_dir/journal.jsonl``.
      time_budget_s: stop starting new trials after this many seconds (> 0).
      max_trials: at most this many candidate trials, journaled ones included (>= 1).
      progress: show a tqdm bar with the best so far on stderr.

    Returns:
      A :class:`SearchResult`; ``feasible=False`` when no candidate met the bound.
      If the time budget ends before any candidate (during the sensitivity
      probes), the mildest candidate is still evaluated so that a result exists.

    Raises:
      ValueError: ``max_drop < 0``, a budget <= 0, ``where`` selects nothing,
        ``eval_fn`` returns NaN or a non-scalar.
      TypeError: ``strategy`` is not a :class:`Greedy` or :class:`Optuna`, or
        ``key`` not a PRNG key.
      jaxzip._errors.ConfigError: the journal belongs to another search.
      ImportError: :class:`Optuna` without optuna installed.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> p = {"w": jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)}
      >>> acc = lambda q: 1.0 - float(jnp.abs(q["w"] - p["w"]).mean())
      >>> r = search(p, eval_fn=acc, max_drop=0.2, where="w", key=jax.random.key(0),
      ...            space=SearchSpace(sparsities=(0.0, 0.5), bits=(2,)))
      >>> r.feasible, r.best["sparsity"], r.best["bits"]  # 64 weights: positions cost more
      (True, {'w': 0.0}, {'w': 2})
    """
    max_drop = _check_number("max_drop", max_drop, positive=False)
    if time_budget_s is not None:
        time_budget_s = _check_number("time_budget_s", time_budget_s, positive=True)
    if max_trials is not None and (isinstance(max_trials, bool)
                                   or not isinstance(max_trials, (int, np.integer))
                                   or max_trials < 1):  # fmt: skip
        raise ValueError(f"max_trials: expected an int >= 1, got {max_trials!r}")
    if not isinstance(strategy, Greedy | Optuna):
        raise TypeError(
            f"strategy: expected jaxzip.auto.Greedy() or jaxzip.auto.Optuna(), got {strategy!r}"
        )
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space: expected a SearchSpace, got {type(space)!r}")
    check_key("search", key)
    if not callable(eval_fn):
        raise TypeError(f"eval_fn: expected a callable, got {eval_fn!r}")
    layers = tuple(layer_paths(params, where))
    if isinstance(strategy, Optuna):
        strategy.require()
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if journal is None and out is not None:
        journal = out / JOURNAL_FILE
    if journal is not None and not isinstance(journal, Journal):
        cfg = _journal_config(params, layers, where, space, key, strategy,
                              finetune_fn is not None)  # fmt: skip
        journal = Journal.open(journal, config=cfg)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_trials, desc="auto search", unit="trial", dynamic_ncols=True)
    try:
        trials = Trials(params, eval_fn=eval_fn, finetune_fn=finetune_fn, layers=layers,
                        iters=space.kmeans_iters, key=named_key(key, "trials"), max_drop=max_drop,
                        journal=journal, out_dir=out, time_budget_s=time_budget_s,
                        max_trials=max_trials, bar=bar)  # fmt: skip
        stopped = "done"
        try:
            strategy.run(trials, space, key=named_key(key, strategy.name), max_trials=max_trials)
        except BudgetExhausted as e:
            stopped = e.reason
    finally:
        if bar is not None:
            bar.close()
    return _result(trials, space, trials.sensitivity, strategy.name, stopped, max_drop)


def _result(trials: Trials, space: SearchSpace, sens: Sensitivity | None, strategy: str,
            stopped: str, max_drop: float) -> SearchResult:  # fmt: skip
    if not trials.candidates:  # the budget ran out before any candidate: try the mildest one
        mild = ({p: space.sparsities[0] for p in trials.layers},
                {p: space.bits[0] for p in trials.layers})  # fmt: skip
        trials.max_trials, trials.deadline = None, None
        trials.candidate(*mild)
    records = [{**r, "feasible": trials.is_feasible(r)} for r in trials.candidates]
    best = trials.best()
    assert best is not None  # at least one candidate exists here
    books = trials.books_of(best)
    if trials.out_dir is not None:
        path = trials.out_dir / "best.json"
        saved = json.loads(path.read_text("utf-8")) if path.exists() else {}
        if saved.get("key") != best["key"] or saved.get("max_drop") != max_drop:
            trials.save_best(best, books)
    return SearchResult(
        feasible=bool(best["feasible"]), best=best, books=books, baseline=trials.baseline,
        max_drop=max_drop, trials=tuple(records), pareto=pareto_front(records),
        sensitivity=sens, layers=trials.layers, strategy=strategy, stopped=stopped,
        computed=trials.computed,
    )  # fmt: skip
