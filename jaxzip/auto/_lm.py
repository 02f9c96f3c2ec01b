"""``search_lm``: per-kernel bit widths (GPTQ in the loop) for a language model under a bound
on the increase of its held-out bits per token."""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxzip import codec as jz_codec
from jaxzip import layout as jz_layout
from jaxzip import quant as jz_quant
from jaxzip._types import Params
from jaxzip.auto._common import check_bits_list, check_fraction_list, settings_key
from jaxzip.auto._journal import Journal
from jaxzip.auto._lm_build import (
    TABLE_SPEC,
    Choice,
    group_size_for,
    qarray_bytes,
    quantize_kernels,
    window_bits,
    with_leaves,
)
from jaxzip.data import TokenWindows
from jaxzip.paths import leaves_with_paths, selected_paths

__all__ = ["LM_SE_METHOD", "LMSearchResult", "LMSpace", "search_lm"]

LM_SE_METHOD = (
    "paired standard error over windows: std(d, ddof=1) / sqrt(n) of the per-window "
    "differences d = candidate bits - baseline bits on the same n windows, over the baseline's "
    "mean bits per token"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LMSpace:
    """The per-kernel choices of :func:`search_lm`.

    Attributes:
      bits: the bit widths a kernel may take (2..8).
      sparsities: unstructured sparsities (SparseGPT with joint quantization above 0).
      group_size: one scale per this many inputs (the whole last input axis where it
        does not divide it).
      symmetric: the symmetric grid (zero point 0) or the asymmetric one.
      tables: a regex of the leaves stored as int8 with one scale per row (embedding
        tables; 2-D leaves no matmul consumes), or None to keep every such leaf float.
      probe_windows: the sensitivities are measured on this many ranking windows.
      reference_bits: the uniform GPTQ setting reported beside the result.
    """

    bits: tuple[int, ...] = (2, 3, 4, 8)
    sparsities: tuple[float, ...] = (0.0,)
    group_size: int = 64
    symmetric: bool = True
    tables: str | None = None
    probe_windows: int = 128
    reference_bits: int = 4

    def __post_init__(self) -> None:
        bits = check_bits_list("bits", self.bits)
        if min(bits) < 2:
            raise ValueError(f"bits: expected ints in 2..8, got {self.bits!r}")
        object.__setattr__(self, "bits", tuple(sorted(bits)))
        object.__setattr__(self, "sparsities", check_fraction_list("sparsities", self.sparsities))
        for name in ("group_size", "probe_windows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        r = self.reference_bits
        if isinstance(r, bool) or not isinstance(r, int) or not 2 <= r <= 8:
            raise ValueError(f"reference_bits: expected an int in 2..8, got {r!r}")
        if not isinstance(self.symmetric, bool):
            raise ValueError(f"symmetric: expected a bool, got {self.symmetric!r}")
        if self.tables is not None and not isinstance(self.tables, str):
            raise ValueError(f"tables: expected a regex string or None, got {self.tables!r}")

    def choices(self) -> list[Choice]:
        return [(b, s) for b, s in itertools.product(self.bits, self.sparsities)]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass(frozen=True)
class LMSearchResult:
    """What :func:`search_lm` found (see :meth:`to_dict` for the JSON form).

    ``params`` is the chosen model as stored (QArray kernels, int8 tables);
    ``choices`` per kernel ``{bits, sparsity, group_size, bytes}``; ``splits``
    per split ``{baseline, best, reference}`` bits per token with the relative
    increases and their standard errors; ``trials`` every candidate evaluated.
    """

    params: Params
    feasible: bool
    confirmed: bool
    stopped: str
    bytes: int
    choices: dict[str, dict[str, Any]]
    splits: dict[str, Any]
    reference: dict[str, Any]
    trials: list[dict[str, Any]]
    confirmations: list[dict[str, Any]]
    sensitivity: dict[str, dict[str, Any]]
    max_increase: float

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del d["params"]
        return d


class _Store:
    """The journal, or a dict when there is none: records by key, written as they finish."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal, self.mem = journal, {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.journal.get(key) if self.journal is not None else self.mem.get(key)

    def put(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.journal is not None:
            self.journal.append(record)
            return self.journal.get(record["key"])
        self.mem[record["key"]] = record
        return record

    def memo(self, key: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        rec = self.get(key)
        return rec if rec is not None else self.put({"key": key, **make()})


def _check_windows(name: str, w: Any) -> TokenWindows:
    if not isinstance(w, TokenWindows):
        raise TypeError(f"{name}: expected jaxzip.data.TokenWindows, got {type(w).__name__}")
    if len(w) < 2:
        raise ValueError(f"{name}: expected at least 2 windows, got {len(w)} in {w.name!r}")
    return w


def _paired(base: np.ndarray, bits: np.ndarray) -> dict[str, float]:
    """bits per token, its increase over the baseline, relative, and the paired SE."""
    d = bits - base
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    b = float(np.mean(base))
    return {"bpb": float(np.mean(bits)), "increase": float(np.mean(d)),
            "relative": float(np.mean(d)) / b, "relative_se": se / b, "n": len(d)}  # fmt: skip


def _hull_moves(points: Sequence[tuple[int, float]]) -> list[tuple[float, int, int]]:
    """Steps down one kernel's lower convex hull of (bytes, increase): ``(slope, from, to)``
    indices into ``points``, from the least increase to the fewest bytes."""
    cur = min(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    moves = []
    while True:
        b0, i0 = points[cur]
        nxt = [(( points[j][1] - i0) / (b0 - points[j][0]), points[j][0], j)
               for j in range(len(points)) if points[j][0] < b0]  # fmt: skip
        if not nxt:
            return moves
        slope, _, j = min(nxt)
        moves.append((slope, cur, j))
        cur = j


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
       infeasible steps are adjacent, or the budget ends.
    4. Confirmation: the smallest feasible candidate is evaluated once on
       ``confirm`` (never ranked with); if its increase there is over the bound,
       it counts as infeasible and the search goes on below it (at most
       ``max_confirmations`` confirmations).
    5. ``test`` (if given) is evaluated once for the float model, the result and
       the uniform ``space.reference_bits``-bit GPTQ reference, and only reported.

    Every evaluation (baselines, sensitivities, candidates, confirmations, tests)
    is a ``journal`` record, so a rerun with the same journal repeats none and,
    every decision being made from recorded values, ends in the same result
    (given the same ``max_trials``; a time budget cuts where it cuts).

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
      time_budget_s: stop starting candidate trials after this many seconds.
      max_trials: at most this many candidate trials (confirmations not counted).
      max_confirmations: at most this many confirmations.
      batch_size: windows per evaluation batch.
      progress: a line per step on stderr.

    Returns:
      An :class:`LMSearchResult`; ``feasible`` and ``confirmed`` False when no
      candidate met the bound, ``params`` then the least-increase one.

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
        raise ValueError(f"max_increase: expected a relative increase > 0 (0.02 is +2%), "
                         f"got {max_increase!r}")  # fmt: skip
    for name, v in (("max_trials", max_trials), ("max_confirmations", max_confirmations),
                    ("batch_size", batch_size)):  # fmt: skip
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"time_budget_s: expected seconds > 0, got {time_budget_s!r}")
    rank, confirm = _check_windows("rank", rank), _check_windows("confirm", confirm)
    test = None if test is None else _check_windows("test", test)
    calib = list(calib_batches)
    if not calib:
        raise ValueError("calib_batches: expected at least one batch of tokens, got none")

    start = time.perf_counter()
    store = _Store(journal)
    say = (lambda msg: print(f"jaxzip auto (lm): {msg}", file=sys.stderr, flush=True)) if progress \
        else (lambda msg: None)  # fmt: skip
    fwd = lambda p, x: apply_fn(p, x, train=False, key=None)  # noqa: E731
    layouts = jz_layout.trace_layouts(fwd, params, calib[0][:1])
    kernels = list(layouts)
    tables = _tables(params, space.tables, layouts)
    qtables = {p: jz_quant.quantize(x, TABLE_SPEC) for p, x in leaves_with_paths(params)
               if p in tables}  # fmt: skip

    def bits_on(p: Params, w: TokenWindows) -> np.ndarray:
        return window_bits(apply_fn, p, w, batch_size=batch_size)

    def base_bits(split: str, w: TokenWindows) -> np.ndarray:
        rec = store.memo(f"baseline/{split}", lambda: {"bits": bits_on(params, w).tolist()})
        return np.asarray(rec["bits"], np.float64)

    base_rank = base_bits("rank", rank)
    probe = TokenWindows(x=rank.x[: space.probe_windows], y=rank.y[: space.probe_windows],
                         vocab_size=rank.vocab_size, name=f"{rank.name}[:probe]")  # fmt: skip
    base_probe = float(np.mean(base_rank[: len(probe)]))
    say(f"float model: {float(np.mean(base_rank)):.4f} bits per token on {len(rank)} ranking "
        f"windows; bound +{100 * max_increase:g}%")  # fmt: skip

    # 1. sensitivity
    sens: dict[str, dict[str, Any]] = {}
    for c in space.choices():
        keys, q = {p: f"sens/{_ckey(c)}/{p}" for p in kernels}, {}
        if any(store.get(k) is None for k in keys.values()):
            say(f"sensitivity at {_ckey(c)}: {len(kernels)} kernels")
            q = quantize_kernels(fwd, params, calib, dict.fromkeys(kernels, c), layouts=layouts,
                                 group_size=space.group_size, symmetric=space.symmetric,
                                 sequential=False)  # fmt: skip
        for p, k in keys.items():
            rec = store.memo(k, lambda p=p, q=q: {
                "increase": float(np.mean(bits_on(with_leaves(params, {p: q[p]}, dequantized=True),
                                                   probe))) - base_probe,
                "bytes": qarray_bytes(p, q[p])})  # fmt: skip
            sens.setdefault(p, {})[_ckey(c)] = {"increase": rec["increase"], "bytes": rec["bytes"]}
    table_inc = 0.0
    if tables:
        table_inc = store.memo("sens/tables", lambda: {"increase": float(np.mean(bits_on(
            with_leaves(params, qtables, dequantized=True), probe))) - base_probe})["increase"]  # fmt: skip

    # 2. allocation: hull steps by increase per byte saved
    choices = space.choices()
    points = {p: [(sens[p][_ckey(c)]["bytes"], sens[p][_ckey(c)]["increase"]) for c in choices]
              for p in kernels}  # fmt: skip
    steps = sorted((slope, ki, si, frm, to) for ki, p in enumerate(kernels)
                   for si, (slope, frm, to) in enumerate(_hull_moves(points[p])))  # fmt: skip
    first = {p: min(range(len(choices)), key=lambda i, p=p: (points[p][i][1], -points[p][i][0]))
             for p in kernels}  # fmt: skip

    def config(k: int) -> dict[str, Choice]:
        at = dict(first)
        for _, ki, _, _, to in steps[:k]:
            at[kernels[ki]] = to
        return {p: choices[at[p]] for p in kernels}

    def predicted(k: int) -> float:
        return (table_inc + sum(points[p][choices.index(c)][1] for p, c in config(k).items())) \
            / base_probe  # fmt: skip

    def build(k: int) -> tuple[dict[str, Any], Params]:
        q = quantize_kernels(fwd, params, calib, config(k), layouts=layouts,
                             group_size=space.group_size, symmetric=space.symmetric,
                             sequential=True)  # fmt: skip
        return q, with_leaves(params, {**q, **qtables}, dequantized=False)

    def file_bytes(stored: Params) -> int:
        return len(jz_codec.encode(stored))

    # 3. search
    n_steps = len(steps)
    trials: dict[int, dict[str, Any]] = {}
    failed: set[int] = set()
    confirmations: list[dict[str, Any]] = []
    stopped = "converged"

    def evaluate(k: int) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            _, stored = build(k)
            deq = jz_quant.dequantize_params(stored)
            return {"step": k, "bytes": file_bytes(stored), "predicted": predicted(k),
                    **_paired(base_rank, bits_on(deq, rank))}  # fmt: skip

        rec = store.memo(f"cand/{settings_key(_jsonable(config(k)))}", make)
        rec = {**rec, "feasible": rec["relative"] <= max_increase}
        trials[k] = rec
        say(f"trial {len(trials)}: step {k}/{n_steps}, {rec['bytes']:,} bytes, "
            f"{100 * rec['relative']:+.3f}% (predicted {100 * rec['predicted']:+.3f}%): "
            f"{'feasible' if rec['feasible'] else 'over the bound'}")  # fmt: skip
        return rec

    def bounds() -> tuple[int, int]:
        ok = [k for k, r in trials.items() if r["feasible"] and k not in failed]
        bad = [k for k, r in trials.items() if not r["feasible"] or k in failed]
        return max(ok, default=-1), min(bad, default=n_steps + 1)

    def next_step() -> int | None:
        lo, hi = bounds()
        if hi - lo <= 1 or (lo == -1 and 0 in trials):
            return None
        ratio = 1.0
        last = [r for r in trials.values() if r["predicted"] > 0 and r["relative"] > 0]
        if last:  # the latest trial's measured / predicted increase
            ratio = min(max(last[-1]["relative"] / last[-1]["predicted"], 0.25), 4.0)
        fit = [k for k in range(max(lo, 0), min(hi, n_steps + 1))
               if predicted(k) * ratio <= max_increase]  # fmt: skip
        guess = max(fit, default=lo + 1 if lo >= 0 else 0)
        if lo >= 0 and hi <= n_steps:  # safeguard: inside the middle half of (lo, hi)
            q = max((hi - lo) // 4, 1)
            guess = min(max(guess, lo + q), hi - q)
        guess = min(max(guess, lo + 1), hi - 1)
        return None if guess in trials else guess

    def budget_left() -> bool:
        nonlocal stopped
        if max_trials is not None and len(trials) >= max_trials:
            stopped = "max_trials"
        elif time_budget_s is not None and time.perf_counter() - start >= time_budget_s:
            stopped = "time_budget"
        else:
            return True
        return False

    base_conf = None
    while True:
        while (k := next_step()) is not None and budget_left():
            evaluate(k)
        ok = sorted((r["bytes"], k) for k, r in trials.items() if r["feasible"] and k not in failed)
        if not ok or len(confirmations) >= max_confirmations:
            break
        k = ok[0][1]
        if base_conf is None:
            base_conf = base_bits("confirm", confirm)

        def conf(k: int = k, base: np.ndarray = base_conf) -> dict[str, Any]:
            deq = jz_quant.dequantize_params(build(k)[1])
            return _paired(base, bits_on(deq, confirm))

        rec = store.memo(f"confirm/{settings_key(_jsonable(config(k)))}", conf)
        rec = {**rec, "step": k, "passed": rec["relative"] <= max_increase}
        confirmations.append(rec)
        say(f"confirmation of step {k}: {100 * rec['relative']:+.3f}% on {len(confirm)} windows: "
            f"{'passed' if rec['passed'] else 'FAILED, backing off'}")  # fmt: skip
        if rec["passed"]:
            break
        failed.add(k)
    passed = [c for c in confirmations if c["passed"]]
    feasible = bool(passed)
    k_best = passed[-1]["step"] if passed else 0
    if not feasible and stopped == "converged":
        stopped = "infeasible"
    q_best, best = build(k_best)
    size = file_bytes(best)

    # 5. reference and test
    def reference() -> tuple[dict[str, Any], Params]:
        q = quantize_kernels(fwd, params, calib, dict.fromkeys(kernels, (space.reference_bits, 0.0)),
                             layouts=layouts, group_size=space.group_size,
                             symmetric=space.symmetric, sequential=True)  # fmt: skip
        return with_leaves(params, {**q, **qtables}, dequantized=False)

    ref_params: list[Params] = []

    def ref() -> Params:
        if not ref_params:
            ref_params.append(reference())
        return ref_params[0]

    ref_rec = store.memo("reference/rank", lambda: {
        "bytes": file_bytes(ref()),
        **_paired(base_rank, bits_on(jz_quant.dequantize_params(ref()), rank))})  # fmt: skip
    splits: dict[str, Any] = {
        "rank": {"windows": len(rank), "baseline": float(np.mean(base_rank)),
                 "best": trials.get(k_best) if k_best in trials else None,
                 "reference": _strip(ref_rec)},
        "confirm": {"windows": len(confirm), "best": passed[-1] if passed else None},
    }  # fmt: skip
    if base_conf is not None:
        splits["confirm"]["baseline"] = float(np.mean(base_conf))
    if test is not None:
        base_test = base_bits("test", test)
        best_deq = jz_quant.dequantize_params(best)
        t_best = store.memo("test/best", lambda: _paired(base_test, bits_on(best_deq, test)))
        t_ref = store.memo("test/reference", lambda: _paired(
            base_test, bits_on(jz_quant.dequantize_params(ref()), test)))  # fmt: skip
        splits["test"] = {"windows": len(test), "baseline": float(np.mean(base_test)),
                          "best": _strip(t_best), "reference": _strip(t_ref)}  # fmt: skip
    chosen = config(k_best)
    per_kernel = {
        p: {"bits": chosen[p][0], "sparsity": chosen[p][1],
            "group_size": group_size_for(layouts[p], space.group_size),
            "shape": list(np.shape(q_best[p])), "bytes": qarray_bytes(p, q_best[p]),
            "solo_increase": sens[p][_ckey(chosen[p])]["increase"] / base_probe}
        for p in kernels
    }  # fmt: skip
    for p in tables:
        per_kernel[p] = {"bits": 8, "sparsity": 0.0, "group_size": None, "table": True,
                         "shape": list(np.shape(qtables[p])),
                         "bytes": qarray_bytes(p, qtables[p]),
                         "solo_increase": table_inc / base_probe}  # fmt: skip
    say(f"chosen: step {k_best}, {size:,} bytes ({'confirmed' if feasible else 'NOT feasible'}); "
        f"uniform int{space.reference_bits} reference {ref_rec['bytes']:,} bytes")  # fmt: skip
    return LMSearchResult(
        params=best, feasible=feasible, confirmed=feasible, stopped=stopped, bytes=size,
        choices=per_kernel, splits=splits,
        reference={"bits": space.reference_bits, "group_size": space.group_size,
                   "bytes": ref_rec["bytes"]},
        trials=[_strip(trials[k]) for k in sorted(trials)], confirmations=confirmations,
        sensitivity=sens, max_increase=float(max_increase),
    )  # fmt: skip


def _ckey(c: Choice) -> str:
    return f"b{c[0]}" if c[1] == 0 else f"b{c[0]}s{c[1]:g}"


def _jsonable(cfg: Mapping[str, Choice]) -> dict[str, list[Any]]:
    return {p: [int(b), float(s)] for p, (b, s) in cfg.items()}


def _strip(rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if rec is None else {k: v for k, v in rec.items() if k not in ("key", "bits")}


def _tables(params: Params, regex: str | None, layouts: Mapping[str, Any]) -> list[str]:
    if regex is None:
        return []
    found = [p for p in selected_paths(params, regex, allow_empty=True)
             if p not in layouts and np.ndim(_leaf(params, p)) == 2]  # fmt: skip
    if not found:
        raise ValueError(f"tables: {regex!r} selects no 2-D leaf that no matmul consumes")
    return found


def _leaf(params: Params, path: str) -> Any:
    return dict(leaves_with_paths(params))[path]
