"""``jaxzip auto``: the accuracy-bounded compression search's subcommand (see :mod:`jaxzip.cli`)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from jaxzip.config import names


def _add_auto_command(commands: argparse._SubParsersAction) -> None:
    auto = commands.add_parser(
        "auto",
        help="search per-layer sparsity and bits for the smallest file within an accuracy drop",
        description="Search per-layer pruning sparsity and k-means bits for the smallest "
        "compressed file whose validation accuracy stays within --max-drop percentage points "
        "of the config's model (for a config on text, a language model: per-kernel GPTQ bit "
        "widths 2/3/4/8 whose validation bits per byte stay within +--max-drop percent); "
        "the chosen candidate is then confirmed on a share of the "
        "validation split (--confirm-fraction) that the search never ranked with. Every trial "
        "goes to OUT/journal.jsonl as it finishes; rerunning "
        "the same command resumes without redoing trials. Writes best.jz, best.json, auto.json "
        "and report.md to OUT.",
    )
    auto.add_argument("config", metavar="CONFIG", help="experiment config (TOML)")
    auto.add_argument(
        "--max-drop",
        required=True,
        metavar="PP",
        help="allowed validation accuracy drop in percentage points, e.g. 0.1; for a "
        "language model (text data), the allowed increase of held-out bits per byte in "
        "percent, e.g. 2 for +2%%",
    )
    auto.add_argument(
        "--time-budget",
        metavar="T",
        help="stop starting trials after T (600s, 10m, 1h; a bare number is seconds)",
    )
    auto.add_argument("--max-trials", metavar="N", help="at most N candidate trials")
    auto.add_argument(
        "--confirm-fraction",
        metavar="F",
        default="0.5",
        help="share of the validation split held out to confirm the chosen candidate on, "
        "a number in (0, 1) (default 0.5)",
    )
    auto.add_argument(
        "--confidence",
        metavar="Z",
        default="0",
        help="count a candidate as within --max-drop (on the ranking split and at its "
        "confirmation) only if its drop plus Z paired standard errors is, e.g. 1.645 for the "
        "one-sided 95%% upper limit (default 0: the drop alone); image data only",
    )
    auto.add_argument(
        "--out", metavar="DIR", help="output directory (default: runs/<experiment.name>_auto)"
    )
    auto.add_argument(
        "--strategy",
        choices=names("strategy"),
        default="greedy",
        help="greedy allocation from sensitivity curves (default) or optuna",
    )
    auto.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config setting",
    )
    auto.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars on stderr"
    )


def parse_duration(text: str) -> float:
    """Seconds in ``"600s"``, ``"10m"``, ``"1.5h"`` or ``"90"``; must be > 0.

    Example:
      >>> parse_duration("10m"), parse_duration("1h"), parse_duration("45")
      (600.0, 3600.0, 45.0)
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    scale = units.get(t[-1:])
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(
            f"--time-budget: expected a positive duration like 600s, 10m or 1h, got {text!r}"
        )
    return value


def _number_arg(name: str, text: str, *, integer: bool, what: str = "") -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    ok = value is not None and (value >= 1 if integer else 0 <= value < float("inf"))
    if not ok:
        want = what or ("an integer >= 1" if integer else "a number of percentage points >= 0")
        raise ValueError(f"{name}: expected {want}, got {text!r}")
    return value


def _fraction_arg(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise ValueError(f"{name}: expected a number in (0, 1), e.g. 0.5, got {text!r}")
    return value


def _drop_text(d: dict[str, Any] | None) -> str:
    """``"0.25 +- 0.12"`` (drop and standard error in points), the paired one where known."""
    if d is None:
        return "-"
    return f"{d['drop_pp']:.2f} +- {d.get('paired_se_pp', d['se_pp']):.2f}"


def _status(res: dict[str, Any]) -> str:
    """``feasible``, or why not: no confirmation passed, or no candidate met the bound."""
    c = res.get("confirmation")
    if res["feasible"]:
        return "feasible"
    if c is not None and c.get("attempts") and c.get("confirmed") is None:
        return "NOT feasible: no candidate passed its confirmation"
    return "NOT feasible (no candidate met the bound)"


def _one_line(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    print(f"jaxzip auto: warning: {message}", file=sys.stderr, flush=True)


def _auto(args: argparse.Namespace) -> int:
    from jaxzip.auto import BudgetTooSmall, NoisyBoundWarning
    from jaxzip.config import apply_overrides, load_config
    from jaxzip.pipeline import run_auto

    max_drop = _number_arg("--max-drop", args.max_drop, integer=False)
    fraction = _fraction_arg("--confirm-fraction", args.confirm_fraction)
    confidence = _number_arg("--confidence", args.confidence, integer=False, what="a number >= 0")
    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    trials = (
        None
        if args.max_trials is None
        else int(_number_arg("--max-trials", args.max_trials, integer=True))
    )
    cfg = apply_overrides(load_config(args.config), args.overrides)
    out_dir = Path(args.out) if args.out else Path("runs") / f"{cfg.experiment.name}_auto"
    try:
        with warnings.catch_warnings():  # a warning shown is one line on stderr, at once
            warnings.simplefilter("always", NoisyBoundWarning)
            warnings.showwarning = _one_line
            summary = run_auto(
                cfg,
                out_dir,
                max_drop_pp=max_drop,
                time_budget_s=budget,
                max_trials=trials,
                strategy=args.strategy,
                progress=args.progress,
                confirm_fraction=fraction,
                confidence=confidence,
            )
    except BudgetTooSmall as e:  # one line (jaxzip.cli): name the flag the user gave
        raise BudgetTooSmall(
            f"--time-budget {args.time_budget}: {str(e).removeprefix('time_budget_s: ')}"
        ) from None
    if summary.get("kind") == "lm":
        _print_lm(summary, out_dir)
        return 0
    best, res = summary["result"]["best"], summary["result"]
    print(
        f"best: {best['bytes']} bytes, {best['ratio']:.2f}x, val accuracy "
        f"{best['accuracy']:.4f} (baseline {res['baseline']:.4f}), {_status(res)}; "
        f"test accuracy {summary['test']['best_test_accuracy']:.4f}"
    )
    drops = summary.get("drops") or {}
    print(
        f"stopped: {res.get('stopped', '-')}; accuracy drop in points (+- standard error, paired "
        f"where per-example results are known), validation "
        f"{_drop_text(drops.get('validation'))} / confirmation "
        f"{_drop_text(drops.get('confirmation'))} / test {_drop_text(drops.get('test'))}"
    )
    print(f"wrote {out_dir / 'auto.json'}, best.jz, journal.jsonl")
    return 0


def _print_lm(summary: dict[str, Any], out_dir: Path) -> None:
    res, cmp = summary["result"], summary["comparison"]
    status = "confirmed" if res["confirmed"] else "NOT feasible: no candidate passed"
    print(
        f"best: {res['bytes']} bytes ({status}), uniform int{res['reference']['bits']} GPTQ "
        f"g{res['reference']['group_size']} {cmp['reference_bytes']} bytes "
        f"({cmp['ratio_to_reference']:.3f} of it); stopped: {res['stopped']}"
    )
    parts = []
    for name in ("rank", "confirm", "test"):
        best = (res["splits"].get(name) or {}).get("best")
        if best is not None:
            parts.append(f"{name} {100 * best['relative']:+.3f} +- {100 * best['relative_se']:.3f}")
    print(f"bits per byte increase in % (+- SE): {' / '.join(parts)}")
    print(f"wrote {out_dir / 'auto.json'}, best.jz, report.md, journal.jsonl")
