"""``search_lm``: per-kernel bit widths (GPTQ in the loop) for a language model under a bound
on the increase of its held-out bits per token."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxzip import codec as jz_codec
from jaxzip import layout as jz_layout
from jaxzip import quant as jz_quant
from jaxzip._types import Params
from jaxzip.auto._common import check_count, check_number, settings_key
from jaxzip.auto._journal import Journal
from jaxzip.auto._lm_build import (
    TABLE_SPEC,
    group_size_for,
    qarray_bytes,
    quantize_kernels,
    window_bits,
    with_leaves,
)
from jaxzip.auto._lm_ladder import Ladder
from jaxzip.auto._lm_report import choice_rows
from jaxzip.auto._lm_space import (
    LMSearchResult,
    LMSpace,
    Store,
    check_windows,
    ckey,
    jsonable_config,
    paired,
    strip,
    table_paths,
)
from jaxzip.data import TokenWindows
from jaxzip.paths import leaves_with_paths

__all__ = ["search_lm"]


def search_lm(
    apply_fn: Callable[..., Any],
    params: Params,
    calib_batches: Sequence[Any],
    rank: TokenWindows,
    confirm: TokenWindows,
    *,
    max_increase: float,
    space: LMSpace | None = None,
    test: TokenWindows | None = None,
    journal: Journal | None = None,
    time_budget_s: float | None = None,
    max_trials: int | None = None,
    max_confirmations: int = 3,
    batch_size: int = 64,
    progress: bool = False,
) -> LMSearchResult:
    """Per-kernel bit widths (and sparsities) for the smallest file within a bits-per-token bound.

    1. Sensitivity: every kernel alone quantized (GPTQ, Hessians from the float
       model) at each choice of ``space``, the others float: its increase of bits
       per token on the first ``space.probe_windows`` ranking windows, and its
       bytes (the ``QArray`` encoded alone).
    2. Allocation: each kernel's choices form a lower convex hull of (bytes,
       increase); all hull steps, sorted by increase per byte saved, give a
       sequence of configurations from the least increase (step 0) to the fewest
       bytes, along which the summed (predicted) increase grows.
    3. Search: a configuration is built with sequential GPTQ over every kernel
       (each calibrated on the earlier ones quantized), its embedding tables as
       int8 if ``space.tables``, and judged on the whole ranking split: feasible if
       its bits per token exceed the float model's by at most ``max_increase``
       (relative). The step is found by a safeguarded secant search (the
       prediction scaled by the last measured / predicted ratio, kept inside the
       middle half of the open interval), until the last feasible and the first
       infeasible steps are adjacent. Then fills: the smallest feasible candidate
       plus the later ladder steps that still fit by its own measured / predicted
       ratio (a kernel's skipped step blocks its later ones); over the bound, the
       next fill takes half as many steps, and a single step over it is blocked
       (a fill already measured, a rung say, counts without being built again);
       feasible, the next fill starts from it. All while the budget lasts.
    4. Confirmation: the smallest feasible candidate is evaluated once on
       ``confirm`` (never ranked with); if its increase there is over the bound,
       it counts as infeasible and the search goes on below it (at most
       ``max_confirmations`` confirmations). When none was confirmed and step 0 was
       never built (the budget ended before any trial), step 0 is built, judged and
       confirmed past the budget: the file returned is always a measured one.
    5. ``test`` (if given) is evaluated once for the float model, the result and
       the uniform ``space.reference_bits``-bit GPTQ reference, and only reported.

    Every evaluation (baselines, sensitivities, candidates, confirmations, tests)
    is a ``journal`` record, so a rerun with the same journal repeats none and,
    every decision being made from recorded values, ends in the same result
    (given the same ``max_trials`` or time budget: the budget is checked on the
    journal's clock while records are replayed, :class:`~jaxzip.auto._lm_space.Store`).

    Args:
      apply_fn: ``apply_fn(params, x, *, train, key) -> logits (N, T, V)``.
      params: the float params.
      calib_batches: token batches ``(B, T)`` for the Hessians.
      rank: the windows candidates are judged on.
      confirm: the windows the chosen candidate is confirmed on.
      max_increase: the allowed relative increase of bits per token (0.02: +2%).
      space: the choices (default :class:`LMSpace`).
      test: windows reported once at the end.
      journal: where trials are recorded (its config must hold every setting here).
      time_budget_s: stop starting candidate trials after this many seconds of search
        time (a resumed search continues the journal's clock).
      max_trials: at most this many candidate trials (confirmations not counted).
      max_confirmations: at most this many confirmations.
      batch_size: windows per evaluation batch.
      progress: a line per step on stderr.

    Returns:
      An :class:`LMSearchResult`; ``feasible`` and ``confirmed`` False when no
      candidate met the bound, ``params`` then step 0's (the least increase).

    Raises:
      ValueError: ``max_increase`` not > 0, bad budgets, windows too few, a
        ``space.tables`` regex selecting nothing.
      TypeError: windows that are not :class:`jaxzip.data.TokenWindows`.
    """
    space = LMSpace() if space is None else space
    if not isinstance(space, LMSpace):
        raise TypeError(f"space: expected an LMSpace, got {type(space).__name__}")
    ok = not isinstance(max_increase, bool) and isinstance(max_increase, (int, float))
    if not ok or not 0 < max_increase < float("inf"):
        raise ValueError(
            f"max_increase: expected a relative increase > 0 (0.02 is +2%), got {max_increase!r}"
        )
    max_trials = check_count("max_trials", max_trials)
    max_confirmations = check_count("max_confirmations", max_confirmations, optional=False)
    batch_size = check_count("batch_size", batch_size, optional=False)
    if time_budget_s is not None:
        time_budget_s = check_number("time_budget_s", time_budget_s, positive=True)
    rank, confirm = check_windows("rank", rank), check_windows("confirm", confirm)
    test = None if test is None else check_windows("test", test)
    calib = list(calib_batches)
    if not calib:
        raise ValueError("calib_batches: expected at least one batch of tokens, got none")

    store = Store(journal)
    say = (
        (lambda msg: print(f"jaxzip auto (lm): {msg}", file=sys.stderr, flush=True))
        if progress
        else (lambda msg: None)
    )
    fwd = lambda p, x: apply_fn(p, x, train=False, key=None)  # noqa: E731
    layouts = jz_layout.trace_layouts(fwd, params, calib[0][:1])
    kernels = list(layouts)
    tables = table_paths(params, space.tables, layouts)
    qtables = {
        p: jz_quant.quantize(x, TABLE_SPEC) for p, x in leaves_with_paths(params) if p in tables
    }
    gptq = functools.partial(  # the kernels at the given choices: (bits, sparsity) by path
        quantize_kernels,
        fwd,
        params,
        calib,
        layouts=layouts,
        group_size=space.group_size,
        symmetric=space.symmetric,
    )

    def bits_on(p: Params, w: TokenWindows) -> np.ndarray:
        return window_bits(apply_fn, p, w, batch_size=batch_size)

    def base_bits(split: str, w: TokenWindows) -> np.ndarray:
        rec = store.memo(f"baseline/{split}", lambda: {"bits": bits_on(params, w).tolist()})
        return np.asarray(rec["bits"], np.float64)

    base_rank = base_bits("rank", rank)
    probe = TokenWindows(
        x=rank.x[: space.probe_windows],
        y=rank.y[: space.probe_windows],
        vocab_size=rank.vocab_size,
        name=f"{rank.name}[:probe]",
    )
    base_probe = float(np.mean(base_rank[: len(probe)]))
    say(
        f"float model: {float(np.mean(base_rank)):.4f} bits per token on {len(rank)} ranking "
        f"windows; bound +{100 * max_increase:g}%"
    )

    # 1. sensitivity
    sens: dict[str, dict[str, Any]] = {}
    for c in space.choices():
        keys, q = {p: f"sens/{ckey(c)}/{p}" for p in kernels}, {}
        if any(store.get(k) is None for k in keys.values()):
            say(f"sensitivity at {ckey(c)}: {len(kernels)} kernels")
            q = gptq(dict.fromkeys(kernels, c), sequential=False)
        for p, k in keys.items():
            rec = store.memo(
                k,
                lambda p=p, q=q: {
                    "increase": float(
                        np.mean(bits_on(with_leaves(params, {p: q[p]}, dequantized=True), probe))
                    )
                    - base_probe,
                    "bytes": qarray_bytes(p, q[p]),
                },
            )
            sens.setdefault(p, {})[ckey(c)] = {"increase": rec["increase"], "bytes": rec["bytes"]}
    table_inc = 0.0
    if tables:
        table_inc = store.memo(
            "sens/tables",
            lambda: {
                "increase": float(
                    np.mean(bits_on(with_leaves(params, qtables, dequantized=True), probe))
                )
                - base_probe
            },
        )["increase"]

    # 2. allocation: hull steps by increase per byte saved
    choices = space.choices()
    points = {
        p: [(sens[p][ckey(c)]["bytes"], sens[p][ckey(c)]["increase"]) for c in choices]
        for p in kernels
    }
    ladder = Ladder(kernels, choices, points, table_inc, base_probe, max_increase)
    config, predicted = ladder.config, ladder.predicted

    @functools.lru_cache(maxsize=2)  # evaluated, confirmed, returned: one sequential GPTQ
    def build(moves: tuple[int, ...]) -> tuple[dict[str, Any], Params]:
        q = gptq(config(moves), sequential=True)
        return q, with_leaves(params, {**q, **qtables}, dequantized=False)

    def file_bytes(stored: Params) -> int:
        return len(jz_codec.encode(stored))

    # 3. search: the ladder's prefixes (trials by step), then fills (cands by moves)
    n_steps = len(ladder)
    cands: dict[tuple[int, ...], dict[str, Any]] = {}
    failed: set[tuple[int, ...]] = set()
    confirmations: list[dict[str, Any]] = []
    stopped = "converged"

    def evaluate(moves: tuple[int, ...], label: int | str) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            _, stored = build(moves)
            deq = jz_quant.dequantize_params(stored)
            return {
                "step": label,
                "bytes": file_bytes(stored),
                "predicted": predicted(moves),
                **paired(base_rank, bits_on(deq, rank)),
            }

        key = f"cand/{settings_key(jsonable_config(config(moves)))}"
        seen = store.get(key) is not None
        rec = {**store.memo(key, make), "feasible": None}
        rec["feasible"] = rec["relative"] <= max_increase
        cands[moves] = rec
        say(
            f"trial {len(cands)}{' (journal)' if seen else ''}: step {label} of {n_steps}, "
            f"{rec['bytes']:,} bytes, "
            f"{100 * rec['relative']:+.3f}% (predicted {100 * rec['predicted']:+.3f}%): "
            f"{'feasible' if rec['feasible'] else 'over the bound'}"
        )
        return rec

    def good(moves: tuple[int, ...]) -> bool:
        return cands[moves]["feasible"] and moves not in failed

    def budget_left() -> bool:
        nonlocal stopped
        if max_trials is not None and len(cands) >= max_trials:
            stopped = "max_trials"
        elif time_budget_s is not None and store.elapsed() >= time_budget_s:
            stopped = "time_budget"
        else:
            return True
        return False

    base_conf, best_moves = None, ()

    def confirmed(m: tuple[int, ...]) -> bool:
        """Confirms candidate ``m`` on the confirmation split (journaled); whether it passed."""
        nonlocal base_conf
        if base_conf is None:
            base_conf = base_bits("confirm", confirm)

        def conf(base: np.ndarray = base_conf) -> dict[str, Any]:
            deq = jz_quant.dequantize_params(build(m)[1])
            return paired(base, bits_on(deq, confirm))

        rec = store.memo(f"confirm/{settings_key(jsonable_config(config(m)))}", conf)
        rec = {**rec, "step": cands[m]["step"], "passed": rec["relative"] <= max_increase}
        confirmations.append(rec)
        say(
            f"confirmation of step {rec['step']}: {100 * rec['relative']:+.3f}% on "
            f"{len(confirm)} windows: {'passed' if rec['passed'] else 'FAILED, backing off'}"
        )
        if not rec["passed"]:
            failed.add(m)
        return rec["passed"]

    while True:
        while (k := ladder.next_step(cands, good)) is not None and budget_left():
            evaluate(tuple(range(k)), k)
        while (m := ladder.next_fill(cands, good)) is not None and budget_left():
            ladder.after_fill(evaluate(m, ladder.fill_label(m))["feasible"])
        ok = sorted((r["bytes"], m) for m, r in cands.items() if good(m))
        if not ok or len(confirmations) >= max_confirmations:
            break
        if confirmed(ok[0][1]):
            best_moves = ok[0][1]
            break
    # step 0, the file returned when nothing passed, never measured (the budget ended first):
    # build, judge and confirm it past the budget, as the image search does its mildest one
    unmeasured = () not in cands and not any(c["passed"] for c in confirmations)
    if unmeasured and len(confirmations) < max_confirmations and evaluate((), 0)["feasible"]:
        confirmed(())
    passed = [c for c in confirmations if c["passed"]]
    feasible = bool(passed)
    if not feasible and stopped == "converged":
        stopped = "infeasible"
    q_best, best = build(best_moves)
    size = file_bytes(best)

    # 5. reference and test
    def reference() -> tuple[dict[str, Any], Params]:
        q = gptq(dict.fromkeys(kernels, (space.reference_bits, 0.0)), sequential=True)
        return with_leaves(params, {**q, **qtables}, dequantized=False)

    ref = functools.cache(reference)

    ref_rec = store.memo(
        "reference/rank",
        lambda: {
            "bytes": file_bytes(ref()),
            **paired(base_rank, bits_on(jz_quant.dequantize_params(ref()), rank)),
        },
    )
    splits: dict[str, Any] = {
        "rank": {
            "windows": len(rank),
            "baseline": float(np.mean(base_rank)),
            "best": strip(cands.get(best_moves)),
            "reference": strip(ref_rec),
        },
        "confirm": {"windows": len(confirm), "best": passed[-1] if passed else None},
    }
    if base_conf is not None:
        splits["confirm"]["baseline"] = float(np.mean(base_conf))
    if test is not None:
        base_test = base_bits("test", test)
        best_deq = jz_quant.dequantize_params(best)
        t_best = store.memo(
            f"test/{settings_key(jsonable_config(config(best_moves)))}",
            lambda: paired(base_test, bits_on(best_deq, test)),
        )
        t_ref = store.memo(
            "test/reference",
            lambda: paired(base_test, bits_on(jz_quant.dequantize_params(ref()), test)),
        )
        splits["test"] = {
            "windows": len(test),
            "baseline": float(np.mean(base_test)),
            "best": strip(t_best),
            "reference": strip(t_ref),
        }
    per_kernel = choice_rows(
        config(best_moves),
        {**q_best, **qtables},
        tables,
        {p: group_size_for(layouts[p], space.group_size) for p in kernels},
        {p: {k: v["increase"] / base_probe for k, v in sens[p].items()} for p in kernels},
        table_inc / base_probe,
    )
    say(
        f"chosen: step {cands[best_moves]['step'] if best_moves in cands else 0}, {size:,} bytes "
        f"({'confirmed' if feasible else 'NOT feasible'}); uniform int{space.reference_bits} reference {ref_rec['bytes']:,} bytes"
    )
    return LMSearchResult(
        params=best,
        feasible=feasible,
        confirmed=feasible,
        stopped=stopped,
        bytes=size,
        choices=per_kernel,
        splits=splits,
        reference={
            "bits": space.reference_bits,
            "group_size": space.group_size,
            "bytes": ref_rec["bytes"],
        },
        trials=[strip(r) for r in cands.values()],
        confirmations=confirmations,
        sensitivity=sens,
        max_increase=float(max_increase),
    )
