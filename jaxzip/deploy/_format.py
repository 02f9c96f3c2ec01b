"""The exported-model file: magic, version, section lengths and checksums, three sections."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib
from typing import Any

from jaxzip.codec import FormatError

MAGIC = b"\x89JZX\r\n\x1a\n"
VERSION = 1
# magic, version, reserved, info length, hlo length, weights length, info/hlo/weights crc32
_PREFIX = struct.Struct("<8sHHIQQIII")
MAX_INFO_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 36
_DTYPES = frozenset(
    (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
    )
)


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What an exported-model file declares, read without running it.

    Attributes:
      input_shape: the input's shape; ``None`` in the first entry marks a polymorphic batch.
      input_dtype: the input's dtype name (e.g. ``"float32"``).
      output_shape: the output's shape (``None`` first entry as for the input).
      output_dtype: the output's dtype name.
      num_weights: how many weight arrays the exported function takes before the input.
      hlo_bytes: the serialized StableHLO's size.
      weights: the compressed weights, a complete :func:`jaxzip.codec.encode` file.
    """

    input_shape: tuple[int | None, ...]
    input_dtype: str
    output_shape: tuple[int | None, ...]
    output_dtype: str
    num_weights: int
    hlo_bytes: int
    weights: bytes = dataclasses.field(repr=False)


def is_exported_file(data: bytes) -> bool:
    """Whether ``data`` starts with the exported-model magic (nothing else is checked).

    Example:
      >>> is_exported_file(MAGIC + b"rest"), is_exported_file(b"\\x89JZC")
      (True, False)
    """
    return bytes(data[: len(MAGIC)]) == MAGIC


def pack(info: dict[str, Any], hlo: bytes, weights: bytes) -> bytes:
    """Frames the info JSON, the serialized StableHLO and the weights into one file's bytes.

    Example:
      >>> data = pack({"k": 1}, b"hlo", b"w")
      >>> unpack(data)
      ({'k': 1}, b'hlo', b'w')
    """
    ibytes = json.dumps(info, separators=(",", ":"), allow_nan=False).encode("utf-8")
    crcs = (zlib.crc32(ibytes), zlib.crc32(hlo), zlib.crc32(weights))
    head = _PREFIX.pack(MAGIC, VERSION, 0, len(ibytes), len(hlo), len(weights), *crcs)
    body = head + ibytes + hlo + weights
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """Checks magic, version, lengths and every checksum; returns ``(info, hlo, weights)``.

    Raises:
      FormatError: the data is truncated, corrupt, too new or not an exported model.
      TypeError: ``data`` is not bytes.

    Example:
      >>> unpack(b"\\x89JZX")
      Traceback (most recent call last):
      ...
      jaxzip.codec._errors.FormatError: exported model is truncated: 4 bytes, shorter than the fixed prefix
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size + 4:
        raise FormatError(
            f"exported model is truncated: {len(data)} bytes, shorter than the fixed prefix"
        )
    magic, version, _, ilen, hlen, wlen, icrc, hcrc, wcrc = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise FormatError(f"not a jaxzip exported model (magic {magic!r})")
    if not 1 <= version <= VERSION:
        raise FormatError(
            f"export format version {version} is not supported; this reads 1..{VERSION}"
        )
    if ilen > MAX_INFO_BYTES or _PREFIX.size + ilen + hlen + wlen + 4 != len(data):
        raise FormatError(
            f"section lengths {ilen}+{hlen}+{wlen} do not match the file ({len(data)} bytes)"
        )
    if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        raise FormatError("file checksum mismatch: the file is truncated or corrupt")
    a = _PREFIX.size
    ibytes, hlo, weights = (
        data[a : a + ilen],
        data[a + ilen : a + ilen + hlen],
        data[-4 - wlen : -4],
    )
    for name, blob, crc in (("info", ibytes, icrc), ("hlo", hlo, hcrc), ("weights", weights, wcrc)):
        if zlib.crc32(blob) != crc:
            raise FormatError(f"{name} section checksum mismatch")
    try:
        info = json.loads(ibytes.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"info section is not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise FormatError("info section must be a JSON object")
    return info, hlo, weights


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite constant {name}")


def _dtype(v: Any, what: str) -> str:
    if not isinstance(v, str) or v not in _DTYPES:
        raise FormatError(f"info: {what} {v!r} is not one of {sorted(_DTYPES)}")
    return v


def _shape(v: Any, what: str) -> tuple[int | None, ...]:
    ok = isinstance(v, list) and len(v) <= 32
    ok = ok and all(
        (isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40)
        or (s is None and i == 0)
        for i, s in enumerate(v)
    )
    if not ok:
        raise FormatError(f"info: bad {what} {v!r}")
    return tuple(v)


def parse_info(data: bytes) -> ExportInfo:
    """Unpacks an exported model's bytes and validates its info section.

    Raises:
      FormatError: the file or its info section is malformed.
    """
    return parse(data)[0]


def parse(data: bytes) -> tuple[ExportInfo, bytes]:
    """:func:`parse_info` and the serialized StableHLO section."""
    info, hlo, weights = unpack(data)
    try:
        out = ExportInfo(
            input_shape=_shape(info["input_shape"], "input_shape"),
            input_dtype=_dtype(info["input_dtype"], "input_dtype"),
            output_shape=_shape(info["output_shape"], "output_shape"),
            output_dtype=_dtype(info["output_dtype"], "output_dtype"),
            num_weights=info["num_weights"],
            hlo_bytes=len(hlo),
            weights=weights,
        )
    except KeyError as e:
        raise FormatError(f"info: missing field {e}") from None
    n = out.num_weights
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 2**31:
        raise FormatError(f"info: bad num_weights {n!r}")
    return out, hlo
