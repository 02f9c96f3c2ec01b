"""Tests for the child-process probe of jaxzip/deploy/_load.py: a module that crashes
JAX's native deserializer is a FormatError, never the end of the loading process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxzip import codec, deploy
from jaxzip.deploy import _load

CRASHER = Path(__file__).parent / "data" / "fuzz_6177_heap_corruption.jzx"
"""Case 6177 of ``fuzz_codec.py --seed 1`` (fde1f98): one flipped bit of the StableHLO,
checksums recomputed. Deserialized in-process it corrupted the heap: the process aborted
(``malloc(): invalid next size``), even after the deserializer had returned an error."""


def test_the_fuzzed_module_is_refused_and_the_process_lives():
    code = (
        "import sys\n"
        "from jaxzip import codec, deploy\n"
        "try:\n"
        f"    deploy.load_exported({str(CRASHER)!r})\n"
        "    print('loaded')\n"
        "except codec.FormatError as e:\n"
        "    print('refused:', e)\n"
        "x = [bytearray(4096) for _ in range(20000)]  # allocate: a corrupt heap aborts here\n"
        "print('alive')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    out = r.stdout.decode()
    assert r.returncode == 0, (r.returncode, out, r.stderr.decode()[-500:])
    assert "refused: " in out and "hlo section" in out and out.rstrip().endswith("alive")


@pytest.fixture
def exported(tmp_path):
    path = tmp_path / "m.jzx"
    deploy.export(
        lambda params, x, *, train, key: x + params["b"], {"b": jnp.ones(2)}, jnp.ones((1, 2)), path
    )
    return path


def test_a_crash_in_the_child_is_a_format_error(exported, monkeypatch):
    monkeypatch.setattr(_load, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGABRT)")
    with pytest.raises(codec.FormatError, match=r"crashes JAX's deserializer \(signal 6"):
        deploy.load_exported(exported)


def test_a_child_past_the_timeout_is_a_format_error(exported, monkeypatch):
    monkeypatch.setattr(_load, "_PROBE", "import time; time.sleep(30)")
    monkeypatch.setattr(_load, "PROBE_TIMEOUT_S", 0.5)
    with pytest.raises(codec.FormatError, match=r"took over 0\.5 s"):
        deploy.check_exported(exported)


def test_a_good_file_passes_the_probe(exported):
    assert deploy.check_exported(exported).output_shape == (1, 2)
    assert deploy.load_exported(exported)(jnp.zeros((1, 2))).tolist() == [[1.0, 1.0]]


def test_a_probe_that_cannot_run_is_an_os_error_not_a_bad_file(exported, monkeypatch):
    # e.g. an interpreter without jax: the file is not to blame, and the message says why
    monkeypatch.setattr(_load, "_PROBE", "import no_such_module_for_the_probe")
    with pytest.raises(OSError, match=r"exited with status 1: .*no_such_module_for_the_probe"):
        deploy.check_exported(exported)


def test_export_bytes_do_not_depend_on_the_caller(tmp_path):
    # tracebacks in the module's locations would embed this file's path and make the
    # bytes depend on the call stack (found by the fuzz campaign's --replay)
    def apply(params, x, *, train, key):
        return jnp.tanh(x @ params["w"])

    def write(name):
        deploy.export(apply, {"w": jnp.eye(3)}, jnp.ones((1, 3)), tmp_path / name)
        return (tmp_path / name).read_bytes()

    direct = write("a.jzx")
    nested = (lambda: (lambda: write("b.jzx"))())()
    assert direct == nested
    assert Path(__file__).name.encode() not in direct
