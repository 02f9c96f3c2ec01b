"""``report.md`` of the language-model search: the splits, the per-kernel choices, the trials."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxzip._io import atomic_write_text
from jaxzip.auto._lm_build import Choice, qarray_bytes
from jaxzip.auto._lm_space import ckey

__all__ = ["choice_rows", "write_lm_report"]


def choice_rows(
    chosen: Mapping[str, Choice],
    stored: Mapping[str, Any],
    tables: Sequence[str],
    group_sizes: Mapping[str, int | None],
    solo: Mapping[str, Mapping[str, float]],
    table_solo: float,
) -> dict[str, dict[str, Any]]:
    """The result's per-leaf choices: each kernel's bits, sparsity, group size, shape, stored
    bytes and solo relative increase at its choice (``solo[path][ckey(choice)]``), then each
    embedding table (int8, rows; ``table_solo`` is all tables' solo increase)."""
    rows = {
        p: {
            "bits": c[0],
            "sparsity": c[1],
            "group_size": group_sizes[p],
            "shape": list(np.shape(stored[p])),
            "bytes": qarray_bytes(p, stored[p]),
            "solo_increase": solo[p][ckey(c)],
        }
        for p, c in chosen.items()
    }
    for p in tables:
        rows[p] = {
            "bits": 8,
            "sparsity": 0.0,
            "group_size": None,
            "table": True,
            "shape": list(np.shape(stored[p])),
            "bytes": qarray_bytes(p, stored[p]),
            "solo_increase": table_solo,
        }
    return rows


def _pct(rec: Mapping[str, Any] | None) -> str:
    if rec is None:
        return "-"
    return f"{100 * rec['relative']:+.3f}% ± {100 * rec['relative_se']:.3f}"


def _bpb(rec: Mapping[str, Any] | None) -> str:
    return "-" if rec is None else f"{rec['bpb']:.4f}"


def write_lm_report(summary: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Writes ``out_dir/report.md`` from the ``auto.json`` summary of a language-model search.

    Returns:
      The path written.
    """
    res = summary["result"]
    ref = res["reference"]
    cmp = summary["comparison"]
    lines = [
        f"# jaxzip auto (language model): {summary['config_name']}",
        "",
        f"Bound: bits per byte at most +{summary['max_drop_pct']:g}% over the float model on "
        f"the ranking split; the chosen candidate confirmed on the confirmation split "
        f"({'confirmed' if res['confirmed'] else 'NOT confirmed: no candidate passed'}); the "
        f"test split reported once. Stopped: {res['stopped']}. Wall time "
        f"{summary['wall_time_s']:.0f} s.",
        "",
        f"File: **{res['bytes']:,} bytes**, against {ref['bytes']:,} bytes for uniform "
        f"int{ref['bits']} GPTQ at groups of {ref['group_size']} with the same embedding "
        f"tables ({cmp['ratio_to_reference']:.3f} of it).",
        "",
        "| split | windows | float bpb | chosen bpb | increase ± SE | "
        f"int{ref['bits']} g{ref['group_size']} bpb | increase ± SE |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("rank", "confirm", "test"):
        s = res["splits"].get(name)
        if s is None:
            continue
        base = s.get("baseline")
        lines.append(
            f"| {name} | {s['windows']} | {'-' if base is None else f'{base:.4f}'} | "
            f"{_bpb(s.get('best'))} | {_pct(s.get('best'))} | {_bpb(s.get('reference'))} | "
            f"{_pct(s.get('reference'))} |"
        )
    lines += [
        "",
        f"Standard errors: {summary['se_method']}.",
        "",
        "## Per-kernel choices",
        "",
        "| leaf | shape | bits | sparsity | group | bytes | solo increase (probe) |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, c in res["choices"].items():
        group = "row" if c.get("table") else c["group_size"]
        lines.append(
            f"| {path} | {'x'.join(map(str, c['shape']))} | {c['bits']} | {c['sparsity']:g} | "
            f"{group} | {c['bytes']:,} | {100 * c['solo_increase']:+.3f}% |"
        )
    lines += [
        "",
        "## Candidates (ranking split)",
        "",
        "| step | bytes | predicted | measured ± SE |",
        "|---|---|---|---|",
    ]
    for t in res["trials"]:
        lines.append(f"| {t['step']} | {t['bytes']:,} | {100 * t['predicted']:+.3f}% | {_pct(t)} |")
    for c in res["confirmations"]:
        lines.append("")
        lines.append(
            f"Confirmation of step {c['step']}: {_pct(c)} "
            f"({'passed' if c['passed'] else 'failed'})."
        )
    path = Path(out_dir) / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
