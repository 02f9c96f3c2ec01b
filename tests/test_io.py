from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from jaxzip._errors import DirectoryLockedError
from jaxzip._io import (
    LOCK_FILE,
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    directory_lock,
)


def test_write_and_overwrite(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(path, b"one")
    assert path.read_bytes() == b"one"
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]  # no temporary left behind


def test_failure_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_json(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"b": 1, "a": [1.5]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1.5], "b": 1}


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x", "a"):
        pass


def test_permissions_follow_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_directory_lock_on_a_file_is_one_error_and_leaves_it_alone(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with (
        pytest.raises(NotADirectoryError, match=r"'.*out' exists and is not a directory"),
        directory_lock(out, what="jaxzip run"),
    ):
        pass
    assert out.read_text() == "a file"


def test_directory_lock_refuses_a_second_holder_naming_the_pid(tmp_path):
    with directory_lock(tmp_path / "out", what="jaxzip run") as lock:
        assert lock.read_text().strip() == str(os.getpid())
        pid = os.getpid()
        with (
            pytest.raises(DirectoryLockedError, match=rf"jaxzip auto: .*PID {pid}") as e,
            directory_lock(tmp_path / "out", what="jaxzip auto"),
        ):
            pass
        assert e.value.pid == os.getpid()
    with directory_lock(tmp_path / "out", what="jaxzip run"):  # released on exit
        pass


def test_directory_lock_is_released_when_its_holder_is_killed(tmp_path):
    code = (
        "import sys, time; from jaxzip._io import directory_lock\n"
        "with directory_lock(sys.argv[1], what='x'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with (
            pytest.raises(DirectoryLockedError, match=f"PID {holder.pid}"),
            directory_lock(tmp_path, what="jaxzip run"),
        ):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with directory_lock(tmp_path, what="jaxzip run"):
        pass


def test_directory_lock_does_not_follow_a_symlinked_lock_file(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (tmp_path / "out").mkdir()
    os.symlink(target, tmp_path / "out" / LOCK_FILE)
    with pytest.raises(OSError), directory_lock(tmp_path / "out", what="jaxzip run"):
        pass
    assert target.read_text() == "keep"
