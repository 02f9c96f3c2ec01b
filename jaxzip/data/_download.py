"""Downloading one gzip-compressed file, verified, into the cache, atomically.

The response is streamed to a temporary file next to the destination while
its decompressed content is hashed on the fly (in bounded pieces, so a gzip
bomb costs time but never memory). Only a complete transfer whose
decompressed content has the expected MD5 is renamed into place; any failure
(connection error, a body shorter than its ``Content-Length``, a cut-off gzip
stream, a checksum mismatch) leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from jaxzip._errors import DataError
from jaxzip._io import atomic_open

_CHUNK = 1 << 16
_USER_AGENT = "jaxzip (https://github.com/jaxzip/jaxzip)"


class _GunzipMd5:
    """MD5 of the decompressed content of a gzip stream fed in pieces."""

    def __init__(self, url: str, max_bytes: int) -> None:
        self._url = url
        self._max_bytes = max_bytes
        self._size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def update(self, data: bytes) -> None:
        while True:
            if self._inflate.eof:  # a multi-member gzip file: start the next member
                if not data:
                    return
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            try:
                out = self._inflate.decompress(data, _CHUNK)
            except zlib.error as e:
                raise DataError(f"download of {self._url} is not valid gzip data: {e}") from None
            self._size += len(out)
            if self._size > self._max_bytes:
                raise DataError(
                    f"download of {self._url} decompresses to more than {self._max_bytes} bytes"
                )
            self._md5.update(out)
            eof = self._inflate.eof
            data = self._inflate.unused_data if eof else self._inflate.unconsumed_tail
            if not data and (eof or len(out) < _CHUNK):
                return

    def hexdigest(self) -> str:
        if not self._inflate.eof:
            raise DataError(f"download of {self._url} was cut short: the gzip stream is incomplete")
        return self._md5.hexdigest()


def download_verified(
    url: str, dest: Path, *, md5: str, timeout: float, progress: bool, max_bytes: int
) -> None:
    """Fetches the gzip file at ``url`` into ``dest`` if its content has ``md5``.

    Args:
      url: an ``http://`` or ``https://`` URL of a gzip-compressed file.
      dest: the destination path (its parent is created if missing).
      md5: the expected hex MD5 of the *decompressed* content.
      timeout: seconds to wait for the connection and for each read.
      progress: show a tqdm progress bar on stderr.
      max_bytes: the most decompressed bytes accepted.

    Raises:
      DataError: the transfer was cut short or the checksum does not match.
      OSError: the connection failed (``urllib.error.URLError`` included).
      http.client.HTTPException: the server broke the HTTP protocol.
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        declared = response.headers.get("Content-Length")
        length = int(declared) if declared is not None and declared.strip().isdigit() else None
        check = _GunzipMd5(url, max_bytes)
        received = 0
        with (
            atomic_open(dest, "wb") as f,
            tqdm(
                total=length,
                desc=dest.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                f.write(chunk)
                check.update(chunk)
                bar.update(len(chunk))
            if length is not None and received != length:
                raise DataError(
                    f"download of {url} was cut short: received {received} of the "
                    f"{length} bytes announced by Content-Length"
                )
            digest = check.hexdigest()
            if digest != md5:
                raise DataError(
                    f"download of {url} fails its checksum: the MD5 of its decompressed "
                    f"content is {digest}, expected {md5}"
                )
