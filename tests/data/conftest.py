"""Fixtures for jaxzip.data tests: tiny fake IDX datasets and a local HTTP server."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from jaxzip.data import IDX_FILES, IdxSource


def idx_bytes(array: np.ndarray) -> bytes:
    """Raw IDX bytes of a uint8 array, written by hand (independent of jaxzip)."""
    assert array.dtype == np.uint8
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + (array.tobytes())
    )


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture():
    return idx_bytes


@dataclasses.dataclass
class FakeIdx:
    """A tiny MNIST-shaped dataset: 6 train and 4 test images of 28x28."""

    arrays: dict[str, np.ndarray]
    raw: dict[str, bytes]
    gz: dict[str, bytes]
    source: IdxSource

    def write(self, directory: Path, *, compressed: bool = True, files=None) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name in files if files is not None else self.raw:
            if compressed:
                (directory / f"{name}.gz").write_bytes(self.gz[name])
            else:
                (directory / name).write_bytes(self.raw[name])
        return directory


@pytest.fixture
def fake() -> FakeIdx:
    rng = np.random.default_rng(1234)
    arrays = {}
    for split, n in (("train", 6), ("test", 4)):
        images_name, labels_name = IDX_FILES[split]
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        arrays[images_name] = images
        arrays[labels_name] = (np.arange(n) % 10).astype(np.uint8)
    raw = {name: idx_bytes(a) for name, a in arrays.items()}
    gz = {name: gzip.compress(b, mtime=0) for name, b in raw.items()}
    md5s = {name: hashlib.md5(b).hexdigest() for name, b in raw.items()}
    source = IdxSource(name="fake", md5s=md5s, mirrors=("http://127.0.0.1:9/unused/",))
    return FakeIdx(arrays=arrays, raw=raw, gz=gz, source=source)


@dataclasses.dataclass
class LocalServer:
    """Serves ``routes[path] = (body, mode)`` on 127.0.0.1; anything else is a 404.

    ``mode`` is ``"ok"`` (correct Content-Length), ``"overlong"`` (a
    Content-Length 1000 bytes larger than the body, then the connection closes)
    or ``"nolength"`` (no Content-Length; the body ends when the connection closes).
    """

    url: str = ""
    routes: dict[str, tuple[bytes, str]] = dataclasses.field(default_factory=dict)
    requests: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def http_server(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = LocalServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append(self.path)
            if self.path not in state.routes:
                self.send_error(404)
                return
            body, mode = state.routes[self.path]
            self.send_response(200)
            if mode == "ok":
                self.send_header("Content-Length", str(len(body)))
            elif mode == "overlong":
                self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache root, never the real user cache."""
    cache = tmp_path / "jaxzip-cache"
    monkeypatch.setenv("JAXZIP_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def no_data_dir_env(monkeypatch) -> None:
    monkeypatch.delenv("JAXZIP_DATA_DIR", raising=False)
