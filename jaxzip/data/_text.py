"""Byte-level text corpora (``kjv``): find the file, verify it, split it.

Lookup order for ``<source.file>`` (as ``NAME.gz`` or raw ``NAME``; ``.gz`` is
preferred when both exist), as for MNIST (:mod:`jaxzip.data._mnist`):

1. ``data_dir``, if given (nothing else is tried).
2. ``$JAXZIP_DATA_DIR/<name>``, if the variable is set and the file is there.
3. The cache ``<cache root>/<name>`` (see :func:`jaxzip.data.cache_root`).

There is no download: a corpus has no mirror, and the error says where to put
the file. The SHA-256 of the decompressed text is verified on every read.

The split is by line and deterministic: the last ``floor(lines *
held_out_fraction)`` lines are held out for evaluation, the rest are for
training and calibration. Tokens are bytes (vocabulary 256); the windows cut
from the text are :mod:`jaxzip.data._windows`'.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np

from jaxzip._errors import DataError
from jaxzip.data._mnist import CACHE_DIR_ENV, DATA_DIR_ENV, cache_root

_MAX_TEXT_BYTES = 1 << 30
_CHUNK = 1 << 20
_NAME = re.compile(r"[a-z0-9_]+")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextSource:
    """A text corpus: its file, checksum and held-out fraction.

    Args:
      name: the corpus's name, also its subdirectory under ``$JAXZIP_DATA_DIR``
        and the cache (lowercase letters, digits, ``_``).
      file: the file name without ``.gz`` (it may be stored gzip-compressed).
      sha256: the hex SHA-256 of the decompressed text.
      held_out_fraction: the fraction of lines, taken from the end, held out
        for evaluation, in (0, 1).

    Raises:
      ValueError: a field is malformed; the message names it.

    Example:
      >>> KJV.name, KJV.file, KJV.held_out_fraction
      ('kjv', 'kjv.txt', 0.1)
    """

    name: str
    file: str
    sha256: str
    held_out_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(
                f"TextSource: name must be lowercase letters, digits and '_', got {self.name!r}"
            )
        if not isinstance(self.file, str) or not _FILE.fullmatch(self.file):
            raise ValueError(
                f"TextSource {self.name!r}: file must be a plain file name, got {self.file!r}"
            )
        if not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ValueError(
                f"TextSource {self.name!r}: sha256 must be 64 lowercase hex digits, "
                f"got {self.sha256!r}"
            )
        f = self.held_out_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < f < 1.0:
            raise ValueError(
                f"TextSource {self.name!r}: held_out_fraction must lie in (0, 1), got {f!r}"
            )


KJV = TextSource(
    name="kjv",
    file="kjv.txt",
    # 31,102 lines, 4,137,850 bytes of ASCII: ../shared/data/kjv/README.md.
    sha256="b5c4940bcfeee072c0935b5200d0f9d88a00a0199cb0961d16133458fcdfae5d",
)
"""The King James Bible, one verse a line: its last 3,110 lines (0-based 27,992 on) held out."""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TextSplits:
    """A corpus split by line into training and held-out bytes (read-only uint8 arrays).

    Example:
      >>> s = TextSplits(train=np.frombuffer(b"ab\\n", np.uint8),
      ...                held_out=np.frombuffer(b"c\\n", np.uint8), name="toy")
      >>> s
      TextSplits(name='toy', train=3 bytes, held_out=2 bytes)
    """

    train: np.ndarray
    held_out: np.ndarray
    name: str

    def __post_init__(self) -> None:
        for field in ("train", "held_out"):
            value = getattr(self, field)
            if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 1:
                got = (
                    f"{value.dtype} of shape {value.shape}"
                    if isinstance(value, np.ndarray)
                    else type(value).__name__
                )
                raise TypeError(f"TextSplits: {field} must be a 1-D numpy uint8 array, got {got}")
            view = value.view()
            view.flags.writeable = False
            object.__setattr__(self, field, view)

    def __repr__(self) -> str:
        return (
            f"TextSplits(name={self.name!r}, train={len(self.train)} bytes, "
            f"held_out={len(self.held_out)} bytes)"
        )


def _find(directory: Path, file: str) -> Path | None:
    for candidate in (directory / f"{file}.gz", directory / file):
        if candidate.is_file():
            return candidate
    return None


def read_text(path: str | os.PathLike[str], *, sha256: str) -> bytes:
    """Reads a text file, gzip-compressed or raw, and verifies its decompressed SHA-256.

    Args:
      path: the file; gzip compression is detected from its first two bytes.
      sha256: the expected hex SHA-256 of the decompressed content.

    Returns:
      The decompressed bytes.

    Raises:
      DataError: the file is missing, unreadable, corrupt, larger than 1 GiB
        decompressed, or fails its checksum; the message names the path.

    Example:
      >>> import hashlib, tempfile, pathlib
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
      >>> _ = p.write_bytes(b"in the beginning\\n")
      >>> read_text(p, sha256=hashlib.sha256(b"in the beginning\\n").hexdigest())
      b'in the beginning\\n'
    """
    path = Path(path)
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"read_text: sha256 must be 64 lowercase hex digits, got {sha256!r}")
    buf = bytearray()
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            while chunk := f.read(_CHUNK):
                buf += chunk
                if len(buf) > _MAX_TEXT_BYTES:
                    raise DataError(
                        f"text file {path} holds more than {_MAX_TEXT_BYTES} bytes "
                        "(decompressed), more than read_text accepts"
                    )
    except FileNotFoundError:
        raise DataError(f"text file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"text file {path} is corrupt or unreadable: {e}") from None
    digest = hashlib.sha256(buf).hexdigest()
    if digest != sha256:
        raise DataError(
            f"text file {path} fails its checksum: the SHA-256 of its decompressed content "
            f"is {digest}, expected {sha256}"
        )
    return bytes(buf)


def split_lines(text: bytes, *, held_out_fraction: float, name: str) -> TextSplits:
    """Splits ``text`` by line: the last ``floor(lines * held_out_fraction)`` lines held out.

    Line ends stay with their line, so ``train + held_out == text``.

    Raises:
      DataError: the text has too few lines for a non-empty held-out part.

    Example:
      >>> s = split_lines(b"a\\nb\\nc\\nd\\n", held_out_fraction=0.25, name="toy")
      >>> s.train.tobytes(), s.held_out.tobytes()
      (b'a\\nb\\nc\\n', b'd\\n')
    """
    data = np.frombuffer(text, np.uint8)
    ends = np.flatnonzero(data == 10) + 1
    starts = np.concatenate([[0], ends[ends < len(data)]]) if len(data) else np.zeros(0, int)
    n_lines = len(starts)
    n_held = math.floor(n_lines * held_out_fraction)
    if n_held < 1 or n_held >= n_lines:
        raise DataError(
            f"{name}: {n_lines} lines cannot be split with held_out_fraction="
            f"{held_out_fraction}; expected enough lines for both a training and a "
            "held-out part"
        )
    cut = int(starts[n_lines - n_held])
    return TextSplits(train=data[:cut], held_out=data[cut:], name=name)


def load_text(
    source: TextSource,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TextSplits:
    """Finds, verifies and splits a text corpus (see the module docs for the lookup).

    Args:
      source: the corpus, e.g. :data:`KJV`.
      data_dir: a directory holding the file; if given, nothing else is tried.
      cache_dir: the cache root (see :func:`jaxzip.data.cache_root`).

    Returns:
      The :class:`TextSplits` named ``source.name``.

    Raises:
      DataError: the file is missing (the message says where to put it), corrupt,
        fails its checksum or has too few lines.
      TypeError: ``source`` is not a :class:`TextSource`.

    Example:
      >>> import tempfile
      >>> load_text(KJV, tempfile.mkdtemp())  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      jaxzip._errors.DataError: kjv: directory ... lacks kjv.txt.gz (or the raw kjv.txt)
    """
    if not isinstance(source, TextSource):
        raise TypeError(f"load_text: source must be a TextSource, got {type(source).__name__}")
    wanted = f"{source.file}.gz (or the raw {source.file})"
    if data_dir is not None:
        directory = Path(data_dir)
        path = _find(directory, source.file)
        if path is None:
            raise DataError(f"{source.name}: directory {directory} lacks {wanted}")
    else:
        env_dir = os.environ.get(DATA_DIR_ENV)
        cache = cache_root(cache_dir) / source.name
        candidates = ([Path(env_dir) / source.name] if env_dir else []) + [cache]
        path = next((p for d in candidates if (p := _find(d, source.file))), None)
        if path is None:
            env_line = (
                f"{Path(env_dir) / source.name}  (from ${DATA_DIR_ENV})"
                if env_dir
                else f"${DATA_DIR_ENV}/{source.name}  (${DATA_DIR_ENV} is not set)"
            )
            raise DataError(
                f"{source.name} is not available (it has no download mirror). Place {wanted} "
                f"in one of:\n  - a directory passed as data_dir\n  - {env_line}\n  - the "
                f"cache directory {cache}  (its root is cache_dir= if given, else "
                f"${CACHE_DIR_ENV}, else the user cache directory)"
            )
    text = read_text(path, sha256=source.sha256)
    return split_lines(text, held_out_fraction=source.held_out_fraction, name=source.name)


def load_kjv(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TextSplits:
    """Loads the King James Bible (:data:`KJV`): 3,761,794 train and 376,056 held-out bytes.

    Example:
      >>> import tempfile
      >>> load_kjv(tempfile.mkdtemp())  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      jaxzip._errors.DataError: kjv: directory ... lacks kjv.txt.gz (or the raw kjv.txt)
    """
    return load_text(KJV, data_dir, cache_dir=cache_dir)
