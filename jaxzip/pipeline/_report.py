"""The results table ``jaxzip run`` prints (one row per (stage, metric)) and ``report.md``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxzip._io import atomic_write_text
from jaxzip.pipeline._state import RunState

__all__ = ["REPORT_FILE", "format_markdown", "format_table", "format_value", "report_stage"]

REPORT_FILE = "report.md"
"""The file the ``report`` stage writes to the output directory."""


def format_value(value: Any) -> str:
    """A metric value for the table: integers as is, |x| <= 1 to 4 places, others to 2.

    Example:
      >>> format_value(1234), format_value(0.98765), format_value(12.3456), format_value(None)
      ('1234', '0.9877', '12.35', '-')
    """
    if value is None:
        return "-"
    if isinstance(value, int):  # bool included
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) <= 1 else f"{value:.2f}"
    return str(value)


def format_table(results: Mapping[str, Any]) -> str:
    """Formats ``results["stages"]`` and ``results["wall_time_s"]`` as an aligned table.

    Args:
      results: as returned by :func:`jaxzip.pipeline.run_experiment`.

    Returns:
      The table (no trailing newline): a ``stage  metric  value`` header, a rule,
      each stage's metrics followed by its wall time, and the total time.

    Example:
      >>> print(format_table({"stages": {"evaluate": {"test_accuracy": 0.975}},
      ...                     "wall_time_s": {"evaluate": 0.5, "total": 2.0}}))
      stage     metric         value
      --------  -------------  ------
      evaluate  test_accuracy  0.9750
      evaluate  wall_time_s    0.5000
      total     wall_time_s    2.00
    """
    rows = [("stage", "metric", "value"), *_rows(results)]
    wall = results.get("wall_time_s", {})
    if "total" in wall:
        rows.append(("total", "wall_time_s", format_value(wall["total"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    rule = tuple("-" * w for w in widths)
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        for r in [rows[0], rule, *rows[1:]]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _rows(results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    wall, cached = results.get("wall_time_s", {}), set(results.get("cached", ()))
    rows = []
    for stage, metrics in results.get("stages", {}).items():
        rows.extend((stage, name, format_value(v)) for name, v in metrics.items())
        if stage in cached:
            rows.append((stage, "cached", "yes"))
        if stage in wall:
            rows.append((stage, "wall_time_s", format_value(wall[stage])))
    return rows


def format_markdown(results: Mapping[str, Any], *, title: str) -> str:
    """``results`` as a Markdown document: a heading and a ``stage | metric | value`` table.

    Args:
      results: ``stages`` (name -> metrics), ``wall_time_s`` and ``cached`` (stage
        names restored from the stage cache), as in :func:`jaxzip.pipeline.run_experiment`.
      title: the heading (the experiment's name).

    Returns:
      The Markdown text, ending in a newline.

    Example:
      >>> print(format_markdown({"stages": {"evaluate": {"test_accuracy": 0.975}},
      ...                        "cached": ["evaluate"]}, title="demo"), end="")
      # demo
      <BLANKLINE>
      | stage | metric | value |
      | --- | --- | --- |
      | evaluate | test_accuracy | 0.9750 |
      | evaluate | cached | yes |
    """
    lines = [f"# {title}", "", "| stage | metric | value |", "| --- | --- | --- |"]
    for row in _rows(results):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def report_stage(cfg: Any, state: RunState) -> tuple[dict, dict]:
    """Stage: writes ``out_dir/report.md``, the :func:`format_markdown` of the stages before it.

    Reads ``results`` (the runner's record of the stages so far) and ``out_dir``
    from ``state``; sets no field.
    """
    path = Path(state.out_dir) / REPORT_FILE
    text = format_markdown(state.results, title=cfg.experiment.name)
    atomic_write_text(path, text)
    return {}, {}
