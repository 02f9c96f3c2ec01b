"""Suite-wide rules, for the tests in tests/ and the doctests in jaxzip/ alike.

* Under CI (``CI`` set to a true value) every skip is turned into a failure, so
  the MNIST tests cannot silently stop running there.
* The user cache is redirected to a temporary directory for every test, so the
  suite never reads from or writes to the real cache.
* XLA compiles with its cheaper backend passes (``XLA_FLAGS`` below, unless the
  caller set ``XLA_FLAGS``): the suite's models are tiny, so compilation, not
  execution, is most of its time; this cut the CPU time of the compile-heavy
  tests by about a fifth. ``--xla_cpu_use_fusion_emitters=false`` (XLA's older CPU
  emitters) compiles about 2.7x faster again: the whole suite took 380 s instead of
  507 s on 2 cores, the tests' summed time 715 s instead of 970 s (``--durations=0``).
  Set ``XLA_FLAGS=`` (empty) to test with XLA's defaults. XLA aborts a process whose
  ``XLA_FLAGS`` names a flag it does not know, and these are tuning flags a later
  jaxlib may drop: a child process tries them first, and only those it accepts are set.
* XLA's compiled programs are shared through JAX's persistent compilation cache, in a
  temporary directory made for the session (unless the caller set
  ``JAX_COMPILATION_CACHE_DIR``) and removed at its end: the xdist workers and the
  processes the tests start inherit it, so a program that many tests build anew (a train
  step made by a factory, the same tiny model in a subprocess) compiles once. (JAX writes
  an entry in place: a process reading one that another is still writing gets a warning
  and compiles the program itself. JAX's file lock, ``jax_compilation_cache_max_size``,
  would prevent that, but it rescans the whole directory at every write, which made the
  suite slower than no cache at all.) The tests that kill a process keep it out of the
  cache, so no entry is left torn.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

_UNDER_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

_FAST_XLA = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)


def _xla_accepts(flags: tuple[str, ...]) -> bool:
    """Whether a process with these ``XLA_FLAGS`` compiles (an unknown flag aborts it)."""
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
    probe = "import jax; jax.numpy.zeros(1).block_until_ready()"
    return (
        subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0
    )


# Read by XLA when jax first compiles, which is after this file is imported. The xdist
# workers inherit the controller's XLA_FLAGS, so only the controller tries the flags.
if "XLA_FLAGS" not in os.environ:
    _flags = (
        _FAST_XLA if _xla_accepts(_FAST_XLA) else tuple(f for f in _FAST_XLA if _xla_accepts((f,)))
    )
    os.environ["XLA_FLAGS"] = " ".join(_flags)


# Read by JAX when it is imported, which is after this file is imported. The xdist workers
# import this file too, after the controller made the directory: they only reuse it.
_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="jaxzip-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_unconfigure(config):
    if _XLA_CACHE is not None:
        shutil.rmtree(_XLA_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("JAXZIP_CACHE_DIR", str(tmp_path_factory.mktemp("jaxzip-cache")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _UNDER_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under CI, which must run every test: {reason}"
