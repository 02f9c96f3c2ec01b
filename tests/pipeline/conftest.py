"""Fixtures for the pipeline tests: config files written by the test itself."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Writes dedented TOML text to a fresh file under tmp_path and returns its path."""
    count = iter(range(1_000_000))

    def write(text: str) -> Path:
        path = tmp_path / f"cfg{next(count)}.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
