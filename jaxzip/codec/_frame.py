"""The frame of a compressed file: magic, version, checksummed (deflated) JSON header, file checksum.

:func:`frame` wraps a header and a payload; :func:`read_header` checks every
part of the frame before the header's JSON is trusted, and a version-2 header
(deflated) may inflate only to :func:`header_allowance` of its stored size.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

from jaxzip.codec._errors import FormatError

__all__ = [
    "MAGIC",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "VERSION",
    "frame",
    "frame_file",
    "header_allowance",
    "read_file",
    "read_header",
]

MAGIC = b"\x89JZC\r\n\x1a\n"
VERSION = 2  # 2: the JSON header is deflated (a quarter of its size); 1: plain JSON, still read
_PREFIX = struct.Struct("<8sHHII")  # magic, version, reserved, header length, header crc32
MAX_HEADER_BYTES = 16 << 20
MAX_FILE_BYTES = 1 << 36
# A deflated header may inflate to at most max(256 KiB, 32 x its stored size) (and 16 MiB):
# real headers inflate 4x to 10x, and a tiny file must not make the reader parse megabytes
# of JSON (_container.py's memory bound). frame_file() writes version 1 for a header that
# would not.
HEADER_INFLATION = 32
MIN_HEADER_ALLOWANCE = 256 << 10


def _json(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _deflate(text: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no second checksum
    return packer.compress(text) + packer.flush()


def _framed(hbytes: bytes, payload: bytes, version: int) -> bytes:
    body = _PREFIX.pack(MAGIC, version, 0, len(hbytes), zlib.crc32(hbytes)) + hbytes + payload
    return body + struct.pack("<I", zlib.crc32(body))


def header_allowance(stored: int) -> int:
    """How many bytes a version-2 header stored in ``stored`` bytes may inflate to."""
    return min(MAX_HEADER_BYTES, max(MIN_HEADER_ALLOWANCE, HEADER_INFLATION * stored))


def frame(header: dict[str, Any] | bytes, payload: bytes, version: int = VERSION) -> bytes:
    """Prefix, header (JSON; deflated from version 2 on), payload and file checksum.

    ``header`` is the header object, or its JSON text as bytes (tests edit it as
    text). ``version`` goes into the prefix only: the header's own ``version`` is
    the caller's to keep equal (:func:`read_header` checks it).
    """
    text = header if isinstance(header, bytes) else _json(header)
    return _framed(_deflate(text) if version >= 2 else text, payload, version)


def frame_file(header: dict[str, Any], payload: bytes) -> bytes:
    """The file of ``header`` (a version :data:`VERSION` header) and ``payload``.

    The header is deflated, unless the reader would refuse to inflate it (more
    than :func:`header_allowance` of its deflated size): then the file is
    version 1, with the header as plain JSON.
    """
    text = _json(header)
    packed = _deflate(text)
    if len(text) > header_allowance(len(packed)):
        return frame({**header, "version": 1}, payload, version=1)
    return _framed(packed, payload, VERSION)


def read_header(data: bytes) -> tuple[dict[str, Any], int]:
    """Checks magic, version, lengths and checksums; returns ``(header, payload_start)``.

    Raises:
      FormatError: anything about the file's framing is wrong.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size + 4:
        raise FormatError(f"file is truncated: {len(data)} bytes, shorter than the fixed prefix")
    magic, version, _, hlen, hcrc = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"not a jaxzip compressed file (magic {magic!r})")
    if version > VERSION or version < 1:
        raise FormatError(
            f"format version {version} is not supported; this jaxzip reads 1..{VERSION}"
        )
    if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen + 4 > len(data):
        raise FormatError(f"header length {hlen} exceeds the file ({len(data)} bytes) or the cap")
    if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        raise FormatError("file checksum mismatch: the file is truncated or corrupt")
    hbytes = data[_PREFIX.size : _PREFIX.size + hlen]
    if zlib.crc32(hbytes) != hcrc:
        raise FormatError("header checksum mismatch")
    if version >= 2:
        hbytes = _inflate_header(hbytes)
    try:
        header = json.loads(hbytes.decode("utf-8"), parse_constant=_reject)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("version") != version:
        raise FormatError("header: missing or inconsistent version")
    start = _PREFIX.size + hlen
    if header.get("payload_length") != len(data) - 4 - start:
        raise FormatError(
            f"header declares payload length {header.get('payload_length')!r}, "
            f"file holds {len(data) - 4 - start}"
        )
    return header, start


def _inflate_header(packed: bytes) -> bytes:
    """The deflated header of a version-2 file, never more than its allowance of it."""
    cap = header_allowance(len(packed))
    unpacker = zlib.decompressobj(-15)
    try:
        text = unpacker.decompress(packed, cap + 1)
    except zlib.error as e:
        raise FormatError(f"header is not valid deflate data ({e})") from None
    if len(text) > cap:
        raise FormatError(
            f"header inflates beyond {cap} bytes, the most a {len(packed)}-byte "
            f"deflated header may (max(256 KiB, {HEADER_INFLATION}x), at most "
            f"16 MiB)"
        )
    if not unpacker.eof or unpacker.unused_data:
        raise FormatError("header is not one complete deflate stream")
    return text


def _reject(name: str) -> None:
    raise ValueError(f"non-finite constant {name}")


def read_file(path: Path) -> bytes:
    """The bytes of ``path`` after :func:`jaxzip.codec.load`'s checks (not a directory, under the size cap)."""
    if path.is_dir():
        raise FormatError("is a directory, not a jaxzip compressed file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise FormatError(f"{path.stat().st_size} bytes is over the {MAX_FILE_BYTES}-byte cap")
    return path.read_bytes()
