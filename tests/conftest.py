"""Fixtures for tests/ (the suite-wide rules live in the root conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def mnist_dir() -> Path:
    """The ``JAXZIP_DATA_DIR`` directory (containing ``mnist/``), or skip."""
    value = os.environ.get("JAXZIP_DATA_DIR", "")
    if not value:
        pytest.skip("JAXZIP_DATA_DIR is not set; real-MNIST tests need it")
    path = Path(value).resolve()
    if not (path / "mnist").is_dir():
        pytest.skip(f"JAXZIP_DATA_DIR={value!r} has no mnist/ folder")
    return path
