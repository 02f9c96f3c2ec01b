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


@pytest.fixture
def spy(monkeypatch):
    """``spy(owner, name)`` wraps ``owner.name`` for the test and returns the list
    that each call appends its ``(args, kwargs)`` to; the real function still runs."""

    def install(owner: object, name: str) -> list[tuple[tuple, dict]]:
        calls: list[tuple[tuple, dict]] = []
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls.append((args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
        return calls

    return install
