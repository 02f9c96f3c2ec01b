"""Pools several runs of experiments/hinton_distill.py: one row per run, then the totals.

Usage:
  python experiments/hinton_seeds.py runs/hinton_protocol/seed*/hinton_distill.json

Each argument is a ``hinton_distill.json``. The table shows each run's seed, its
teacher / student-alone / distilled test errors and the fraction of the gap it
closes, ``(alone - distilled) / (alone - teacher)``. Below it come the mean of
the per-run closures and the **pooled** closure, the same fraction over the
summed error counts, which is the decision rule of
``experiments/hinton_protocol.md`` (target >= 0.80). Runs whose settings differ
in anything but the seed and the output directory are refused, so that a pooled
figure never mixes settings. A setting a run does not record (it predates the
option) counts as the script's default for it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for the imports below
import _common as common
import hinton_distill

TARGET = 0.8
MODELS = ("teacher", "student_alone", "student_distilled")
PER_RUN = ("seed", "out", "teacher_params", "progress", "data_dir")
"""Settings that may differ between pooled runs (a reused teacher is checked by its errors)."""


def script_defaults() -> dict[str, Any]:
    """``hinton_distill.py``'s default settings, as its JSON records them."""
    return common.settings(hinton_distill.parse_args([]))


def load(path: Path) -> dict[str, Any]:
    """One run's results, checked for the fields the table needs."""
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: expected a hinton_distill.json, could not read it ({e})") from e
    errors = results.get("test_errors") if isinstance(results, dict) else None
    if (
        not isinstance(errors, dict)
        or not all(type(errors.get(m)) is int and errors[m] >= 0 for m in MODELS)
        or not isinstance(results.get("settings"), dict)
    ):
        raise ValueError(
            f"{path}: expected a hinton_distill.json with 'test_errors' ({', '.join(MODELS)}: "
            "counts >= 0) and 'settings'; got something else"
        )
    return results


def pool(
    runs: list[dict[str, Any]], paths: list[Path], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Per-run rows, summed errors, the mean and the pooled closure.

    ``defaults`` fills in the settings a run does not record before they are
    compared (:func:`script_defaults` from :func:`main`).
    """
    if not runs:
        raise ValueError("expected at least one hinton_distill.json, got none")

    def compared(settings: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in {**(defaults or {}), **settings}.items() if k not in PER_RUN}

    shared = compared(runs[0]["settings"])
    for results, path in zip(runs[1:], paths[1:], strict=True):
        other = compared(results["settings"])
        if other != shared:
            diff = sorted(k for k in shared.keys() | other.keys() if shared.get(k) != other.get(k))
            raise ValueError(
                f"{path}: expected the settings of {paths[0]} apart from the seed, "
                f"got different {', '.join(diff)}"
            )
    closure = hinton_distill.gap_closure
    rows = [
        {
            "path": str(path),
            "seed": results["settings"].get("seed"),
            **{m: results["test_errors"][m] for m in MODELS},
            "closure": closure(results["test_errors"]),
        }
        for results, path in zip(runs, paths, strict=True)
    ]
    total = {m: sum(r[m] for r in rows) for m in MODELS}
    closures = [r["closure"] for r in rows if r["closure"] is not None]
    pooled = closure(total)
    return {
        "runs": rows,
        "total": total,
        "mean_closure": statistics.fmean(closures) if closures else None,
        "pooled_closure": pooled,
        "target": TARGET,
        "target_met": pooled is not None and pooled >= TARGET,
    }


def table(summary: dict[str, Any]) -> str:
    """The pooled summary as an aligned text table."""

    def frac(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    rows = [
        [r["seed"], r["teacher"], r["student_alone"], r["student_distilled"], frac(r["closure"])]
        for r in summary["runs"]
    ]
    t = summary["total"]
    rows.append(["sum", t["teacher"], t["student_alone"], t["student_distilled"]])
    lines = [common.format_table(["seed", "teacher", "alone", "distilled", "closure"], rows)]
    lines.append(f"mean of the per-run closures: {frac(summary['mean_closure'])}")
    verdict = "met" if summary["target_met"] else "not met"
    lines.append(
        f"pooled closure: {frac(summary['pooled_closure'])} "
        f"(target >= {summary['target']:.2f}: {verdict})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Prints the pooled table; exit status 2 with one line on bad input."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+", help="hinton_distill.json files")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead")
    args = p.parse_args(argv)
    try:
        summary = pool([load(path) for path in args.results], args.results, script_defaults())
    except ValueError as e:
        print(f"hinton_seeds.py: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
