"""Tests for jaxzip/pipeline/_report.py: the printed results table."""

from __future__ import annotations

from jaxzip.pipeline import format_table, format_value


def test_format_value_by_hand():
    assert format_value(13706) == "13706"
    assert format_value(True) == "True"
    assert format_value(0.96378) == "0.9638"
    assert format_value(-0.5) == "-0.5000"
    assert format_value(1.0) == "1.0000"
    assert format_value(37.444) == "37.44"
    assert format_value(None) == "-"
    assert format_value("cpu") == "cpu"


def test_table_rows_columns_and_order():
    results = {
        "stages": {
            "data": {"train_examples": 1294},
            "evaluate": {"test_accuracy": 0.9638, "test_errors": 13},
        },
        "wall_time_s": {"data": 5.36, "evaluate": 1.46, "total": 6.82},
    }
    lines = format_table(results).splitlines()
    assert lines[0].split() == ["stage", "metric", "value"]
    assert set(lines[1]) == {"-", " "}
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["data", "train_examples", "1294"],
        ["data", "wall_time_s", "5.36"],
        ["evaluate", "test_accuracy", "0.9638"],
        ["evaluate", "test_errors", "13"],
        ["evaluate", "wall_time_s", "1.46"],
        ["total", "wall_time_s", "6.82"],
    ]
    # Columns are aligned: every value starts at the same offset.
    starts = {line.index(line.split()[2]) for line in lines[2:]}
    assert len(starts) == 1
    assert all(line == line.rstrip() for line in lines)


def test_empty_results():
    assert format_table({}).splitlines()[0].split() == ["stage", "metric", "value"]


def test_markdown_report_marks_cached_stages_and_escapes_pipes(tmp_path):
    from jaxzip.config import ExperimentConfig
    from jaxzip.pipeline import RunState
    from jaxzip.pipeline._report import REPORT_FILE, format_markdown, report_stage

    results = {
        "stages": {"train": {"a|b": 0.5}, "evaluate": {"n": 3}},
        "wall_time_s": {"train": 2.0},
        "cached": ["train"],
    }
    text = format_markdown(results, title="t")
    assert text.splitlines() == [
        "# t",
        "",
        "| stage | metric | value |",
        "| --- | --- | --- |",
        "| train | a\\|b | 0.5000 |",
        "| train | cached | yes |",
        "| train | wall_time_s | 2.00 |",
        "| evaluate | n | 3 |",
    ]
    updates, metrics = report_stage(ExperimentConfig(), RunState(out_dir=tmp_path, results=results))
    assert updates == {} and metrics == {}
    assert (tmp_path / REPORT_FILE).read_text() == format_markdown(
        results, title="digits_small_cnn"
    )
