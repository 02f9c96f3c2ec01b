"""Fixtures for tests/ (the suite-wide rules live in the root conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from jaxzip.data import Dataset


@pytest.fixture
def toy() -> Dataset:
    """32 examples of two linearly separable classes of 2x2 images: the bright pixel is
    pixel 0 or pixel 3."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 32).astype(np.int32)
    x = rng.uniform(0.0, 0.3, (32, 4)).astype(np.float32)
    x[np.arange(32), 3 * y] = 1.0
    return Dataset(x=x.reshape(32, 2, 2, 1), y=y, num_classes=2, name="toy")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxzip: error: ")
    return lines[0]


@pytest.fixture(scope="session")
def kjv_dir() -> Path:
    """``$JAXZIP_DATA_DIR/kjv``, the KJV text (CI sets the variable, and a skip there fails the
    run); the test is skipped where it is not set or has no ``kjv/`` folder."""
    data = os.environ.get("JAXZIP_DATA_DIR", "")
    if not data or not (Path(data) / "kjv").is_dir():
        pytest.skip("JAXZIP_DATA_DIR is not set or has no kjv/ folder")
    return Path(data) / "kjv"


@pytest.fixture(scope="session")
def one_error_line() -> Callable[[pytest.CaptureFixture[str]], str]:
    """``one_error_line(capsys)``: what the CLI wrote to stderr, checked to be one
    ``jaxzip: error: ...`` line and no traceback; returns that line."""
    return _one_error_line


DIGITS_AUTO_TOML = """\
[experiment]
name = "digits_auto"
seed = 1  # a seed whose search needs more than the one trial allowed (stopped: max_trials)
[data]
name = "digits"
val_fraction = 0.2
[model]
name = "mlp"
widths = [16]
[train]
epochs = 3
batch_size = 64
optimizer = "adam"
learning_rate = 3e-2
schedule = "constant"
[prune]
where = "Dense_0/kernel"
epochs_per_round = 1
learning_rate = 1e-3
"""


@pytest.fixture(scope="session")
def digits_auto_toml() -> str:
    """The TOML text of a tiny ``jaxzip auto`` experiment: a 16-unit MLP on digits, 3
    epochs, pruning ``Dense_0/kernel`` (the auto tests of the pipeline, auto and CLI)."""
    return DIGITS_AUTO_TOML


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="session")
def load_script():
    """``load_script("fuzz_crafted")``: ``experiments/fuzz_crafted.py`` imported afresh as a
    module (``"benchmarks/kd_step"`` for one under experiments/benchmarks/); the scripts put
    experiments/ on ``sys.path`` themselves for ``_common``."""

    def load(name: str) -> Any:
        module_name = "experiment_" + name.replace("/", "_")
        spec = importlib.util.spec_from_file_location(module_name, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses and pickling look their module up
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def mnist_dir() -> Path:
    """The ``JAXZIP_DATA_DIR`` directory (containing ``mnist/``), or skip."""
    value = os.environ.get("JAXZIP_DATA_DIR", "")
    if not value:
        pytest.skip("JAXZIP_DATA_DIR is not set; real-MNIST tests need it")
    path = Path(value).resolve()
    if not (path / "mnist").is_dir():
        pytest.skip(f"JAXZIP_DATA_DIR={value!r} has no mnist/ folder")
    return path


@pytest.fixture
def spy(monkeypatch):
    """``spy(owner, name)`` wraps ``owner.name`` for the test and returns the list
    that each call appends its ``(args, kwargs)`` to; the real function still runs."""

    def install(owner: object, name: str) -> list[tuple[tuple, dict]]:
        calls: list[tuple[tuple, dict]] = []
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            calls.append((args, kwargs))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)
        return calls

    return install


_MESH_WORKER = r"""
import contextlib, json, sys, traceback
for line in sys.stdin:
    namespace = {}
    try:  # the script's prints go to stderr: stdout carries only the replies
        with contextlib.redirect_stdout(sys.stderr):
            exec(compile(json.loads(line), "<four_devices script>", "exec"), namespace)
        reply = {"result": namespace["RESULT"]}
    except BaseException:
        reply = {"error": traceback.format_exc()}
    sys.stdout.write("REPLY" + json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


def cpu_child_env(devices: int | None = None) -> dict[str, str]:
    """This process's environment for a CPU child process: the suite's XLA flags kept (so
    children compile as cheaply as this process, see the root conftest.py), any forced
    host device count replaced by ``devices`` (None: none; workers that call
    ``jax_num_cpu_devices`` set their own)."""
    flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    return {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}


@pytest.fixture
def child_env() -> Callable[..., dict[str, str]]:
    """:func:`cpu_child_env`, for tests that start CPU worker processes."""
    return cpu_child_env


class _MeshWorker:
    """One Python process with 4 host CPU devices that runs test scripts one after another.

    JAX fixes its device count when it starts, so multi-device tests run in a
    subprocess; sharing one per session pays its start (importing JAX, jaxzip)
    once instead of once per test.
    """

    def __init__(self, tmp: Path) -> None:
        env = cpu_child_env(devices=4)
        self.log = tmp / "four_devices.stderr"
        self._stderr = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _MESH_WORKER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )

    def run(self, script: str, timeout: float = 300) -> Any:
        """Runs ``script`` (it must set ``RESULT`` to JSON data) and returns ``RESULT``."""
        assert self.proc.poll() is None, f"the 4-device worker died:\n{self._tail()}"
        self.proc.stdin.write(json.dumps(script) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.proc.kill()
                    pytest.fail(f"the 4-device script ran past {timeout} s:\n{self._tail()}")
                line = self.proc.stdout.readline()
                if not line:
                    pytest.fail(f"the 4-device worker died:\n{self._tail()}")
                if line.startswith("REPLY"):
                    reply = json.loads(line[len("REPLY") :])
                    if "error" in reply:
                        pytest.fail(f"the 4-device script failed:\n{reply['error']}")
                    return reply["result"]

    def _tail(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._stderr.close()


@pytest.fixture(scope="session")
def four_devices(tmp_path_factory):
    """``four_devices(script)``: runs ``script`` on 4 host CPU devices and returns its
    ``RESULT`` (JSON data); one worker process serves every test of the session."""
    worker = _MeshWorker(tmp_path_factory.mktemp("four_devices"))
    yield worker.run
    worker.close()


_PORT_TAKEN = ("address already in use", "failed to add port", "no address added")


class WorkerRun(NamedTuple):
    """What :func:`mp_workers` returns: exit codes (None: killed), logs, result files."""

    codes: list[int | None]
    logs: list[str]
    outs: list[Path]

    @property
    def report(self) -> str:
        """Each worker's exit and the tail of its log, for an assertion message."""
        return "\n".join(
            f"--- worker {i}: exit {'killed (timeout or a failed peer)' if c is None else c}\n"
            f"{log[-3000:]}"
            for i, (c, log) in enumerate(zip(self.codes, self.logs, strict=True))
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_workers(
    worker: Path,
    tmp: Path,
    attempt: int,
    args: Sequence[Any],
    *,
    processes: int,
    devices: int,
    env: dict[str, str],
    timeout: float,
    meanwhile: Callable[[], None],
) -> WorkerRun:
    port = _free_port()
    outs = [tmp / f"out{attempt}_{i}.npz" for i in range(processes)]
    logs = [tmp / f"worker{attempt}_{i}.log" for i in range(processes)]
    procs = []
    try:
        for i in range(processes):
            argv = [port, i, processes, devices, outs[i], *args]
            with open(logs[i], "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(worker), *map(str, argv)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + timeout
        meanwhile()
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if None not in codes or any(c not in (None, 0) for c in codes):
                break  # all done, or one failed: the others would wait for it until they time out
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    codes = [None if p.returncode is not None and p.returncode < 0 else p.returncode for p in procs]
    return WorkerRun(codes, [log.read_text(errors="replace") for log in logs], outs)


def run_mp_workers(
    worker: Path,
    tmp: Path,
    args: Sequence[Any] = (),
    *,
    processes: int = 2,
    devices: int = 2,
    env: dict[str, str],
    timeout: float = 120.0,
    meanwhile: Callable[[], None] = lambda: None,
) -> WorkerRun:
    """Runs ``worker`` as ``processes`` subprocesses of one ``jax.distributed`` run.

    Worker ``i`` gets the argv ``port i processes devices out_i *args`` (a free port
    on 127.0.0.1, its result file); ``meanwhile()`` runs here while they work. All
    are waited for, and every one is killed on a failure, an error of ``meanwhile``
    or the deadline. Should another program take the free port, the run is repeated
    once on a new one.
    """
    for attempt in range(2):
        run = _start_workers(
            worker,
            tmp,
            attempt,
            args,
            processes=processes,
            devices=devices,
            env=env,
            timeout=timeout,
            meanwhile=meanwhile,
        )
        taken = any(s in log.lower() for log in run.logs for s in _PORT_TAKEN)
        if run.codes == [0] * processes or not taken:
            break
    return run


@pytest.fixture(scope="session")
def mp_workers() -> Callable[..., WorkerRun]:
    """``mp_workers(worker, tmp_path, args, env=...)``: see :func:`run_mp_workers`."""
    return run_mp_workers


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Writes dedented TOML text to a fresh file under tmp_path and returns its path."""
    count = iter(range(1_000_000))

    def write(text: str) -> Path:
        path = tmp_path / f"cfg{next(count)}.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
