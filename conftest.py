"""Suite-wide rules, for the tests in tests/ and the doctests in jaxzip/ alike.

* Under CI (``CI`` set to a true value) every skip is turned into a failure, so
  the MNIST tests cannot silently stop running there.
* The user cache is redirected to a temporary directory for every test, so the
  suite never reads from or writes to the real cache.
* XLA compiles with its cheaper backend passes (``XLA_FLAGS`` below, unless the
  caller set ``XLA_FLAGS``): the suite's models are tiny, so compilation, not
  execution, is most of its time; this cut the CPU time of the compile-heavy
  tests by about a fifth. Set ``XLA_FLAGS=`` (empty) to test with XLA's defaults.
"""

from __future__ import annotations

import os

import pytest

_UNDER_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

# Read by XLA when jax first compiles, which is after this file is imported.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)


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
