"""Atomic file writes: the one write path for every file jaxzip produces.

A reader (or a crash) sees either the old complete file or the new complete
file, never a torn one: the bytes go to a temporary file in the same directory,
are flushed and fsynced, then renamed over the target, and the directory is
fsynced so the rename itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from jaxzip._errors import DirectoryLockedError, UnsafePathError

LOCK_FILE = ".jaxzip.lock"
"""The lock file :func:`directory_lock` keeps in the directory it locks."""


def contained_path(root: str | os.PathLike[str], name: object, *, what: str) -> Path:
    """``root / name`` after checking that it stays inside ``root`` without following a symlink.

    For names that come from files jaxzip reads back (a cache manifest, a
    journal, a header): ``name`` must be a non-empty relative ``/``-separated
    path with no empty, ``.`` or ``..`` part, no backslash and no NUL, and no
    existing component below ``root`` may be a symlink (``root`` itself may
    be one: the user chose it).

    Args:
      root: the directory the name must stay in.
      name: the name read from the file.
      what: where the name came from, for the error message.

    Returns:
      The joined path.

    Raises:
      UnsafePathError: (a ``ValueError``) naming ``what``, the name and the rule it breaks.

    Example:
      >>> import tempfile
      >>> d = tempfile.mkdtemp()
      >>> contained_path(d, "files/model.jz", what="manifest").name
      'model.jz'
      >>> contained_path(d, "../escape.txt", what="manifest")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      jaxzip._errors.UnsafePathError: manifest: refusing the name '../escape.txt': expected a plain relative name inside ... ('..' part)
    """
    expected = f"{what}: refusing the name {name!r}: expected a plain relative name inside {root}"
    if not isinstance(name, str) or not name:
        raise UnsafePathError(f"{expected} (not a non-empty string)")
    if "\\" in name or "\0" in name or name.startswith("/") or os.path.isabs(name):
        raise UnsafePathError(f"{expected} (absolute, or a backslash or NUL in it)")
    parts = name.split("/")
    for bad in ("", ".", ".."):
        if bad in parts:
            raise UnsafePathError(
                f"{expected} ({bad!r} part)" if bad else f"{expected} (empty part)"
            )
    path = Path(root)
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise UnsafePathError(f"{expected} ({path} is a symlink)")
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Opens a temporary file that replaces ``path`` atomically on success.

    If the body raises, the temporary file is removed and ``path`` is untouched.

    Args:
      path: the file to (re)write. Its parent directory is created if missing.
      mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Yields:
      The open temporary file.

    Example:
      >>> import tempfile, pathlib
      >>> d = pathlib.Path(tempfile.mkdtemp())
      >>> with atomic_open(d / "a.txt", "w") as f:
      ...     _ = f.write("hello")
      >>> (d / "a.txt").read_text()
      'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        kwargs = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Moves the finished file ``source`` over ``target`` atomically (same filesystem).

    Readers see the old ``target`` or the new one, never a mix; a symlink at
    ``target`` is replaced, not followed. The directory is fsynced after.

    Example:
      >>> import tempfile, pathlib
      >>> d = pathlib.Path(tempfile.mkdtemp())
      >>> atomic_write_text(d / "new.txt", "new")
      >>> publish(d / "new.txt", d / "out.txt")
      >>> (d / "out.txt").read_text(), (d / "new.txt").exists()
      ('new', False)
    """
    os.replace(source, target)
    _fsync_dir(Path(target).parent)


def discard_stdout() -> None:
    """Points file descriptor 1 at the null device: after its reader went away (a broken
    pipe), so that the interpreter's flush of stdout at exit reports nothing."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike[str], *, what: str) -> Iterator[Path]:
    """Holds an exclusive lock on ``directory`` while the body runs; a second holder fails at once.

    The lock is an advisory ``flock`` on ``directory/.jaxzip.lock`` (opened
    without following a symlink), which holds the holder's PID. The operating
    system releases it when the process ends, even by SIGKILL, so a crashed
    run never leaves a stale lock; the file itself stays.

    Args:
      directory: the directory to lock (created if missing).
      what: the command taking the lock, for the error message (e.g. ``"jaxzip run"``).

    Yields:
      The lock file's path.

    Raises:
      DirectoryLockedError: another process holds the lock; the message names
        its PID and the directory.
      NotADirectoryError: ``directory`` exists and is not a directory.
      OSError: the lock file cannot be opened (e.g. it is a symlink).

    Example:
      >>> import tempfile
      >>> d = tempfile.mkdtemp()
      >>> with directory_lock(d, what="jaxzip run") as lock:
      ...     lock.name
      '.jaxzip.lock'
    """
    import fcntl  # POSIX; imported here so that the rest of the module works everywhere

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(
            f"output directory {str(directory)!r} exists and is not a directory"
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            pid = int(text) if text.isdigit() else None
            holder = f"PID {pid}" if pid is not None else "a process whose PID is unknown"
            raise DirectoryLockedError(
                f"{what}: {directory} is in use by another jaxzip process ({holder}, holding "
                f"{path}); wait for it to finish or choose another output directory",
                pid=pid,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
