"""Atomic file writes, for scripts and tools built on jaxzip.

Every file jaxzip produces goes through these functions: the bytes go to a
temporary file beside the target, are flushed and fsynced, then renamed over
it, and the directory is fsynced, so a reader (or a crash at any moment) sees
either the old complete file or the new complete file, never a torn one. The
parent directory is created when missing. A script that writes results the
same way cannot leave a half-written JSON behind when it is killed.

Example:
  >>> import json, pathlib, tempfile
  >>> out = pathlib.Path(tempfile.mkdtemp()) / "run" / "results.json"
  >>> atomic_write_json(out, {"error": 0.25, "epochs": 3})
  >>> json.loads(out.read_text())["error"]
  0.25
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import IO, Any

from jaxzip import _io

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]

PathLike = str | os.PathLike[str]


def atomic_open(path: PathLike, mode: str = "wb") -> AbstractContextManager[IO[Any]]:
    """A file to write that replaces ``path`` in one step when the ``with`` block ends.

    If the block raises, the temporary file is removed and ``path`` is left as
    it was (absent, or its old content).

    Args:
      path: the file to write or rewrite.
      mode: ``"wb"`` (bytes) or ``"w"`` (UTF-8 text).

    Returns:
      A context manager yielding the open temporary file.

    Raises:
      ValueError: ``mode`` is neither ``"wb"`` nor ``"w"``.

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
      >>> with atomic_open(path, "w") as f:
      ...     _ = f.write("epoch 1: loss 0.5\\n")
      >>> path.read_text()
      'epoch 1: loss 0.5\\n'
      >>> try:
      ...     with atomic_open(path, "w") as f:
      ...         _ = f.write("half a line")
      ...         raise RuntimeError("killed")
      ... except RuntimeError:
      ...     pass
      >>> path.read_text()  # the old content, whole
      'epoch 1: loss 0.5\\n'
    """
    return _io.atomic_open(path, mode)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_open`).

    Args:
      path: the file to write or rewrite.
      data: its new content.

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "plot.png"
      >>> atomic_write_bytes(path, b"\\x89PNG")
      >>> path.read_bytes()
      b'\\x89PNG'
    """
    _io.atomic_write_bytes(path, data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` as UTF-8, atomically (see :func:`atomic_open`).

    Args:
      path: the file to write or rewrite.
      text: its new content (newlines are written as given).

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "table.md"
      >>> atomic_write_text(path, "| T | error |\\n")
      >>> path.read_text()
      '| T | error |\\n'
    """
    _io.atomic_write_text(path, text)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Writes ``obj`` to ``path`` as JSON (indented, keys sorted), atomically.

    Args:
      path: the file to write or rewrite.
      obj: anything :func:`json.dumps` accepts.

    Raises:
      TypeError: ``obj`` holds something JSON cannot represent; ``path`` is
        then left untouched.

    Example:
      >>> import pathlib, tempfile
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "results.json"
      >>> atomic_write_json(path, {"b": 1, "a": [0.5, None]})
      >>> print(path.read_text(), end="")
      {
        "a": [
          0.5,
          null
        ],
        "b": 1
      }
    """
    _io.atomic_write_json(path, obj)
