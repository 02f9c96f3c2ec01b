"""The test command also lints: ruff check and ruff format --check over the repo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed; install the test extra: pip install -e '.[test]'")
    return [found]


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"]
)
def test_ruff(args):
    result = subprocess.run(_ruff() + args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff {' '.join(args)} failed:\n{result.stdout}{result.stderr}"


def test_the_formatter_is_not_switched_off_line_by_line():
    """STYLE.md rule 15 (one formatter): no trailing fmt-skip markers in the code."""
    marker = "# fmt: " + "skip"  # split, so this file does not match itself
    found = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("jaxzip", "tests", "experiments")
        for p in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1)
        if line.rstrip().endswith(marker)
    ]
    assert not found, f"{len(found)} lines skip the formatter: {found[:10]}"
