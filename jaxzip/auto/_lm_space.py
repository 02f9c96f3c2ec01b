"""The options, result and bookkeeping of :func:`jaxzip.auto.search_lm`."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxzip._types import Params
from jaxzip.auto._common import check_bits_list, check_fraction_list
from jaxzip.auto._journal import Journal, SearchClock
from jaxzip.auto._lm_build import Choice
from jaxzip.data import TokenWindows
from jaxzip.paths import leaves_with_paths, selected_paths

__all__ = [
    "LM_SE_METHOD",
    "LMSearchResult",
    "LMSpace",
    "Store",
    "check_windows",
    "ckey",
    "jsonable_config",
    "paired",
    "strip",
    "table_paths",
]

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
        b = self.bits
        if (
            isinstance(b, (tuple, list))
            and b
            and not all(isinstance(x, int) and not isinstance(x, bool) and 2 <= x <= 8 for x in b)
        ):
            raise ValueError(f"bits: expected ints in 2..8, got {b!r}")
        bits = check_bits_list("bits", b)
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


class Store:
    """The journal, or a dict when there is none: records by key, written as they finish.

    Each new record gets ``elapsed_s``, the search time when it finished, on a
    :class:`jaxzip.auto._journal.SearchClock`: a record :meth:`memo` replays sets
    the clock to its time, so a resumed search makes its budget decisions as the
    run it continues made them and keeps what that run left of the budget.
    :meth:`memo` returns records without ``elapsed_s`` (results do not depend on it).
    """

    def __init__(self, journal: Journal | None) -> None:
        self.journal, self.mem = journal, {}
        self.clock = SearchClock()

    def elapsed(self) -> float:
        """Search seconds (:class:`jaxzip.auto._journal.SearchClock`)."""
        return self.clock.elapsed()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.journal.get(key) if self.journal is not None else self.mem.get(key)

    def put(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {**record, "elapsed_s": round(self.elapsed(), 3)}
        if self.journal is not None:
            self.journal.append(record)
            return self.journal.get(record["key"])
        self.mem[record["key"]] = record
        return record

    def memo(self, key: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        rec = self.get(key)
        if rec is None:
            rec = self.put({"key": key, **make()})
        else:
            self.clock.replayed(rec)
        return {k: v for k, v in rec.items() if k != "elapsed_s"}


def check_windows(name: str, w: Any) -> TokenWindows:
    if not isinstance(w, TokenWindows):
        raise TypeError(f"{name}: expected jaxzip.data.TokenWindows, got {type(w).__name__}")
    if len(w) < 2:
        raise ValueError(f"{name}: expected at least 2 windows, got {len(w)} in {w.name!r}")
    return w


def paired(base: np.ndarray, bits: np.ndarray) -> dict[str, float]:
    """bits per token, its increase over the baseline, relative, and the paired SE."""
    d = bits - base
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0
    b = float(np.mean(base))
    return {
        "bpb": float(np.mean(bits)),
        "increase": float(np.mean(d)),
        "relative": float(np.mean(d)) / b,
        "relative_se": se / b,
        "n": len(d),
    }


def ckey(c: Choice) -> str:
    return f"b{c[0]}" if c[1] == 0 else f"b{c[0]}s{c[1]:g}"


def jsonable_config(cfg: Mapping[str, Choice]) -> dict[str, list[Any]]:
    return {p: [int(b), float(s)] for p, (b, s) in cfg.items()}


def strip(rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if rec is None else {k: v for k, v in rec.items() if k not in ("key", "bits")}


def table_paths(params: Params, regex: str | None, layouts: Mapping[str, Any]) -> list[str]:
    if regex is None:
        return []
    found = [
        p
        for p in selected_paths(params, regex, allow_empty=True)
        if p not in layouts and np.ndim(_leaf(params, p)) == 2
    ]
    if not found:
        raise ValueError(f"tables: {regex!r} selects no 2-D leaf that no matmul consumes")
    return found


def _leaf(params: Params, path: str) -> Any:
    return dict(leaves_with_paths(params))[path]
