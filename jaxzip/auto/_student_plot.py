"""The plot of a student search: validation accuracy against size, with the budget."""

from __future__ import annotations

from typing import Any

from jaxzip.auto._students import StudentSearchResult


def plot_students(result: StudentSearchResult) -> Any:
    """Validation accuracy against parameter count, with the budget and the teacher.

    Trained candidates are points labelled by multiplier; skipped ones are marked
    on the x axis. matplotlib is imported here, not with jaxzip.

    Args:
      result: a :class:`StudentSearchResult`.

    Returns:
      A ``matplotlib.figure.Figure`` (no pyplot state; save it with ``savefig``).

    Raises:
      TypeError: ``result`` is not a StudentSearchResult.

    Example:
      >>> from jaxzip.auto import MLPFamily, StudentRecord
      >>> r = StudentRecord(multiplier=0.5, widths=(4,), params=50, f32_bytes=200,
      ...                   val_accuracy=0.9, seconds=1.0)
      >>> result = StudentSearchResult(family=MLPFamily(widths=(8,)), budget_params=60,
      ...     budget_bytes=None, teacher_val_accuracy=0.95, records=(r,))
      >>> plot_students(result).axes[0].get_xlabel()
      'parameters'
    """
    if not isinstance(result, StudentSearchResult):
        raise TypeError(f"plot_students: result must be a StudentSearchResult, got {result!r}")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.add_subplot()
    trained = sorted((r for r in result.records if r.skipped is None), key=lambda r: r.params)
    skipped = [r for r in result.records if r.skipped is not None]
    if trained:
        ax.plot(
            [r.params for r in trained], [r.val_accuracy for r in trained], "o-", label="student"
        )
        for r in trained:
            ax.annotate(
                f"x{r.multiplier:g}",
                (r.params, r.val_accuracy),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
            )
    if skipped:
        ax.plot(
            [r.params for r in skipped],
            [0.0] * len(skipped),
            "x",
            color="gray",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="skipped",
        )
    if result.budget_params is not None:
        budget, label = result.budget_params, f"budget ({result.budget_params:,} params)"
    else:
        budget, label = result.budget_bytes / 4, f"budget ({result.budget_bytes:,} f32 bytes)"
    ax.axvline(budget, color="red", linestyle="--", label=label)
    ax.axhline(result.teacher_val_accuracy, color="green", linestyle=":", label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Students distilled under a size budget")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
