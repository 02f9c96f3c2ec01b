"""A Markdown report of a search: tables and PNG plots."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxzip._io import atomic_write_bytes, atomic_write_text
from jaxzip.auto._drops import PAIRED_SE_METHOD
from jaxzip.auto._sensitivity import Sensitivity, plot_sensitivity, require_matplotlib
from jaxzip.auto._space import SearchResult

__all__ = ["REPORT_FILE", "write_report"]

REPORT_FILE = "report.md"


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def _trials_figure(result: SearchResult) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()

    def xy(trials: Any) -> tuple[list[int], list[float]]:
        return [t["bytes"] for t in trials], [t["accuracy"] for t in trials]

    for feasible, marker, color in ((False, "x", "tab:red"), (True, "o", "tab:green")):
        chosen = [t for t in result.trials if t["feasible"] == feasible]
        label = "feasible" if feasible else "infeasible"
        ax.scatter(*xy(chosen), marker=marker, color=color, label=label)
    ax.step(*xy(result.pareto), where="post", color="tab:blue", label="Pareto front")
    ax.axhline(
        result.baseline - result.max_drop,
        color="gray",
        linestyle="--",
        label=f"bound (baseline − {result.max_drop:g})",
    )
    ax.axhline(result.baseline, color="black", linewidth=0.8, label="baseline")
    ax.scatter(*xy([result.best]), s=160, facecolors="none", edgecolors="black", label="best")
    ax.set_xscale("log")
    ax.set_xlabel("compressed file bytes")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _layers_figure(result: SearchResult) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.5))
    ax_s, ax_b = fig.subplots(1, 2)
    layers = list(result.layers)
    x = range(len(layers))
    ax_s.bar(x, [result.best["sparsity"][p] for p in layers], color="tab:blue")
    ax_b.bar(x, [result.best["bits"][p] for p in layers], color="tab:orange")
    for ax, label in ((ax_s, "sparsity"), (ax_b, "k-means bits")):
        ax.set_xticks(list(x), layers, rotation=30, ha="right", fontsize="small")
        ax.set_ylabel(label)
    fig.tight_layout()
    return fig


def _time_figure(result: SearchResult) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    pts = [t for t in result.timeline if t.get("elapsed_s") is not None]
    if pts:
        ax.step(
            [t["elapsed_s"] for t in pts],
            [t["ratio"] for t in pts],
            where="post",
            marker="o",
            color="tab:blue",
        )
    ax.set_xlabel("search time (s)")
    ax.set_ylabel("best feasible ratio (validation)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _drop_lines(drops: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Accuracy drop on each split",
        "",
        f"Bound: {drops['bound_pp']:g} points. Standard error: {drops['se_method']}.",
        f"Paired standard error (from each example's result, where known): {PAIRED_SE_METHOD}.",
        "",
        "| split | examples | baseline | best | drop (points) | ± SE | ± paired SE |",
        "|---|---|---|---|---|---|---|",
    ]
    for split in ("validation", "confirmation", "test"):
        d = drops.get(split)
        if d is None:
            lines.append(f"| {split} | | | | not measured | | |")
            continue
        paired = f"{d['paired_se_pp']:.3f}" if "paired_se_pp" in d else "–"
        lines.append(
            f"| {split} | {d['n']} | {d['baseline_accuracy']:.4f} | {d['accuracy']:.4f} "
            f"| {d['drop_pp']:.3f} | {d['se_pp']:.3f} | {paired} |"
        )
    return lines


def _confirmation_lines(c: Mapping[str, Any]) -> list[str]:
    verdict = f"confirmed `{c['confirmed']}`" if c["confirmed"] else "NO candidate confirmed"
    lines = [
        "",
        "## Confirmation",
        "",
        f"Ranked on validation; the {c['ranked']} feasible candidates confirmed in ranking "
        f"order on a split of {c['n']} examples the search never ranked with (at most "
        f"{c['max_confirmations']} attempts; after a failure, candidates no more accurate "
        f"on validation are skipped: {c.get('skipped', 0)}; baseline there "
        f"{c['baseline']:.4f}): {verdict}.",
        "",
        "| candidate | bytes | ratio | validation acc | confirmation acc | drop | ± SE | passed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if c.get("confidence"):
        lines[4:4] = [
            f"A pass needs the drop plus {c['confidence']:g} standard errors (paired where "
            "shown as such) within the bound.",
            "",
        ]
    for a in c["attempts"]:
        se = a.get("paired_se", a.get("drop_se"))
        se_text = "–" if se is None else f"{se:.4f}" + (" paired" if "paired_se" in a else "")
        lines.append(
            f"| `{a['key']}` | {a['bytes']} | {a['ratio']:.2f}x | "
            f"{a['val_accuracy']:.4f} | {a['accuracy']:.4f} | {a['drop']:.4f} | {se_text} | "
            f"{'yes' if a['passed'] else 'no'} |"
        )
    return lines


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(
    result: SearchResult,
    out_dir: str | os.PathLike[str],
    *,
    sensitivity: Sensitivity | None = None,
    test_metrics: Mapping[str, Any] | None = None,
    drops: Mapping[str, Any] | None = None,
) -> Path:
    """Writes ``report.md`` and its PNG plots for a search result.

    The report has the baseline and best candidate (bytes, ratio, accuracy,
    feasibility), a per-layer table (sparsity, bits, bytes, entropy bound from
    :func:`jaxzip.codec.size_report`), the test metrics if given, and plots:
    ``trials.png`` (bytes vs accuracy, the Pareto front and the bound),
    ``sensitivity.png`` (if a sensitivity is given or in the result) and
    ``layers.png`` (per-layer sparsity and bits). Every file is written atomically.

    Args:
      result: a :class:`SearchResult`.
      out_dir: the directory (created if missing).
      sensitivity: the curves to plot; default ``result.sensitivity``.
      test_metrics: e.g. ``{"test_accuracy": 0.99}``, measured once at the end.
      drops: the drop on each split with its standard error (as ``jaxzip auto``'s
        ``auto.json`` holds it): a table.

    Returns:
      The path of ``report.md``.

    Raises:
      TypeError: ``result`` is not a :class:`SearchResult`.
      ImportError: matplotlib is not installed.

    Example:
      >>> import jax, tempfile, jax.numpy as jnp
      >>> from jaxzip.auto import SearchSpace, search
      >>> p = {"w": jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)}
      >>> acc = lambda q: 1.0 - float(jnp.abs(q["w"] - p["w"]).mean())
      >>> r = search(p, eval_fn=acc, max_drop=0.2, where="w", key=jax.random.key(0),
      ...            space=SearchSpace(sparsities=(0.0, 0.5), bits=(2,)))
      >>> path = write_report(r, tempfile.mkdtemp())
      >>> path.name, sorted(f.name for f in path.parent.glob("*.png"))[-1]
      ('report.md', 'trials.png')
    """
    if not isinstance(result, SearchResult):
        raise TypeError(f"write_report: result must be a SearchResult, got {type(result)!r}")
    require_matplotlib()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sens = sensitivity if sensitivity is not None else result.sensitivity
    best = result.best
    lines = [
        "# jaxzip auto: search report",
        "",
        f"Strategy `{result.strategy}`, {len(result.trials)} candidate trials "
        f"({result.computed} computed in the last run), stopped: {result.stopped}"
        + (
            " (every neighbour of the best, at every fine-tuning length, was tried: none is "
            "feasible and smaller)"
            if result.stopped == "exhausted"
            else ""
        )
        + ".",
        "",
        "| | value |",
        "|---|---|",
        f"| baseline accuracy (validation) | {result.baseline:.4f} |",
        f"| max drop | {result.max_drop:g} |",
        f"| best accuracy (validation) | {best['accuracy']:.4f} |",
        f"| feasible | {'yes' if result.feasible else 'NO: no candidate met the bound'} |",
        f"| file bytes | {best['bytes']} |",
        f"| dense float32 bytes | {best['dense_bytes']} |",
        f"| compression ratio | {best['ratio']:.2f}x |",
        f"| fine-tuning length (rounds) | {best.get('rounds', 1)} |",
    ]
    if any("distill" in t for t in result.trials):  # the search chose: say which way
        way = "on the labels" if best.get("distill", True) is False else "distilling"
        lines.append(f"| fine-tuning (chosen by the search) | {way} |")
    for k, v in (test_metrics or {}).items():
        lines.append(f"| {k} | {_fmt(v)} |")
    if drops is not None:
        lines += _drop_lines(drops)
    if result.confirmation is not None:
        lines += _confirmation_lines(result.confirmation)
    lines += [
        "",
        "## Best candidate per layer",
        "",
        "| leaf | sparsity | bits | bytes | entropy bound (bytes) |",
        "|---|---|---|---|---|",
    ]
    for path, nbytes in best["layer_bytes"].items():
        sp = best["sparsity"].get(path)
        bits = best["bits"].get(path)
        bound = best["layer_bound_bits"][path] / 8
        lines.append(
            f"| {path} | {'' if sp is None else f'{sp:.2f}'} | "
            f"{'' if bits is None else bits} | {nbytes} | {bound:.0f} |"
        )
    _save(_trials_figure(result), out / "trials.png")
    _save(_layers_figure(result), out / "layers.png")
    _save(_time_figure(result), out / "time.png")
    lines += [
        "",
        "## Trials",
        "",
        "![bytes vs accuracy](trials.png)",
        "",
        "![per-layer settings](layers.png)",
    ]
    lines += [
        "",
        "## Best ratio against time",
        "",
        "![best ratio against time](time.png)",
        "",
        "| search time (s) | ratio | bytes | candidate |",
        "|---|---|---|---|",
    ]
    for t in result.timeline:
        el = t.get("elapsed_s")
        lines.append(
            f"| {'' if el is None else f'{el:.1f}'} | {t['ratio']:.2f}x | "
            f"{t['bytes']} | `{t['key']}` |"
        )
    if sens is not None:
        _save(plot_sensitivity(sens), out / "sensitivity.png")
        lines += [
            "",
            "## Sensitivity",
            "",
            "Each layer alone pruned or weight-shared, no fine-tuning.",
            "",
            "![sensitivity](sensitivity.png)",
        ]
    lines += [
        "",
        "## Pareto front",
        "",
        "| bytes | ratio | accuracy | feasible |",
        "|---|---|---|---|",
    ]
    for t in result.pareto:
        lines.append(
            f"| {t['bytes']} | {t['ratio']:.2f}x | {t['accuracy']:.4f} | "
            f"{'yes' if t['feasible'] else 'no'} |"
        )
    path = out / REPORT_FILE
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
