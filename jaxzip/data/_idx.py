"""Reading and writing IDX files (the MNIST family's format), gzip or raw.

An IDX file is a 4-byte magic ``00 00 <type> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the row-major data, big-endian. The header is read and
validated first; the payload is then read in bounded chunks up to exactly the
declared size, so a corrupt or hostile file (a gzip bomb, a huge declared
shape) never makes the reader allocate more than the data actually present.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import IO

import numpy as np

from jaxzip._errors import DataError
from jaxzip._io import atomic_open

# IDX type code -> big-endian numpy dtype.
_IDX_DTYPES: Mapping[int, np.dtype] = MappingProxyType(
    {
        0x08: np.dtype(">u1"),
        0x09: np.dtype(">i1"),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)
_CODES = MappingProxyType({dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()})
# The largest payload read_idx accepts (the MNIST training images are 47 MB).
_MAX_IDX_BYTES = 1 << 32
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str], *, md5: str | None = None) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or raw, into a native-endian array.

    The header (magic, type code, dimensions) is validated and the declared
    size is checked against the data actually present before the payload is
    kept, and nothing may follow the declared data.

    Args:
      path: the ``.idx*`` file; gzip compression is detected from its content.
      md5: if given, the expected hex MD5 of the *decompressed* file content
        (header included); a mismatch raises.

    Returns:
      An array of the declared shape and dtype (``uint8`` for MNIST).

    Raises:
      DataError: the file is missing, unreadable, corrupt or truncated, or
        fails its checksum; the message names the path and the problem.

    Example:
      >>> import tempfile, pathlib
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "x-idx2-ubyte"
      >>> _ = p.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6]))
      >>> read_idx(p)
      array([[1, 2, 3],
             [4, 5, 6]], dtype=uint8)
    """
    path = Path(path)
    if md5 is not None and (
        not isinstance(md5, str) or len(md5) != 32 or not all(c in "0123456789abcdef" for c in md5)
    ):
        raise ValueError(f"read_idx: md5 must be 32 lowercase hex digits, got {md5!r}")
    try:
        with path.open("rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                    data, digest = _read_stream(f, path, raw_size=None)
            else:
                data, digest = _read_stream(raw, path, raw_size=os.fstat(raw.fileno()).st_size)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"IDX file {path} is corrupt or unreadable: {e}") from None
    if md5 is not None and digest != md5:
        raise DataError(
            f"IDX file {path} fails its checksum: the MD5 of its decompressed content is "
            f"{digest}, expected {md5}"
        )
    return data


def _read_stream(f: IO[bytes], path: Path, raw_size: int | None) -> tuple[np.ndarray, str]:
    """Parses one IDX stream; returns the array and the MD5 of all bytes read."""
    hasher = hashlib.md5(usedforsecurity=False)
    magic = _read_exact(f, 4, path, "the 4-byte magic number", hasher)
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(
            f"IDX file {path} has a bad magic number {magic.hex()}: expected it to start "
            f"with 0000 (not an IDX file?)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(
            f"IDX file {path} has unknown type code 0x{code:02X}; expected one of {known}"
        )
    if ndim == 0:
        raise DataError(f"IDX file {path} declares 0 dimensions; expected at least 1")
    shape = struct.unpack(f">{ndim}I", _read_exact(f, 4 * ndim, path, "the dimensions", hasher))
    dtype = _IDX_DTYPES[code]
    nbytes = math.prod(shape) * dtype.itemsize
    header = 4 + 4 * ndim
    if nbytes > _MAX_IDX_BYTES:
        raise DataError(
            f"IDX file {path} declares shape {shape} ({nbytes} bytes of data), more than the "
            f"{_MAX_IDX_BYTES} bytes read_idx accepts"
        )
    if raw_size is not None and raw_size != header + nbytes:
        raise DataError(
            f"IDX file {path} has {raw_size - header} bytes of data but its header declares "
            f"shape {shape} of {dtype.name}, {nbytes} bytes"
        )
    buf = bytearray()
    while len(buf) < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - len(buf)))
        if not chunk:
            raise DataError(
                f"IDX file {path} is truncated: {len(buf)} bytes of data but its header "
                f"declares shape {shape} of {dtype.name}, {nbytes} bytes"
            )
        buf += chunk
    hasher.update(buf)
    if f.read(1):
        raise DataError(
            f"IDX file {path} has data after the {nbytes} bytes its header declares "
            f"(shape {shape} of {dtype.name})"
        )
    array = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=dtype.itemsize > 1), hasher.hexdigest()


def _read_exact(f: IO[bytes], n: int, path: Path, what: str, hasher) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(f"IDX file {path} is truncated: it ends inside {what}")
    hasher.update(data)
    return data


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    The write is atomic (see :func:`jaxzip._io.atomic_open`).

    Args:
      path: the destination file.
      array: an array of at least one dimension with a dtype IDX can hold
        (uint8, int8, int16, int32, float32, float64).

    Raises:
      TypeError: ``array`` has a dtype IDX cannot hold.
      ValueError: ``array`` is a scalar or has more than 255 dimensions.

    Example:
      >>> import tempfile, pathlib
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "y-idx1-ubyte.gz"
      >>> write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
      >>> read_idx(p)
      array([3, 1, 4], dtype=uint8)
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(
            f"write_idx: array dtype must be one of uint8, int8, int16, int32, float32, "
            f"float64, got {array.dtype}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions, got {array.ndim}")
    code = _CODES[native]
    payload = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    )
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)
    with atomic_open(path, "wb") as f:
        f.write(payload)
