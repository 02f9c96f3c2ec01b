"""Accuracy-bounded compression search: smallest file within ``max_drop`` of the baseline."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxzip import quant as jz_quant
from jaxzip._keys import check_key, named_key
from jaxzip._types import Params, Where
from jaxzip.auto._build import Build, CodebookFn, FinetuneFn, PruneFn, takes_rounds
from jaxzip.auto._common import EvalFn, check_count, check_number, layer_paths
from jaxzip.auto._confirm import BudgetTooSmall, check_confirm_size, check_resolution, confirm
from jaxzip.auto._greedy import Greedy
from jaxzip.auto._journal import Journal
from jaxzip.auto._optuna import Optuna
from jaxzip.auto._sensitivity import Sensitivity
from jaxzip.auto._space import SearchResult, SearchSpace, pareto_front, timeline
from jaxzip.auto._trials import BudgetExhausted, Trials, by_size
from jaxzip.paths import describe, leaves_with_paths

__all__ = ["JOURNAL_FILE", "Strategy", "search"]

JOURNAL_FILE = "journal.jsonl"
Strategy = Greedy | Optuna


def _journal_config(
    params: Params,
    layers: tuple[str, ...],
    where: Where,
    space: SearchSpace,
    key: jax.Array,
    strategy: Strategy,
    build: Build,
    confirm: bool,
) -> dict[str, Any]:
    leaves = dict(leaves_with_paths(params))
    key_data = np.asarray(jax.random.key_data(key)).tolist()  # the key's identity, for the hash
    hooks = {k: v for k, v in build.describe().items() if k == "finetune" or v}  # as before hooks
    ft = build.finetune_fn
    return {
        "search": 1,
        "where": describe(where),
        "space": space.to_dict(),
        "key": key_data,
        "layers": {p: list(np.shape(leaves[p])) for p in layers},
        "strategy": strategy.name,
        **hooks,
        "confirm": confirm,
        "finetune_rounds_kw": ft is not None and takes_rounds(ft),
    }


def search(
    params: Params,
    *,
    eval_fn: EvalFn,
    max_drop: float,
    where: Where,
    key: jax.Array,
    finetune_fn: FinetuneFn | None = None,
    prune_fn: PruneFn | None = None,
    codebook_fn: CodebookFn | None = None,
    unshared: jz_quant.QuantSpec | None = None,
    space: SearchSpace = SearchSpace(),  # noqa: B008 - frozen, hashable
    strategy: Strategy = Greedy(),  # noqa: B008 - frozen, hashable
    out_dir: str | os.PathLike[str] | None = None,
    journal: Journal | str | os.PathLike[str] | None = None,
    time_budget_s: float | None = None,
    max_trials: int | None = None,
    progress: bool = False,
    confirm_fn: EvalFn | None = None,
    confirm_n: int | None = None,
    val_n: int | None = None,
    max_confirmations: int = 3,
    confidence: float = 0.0,
) -> SearchResult:
    """Searches per-layer sparsity and k-means bits for the smallest file within ``max_drop``.

    A candidate gives each selected layer a sparsity and a bit width from
    ``space``. It is built as: magnitude-prune each layer → ``finetune_fn``
    (if given; it must keep the mask), or instead ``prune_fn`` (training that
    prunes as it goes, e.g. gradual pruning) → a k-means codebook per layer
    (pruned weights stay 0) → ``codebook_fn`` (if given: centroid fine-tuning)
    → with ``unshared``, the other float leaves (biases) quantized →
    ``jaxzip.codec.encode`` (its length is the candidate's ``bytes``) →
    ``eval_fn`` of the decoded params. It is feasible iff
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
    Budgets are checked between trials. With a budget (``time_budget_s`` or
    ``max_trials``) the greedy strategy keeps refining after its ladder until
    the budget is spent or no neighbour of the best, at any fine-tuning length
    of ``space.finetune_rounds``, is feasible and smaller (``stopped``:
    ``"exhausted"``).

    The honest bound (``confirm_fn``): the candidates are ranked on
    ``eval_fn``'s split only; the smallest feasible one is then confirmed with
    ``confirm_fn`` on a second split the search never ranked with: it passes
    iff its accuracy there is at least the baseline's there minus ``max_drop``.
    If it fails, the next feasible candidate by the ranking (bytes, then
    validation accuracy) that is more accurate on validation than every failed
    one by the points that one missed the bound by on confirmation is confirmed
    (if none is, the next that is more accurate at all; :func:`confirm`), up to
    ``max_confirmations`` attempts (each attempt re-uses the confirmation split,
    so keep them few). The baseline's confirmation is measured right after its
    validation, within the
    time budget; the candidates' confirmations (one evaluation each) are run
    after the search even when the budget is spent. All are journaled.

    A confidence margin (``confidence = z > 0``): a candidate is feasible on the ranking
    split, and passes its confirmation, only if its drop there plus ``z`` standard errors
    of that drop is within ``max_drop`` (``1.645``: the one-sided 95% upper limit), so the
    search aims at candidates that hold the bound beyond noise, not at those that meet it
    by luck. The standard error is the paired one (:func:`jaxzip.auto.paired_drop_se`)
    where ``eval_fn`` / ``confirm_fn`` return each example's correctness (candidate
    records then keep their ``discordant`` pairs), else the unpaired
    :func:`jaxzip.auto.drop_se` on ``val_n`` / ``confirm_n`` examples (none without
    ``val_n``). Like ``max_drop``, it is not part of the journal's key.

    Args:
      params: the trained params (the baseline).
      eval_fn: ``eval_fn(params)``: validation (ranking) accuracy, or each ranking
        example's correctness (a 1-D bool array, of ``val_n`` values when given), which
        gives the ranking drops their paired standard error.
      max_drop: allowed accuracy drop, in ``eval_fn``'s units (>= 0).
      where: the layers to compress (regex, predicate or sequence).
      key: the PRNG key of fine-tuning (each candidate's key is derived from it by
        the candidate's settings) and of the optuna sampler.
      finetune_fn: optional ``finetune_fn(params, mask, *, key) -> params``; if it also
        takes a ``rounds`` keyword, longer fine-tuning calls it once with ``rounds``
        (else it is applied ``rounds`` times in a row).
      prune_fn: optional ``prune_fn(params, sparsity, *, key, rounds) -> params``, used
        instead of one-shot pruning and ``finetune_fn``: training from ``params`` (the
        baseline) that prunes each searched layer to ``sparsity[path]`` as it goes
        (e.g. ``jaxzip.prune.gradual_pruning``), ``rounds`` times its usual length.
        Each layer's zeros in its result are the mask; fewer zeros than the target
        (beyond 0.1% of the layer) is an error.
      codebook_fn: optional ``codebook_fn(books, *, key) -> books``: fine-tunes the
        centroids of the k-means codebooks (and the float leaves), indices fixed, as
        Deep Compression does (:func:`jaxzip.quant.make_codebook_step`). When
        any of the three hooks also takes a ``distill`` keyword (distilling from
        the dense model when True, training on the labels when False), the
        greedy search with a budget builds one rung both ways after its first
        ladder and goes on with the more accurate way; the candidates built
        with ``distill=False`` say ``"distill": False``.
      unshared: optional :class:`jaxzip.quant.QuantSpec` for the float leaves ``where``
        leaves out (biases, norms), applied to every candidate last
        (:func:`jaxzip.quant.quantize_unshared`; e.g. ``QuantSpec(bits=8)``: one int8
        scale per leaf), so its bytes and accuracy are those of the stored file.
      space: the per-layer choices.
      strategy: :class:`Greedy` (the default) or :class:`Optuna`.
      out_dir: where ``best.jz``, ``best.json`` (and the default journal) go.
      journal: a :class:`Journal`, or the path of one (opened with this
        search's settings as its config); default ``out_dir/journal.jsonl``.
      time_budget_s: stop starting new trials after this many seconds (> 0).
      max_trials: at most this many candidate trials, journaled ones included (>= 1).
      progress: show a tqdm bar with the best so far on stderr.
      confirm_fn: ``confirm_fn(params)``: accuracy on the confirmation split, or each of its
        examples' correctness (a 1-D bool array of ``confirm_n``; e.g.
        ``jaxzip.train.evaluate(..., per_example=True)["correct"]``), which gives the
        confirmation drops their paired standard error.
      confirm_n: the confirmation split's size (required with ``confirm_fn``): it must
        resolve the bound, ``confirm_n * max_drop >= 1`` (one error there is at most
        ``max_drop``), and gives the drops' standard errors.
      val_n: ``eval_fn``'s split size, for the validation drop's standard error.
      max_confirmations: at most this many candidates are confirmed (>= 1).
      confidence: standard errors of a drop that must fit within the bound as well, on
        the ranking and the confirmation split (>= 0; 0: the drop alone).

    Returns:
      A :class:`SearchResult`; ``feasible=False`` when no candidate met the bound
      (with ``confirm_fn``: when none of the attempts passed its confirmation).
      If the time budget ends before any candidate (during the sensitivity
      probes), the mildest candidate is still evaluated so that a result exists.

    Raises:
      ValueError: ``max_drop < 0``, a budget <= 0, ``where`` selects nothing,
        ``eval_fn`` returns NaN or a non-scalar, ``confirm_n`` missing or too small
        to resolve ``max_drop``.
      jaxzip.auto.BudgetTooSmall (a ValueError): the time budget ended before the
        baseline's confirmation; the message says what was measured so far.
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
    max_drop = check_number("max_drop", max_drop, positive=False)
    if time_budget_s is not None:
        time_budget_s = check_number("time_budget_s", time_budget_s, positive=True)
    max_trials = check_count("max_trials", max_trials)
    max_confirmations = check_count("max_confirmations", max_confirmations, optional=False)
    val_n = check_count("val_n", val_n)
    confidence = check_number("confidence", confidence, positive=False)
    if confirm_fn is not None:
        if not callable(confirm_fn):
            raise TypeError(f"confirm_fn: expected a callable, got {confirm_fn!r}")
        confirm_n = check_confirm_size(confirm_n, max_drop)
    elif confirm_n is not None:
        raise ValueError(f"confirm_n: given ({confirm_n!r}) without a confirm_fn")
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
    for name, fn in (
        ("finetune_fn", finetune_fn),
        ("prune_fn", prune_fn),
        ("codebook_fn", codebook_fn),
    ):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name}: expected a callable or None, got {fn!r}")
    if unshared is not None and not isinstance(unshared, jz_quant.QuantSpec):
        raise TypeError(f"unshared: expected a jaxzip.quant.QuantSpec or None, got {unshared!r}")
    build = Build(
        finetune_fn=finetune_fn,
        prune_fn=prune_fn,
        codebook_fn=codebook_fn,
        iters=space.kmeans_iters,
        unshared=unshared,
    )
    if journal is not None and not isinstance(journal, Journal):
        cfg = _journal_config(
            params, layers, where, space, key, strategy, build, confirm_fn is not None
        )
        journal = Journal.open(journal, config=cfg)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_trials, desc="auto search", unit="trial", dynamic_ncols=True)
    try:
        trials = Trials(
            params,
            eval_fn=eval_fn,
            build=build,
            layers=layers,
            key=named_key(key, "trials"),
            max_drop=max_drop,
            journal=journal,
            out_dir=out,
            time_budget_s=time_budget_s,
            max_trials=max_trials,
            bar=bar,
            confirm_fn=confirm_fn,
            confirm_n=confirm_n,
            val_n=val_n,
            confidence=confidence,
        )
        if val_n is not None:
            check_resolution(trials.baseline, max_drop, val_n)
        if confirm_fn is not None:
            try:
                trials.confirm_baseline()
            except BudgetExhausted:
                raise BudgetTooSmall(
                    f"time_budget_s: {time_budget_s:g} s was spent before the baseline was "
                    f"measured on the confirmation split; found so far: the baseline's validation "
                    f"accuracy {trials.baseline:.4f}, no candidate. Give a larger budget (the "
                    f"journal keeps what was measured, so the rerun resumes)"
                ) from None
        stopped = "done"
        try:
            status = strategy.run(
                trials, space, key=named_key(key, strategy.name), max_trials=max_trials
            )
            stopped = status or "done"
        except BudgetExhausted as e:
            stopped = e.reason
    finally:
        if bar is not None:
            bar.close()
    return _result(
        trials,
        space,
        trials.sensitivity,
        strategy.name,
        stopped,
        max_drop,
        max_confirmations=max_confirmations,
        confirm_n=confirm_n,
        val_n=val_n,
        confidence=confidence,
    )


def _result(
    trials: Trials,
    space: SearchSpace,
    sens: Sensitivity | None,
    strategy: str,
    stopped: str,
    max_drop: float,
    *,
    max_confirmations: int,
    confirm_n: int | None,
    val_n: int | None,
    confidence: float,
) -> SearchResult:
    if not trials.candidates:  # the budget ran out before any candidate: try the mildest one
        mild = (
            {p: space.sparsities[0] for p in trials.layers},
            {p: space.bits[0] for p in trials.layers},
        )
        trials.max_trials, trials.budget_s = None, None
        trials.candidate(*mild)
    records = [{**r, "feasible": trials.is_feasible(r)} for r in trials.candidates]
    best = trials.best()
    assert best is not None  # at least one candidate exists here
    confirmation = None
    if trials.confirm_fn is not None:
        ranked = sorted((r for r in records if r["feasible"]), key=by_size)
        chosen, confirmation = confirm(
            trials,
            ranked,
            max_confirmations=max_confirmations,
            confirm_n=confirm_n,
            val_n=val_n,
            confidence=confidence,
        )
        if chosen is not None:
            best = {**chosen, "confirmed": True}
        else:
            best = {**best, "feasible": False, "confirmed": False}
    books = trials.books_of(best)
    if trials.out_dir is not None:
        path = trials.out_dir / "best.json"
        saved = json.loads(path.read_text("utf-8")) if path.exists() else {}
        if (saved.get("key"), saved.get("max_drop"), saved.get("confirmed")) != (
            best["key"],
            max_drop,
            best.get("confirmed"),
        ):
            trials.save_best(best, books)
    return SearchResult(
        feasible=bool(best["feasible"]),
        best=best,
        books=books,
        baseline=trials.baseline,
        max_drop=max_drop,
        trials=tuple(records),
        pareto=pareto_front(records),
        sensitivity=sens,
        layers=trials.layers,
        strategy=strategy,
        stopped=stopped,
        computed=trials.computed,
        confirmation=confirmation,
        timeline=timeline(records),
    )
