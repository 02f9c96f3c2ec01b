"""Runs experiments/lm_train.py at tiny size on a text file the test writes, in-process."""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import shlex
from pathlib import Path

import pytest

TEXT = b"".join(
    f"verse {i}: and the earth was without form, and void.\n".encode() for i in range(60)
)


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("lm_train")


def _text(tmp_path: Path) -> list[str]:
    path = tmp_path / "toy.txt.gz"
    path.write_bytes(gzip.compress(TEXT, mtime=0))
    return ["--text", str(path), "--sha256", hashlib.sha256(TEXT).hexdigest()]


TINY = shlex.split(
    "--size tiny --seq-len 16 --batch-size 4 --warmup-steps 2 --log-every 2 --eval-every 4 "
    "--eval-limit 6"
)


def test_tiny_teacher_and_students(script, tmp_path):
    out = tmp_path / "lm"
    lines: list[str] = []
    argv = [*_text(tmp_path), *TINY, "--steps", "8", "--distill", "--student-steps", "4"]
    results = script.main([*argv, "--out", str(out)], log=lines.append)
    assert results == json.loads((out / "lm_train.json").read_text())
    teacher = results["teacher"]
    assert teacher["steps"] == 8 and teacher["params_file"] == str(out / "teacher.npz")
    assert 0.0 < teacher["held_out_bpb"] < 10.0 and teacher["train_seconds"] > 0
    assert results["held_out"] == {"windows": 6, "bytes_scored": 96}
    students = results["students"]
    for arm in ("labels", "distilled"):
        assert math.isfinite(students[arm]["held_out_bpb"])
        assert (out / f"student_{arm}.npz").is_file()
    assert students["teacher_held_out_bpb"] == pytest.approx(teacher["held_out_bpb"])
    gap = students["labels"]["held_out_bpb"] - teacher["held_out_bpb"]
    if gap > 0:
        closed = students["labels"]["held_out_bpb"] - students["distilled"]["held_out_bpb"]
        assert students["gap_closed"] == pytest.approx(closed / gap)
    assert any("[teacher] step 8/8" in line for line in lines)
    assert any("held-out (first 64 windows)" in line for line in lines)

    # The saved teacher loads back and scores the same.
    again = script.main(
        [*argv[:-3], "--teacher", str(out / "teacher.npz"), "--out", str(tmp_path / "again")],
        log=lines.append,
    )
    assert again["teacher"]["held_out_bpb"] == pytest.approx(teacher["held_out_bpb"], rel=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--eval-every", "-1"], "--eval-every must be >= 0, got -1"),
        (["--text", "x.txt"], "--text and --sha256 go together"),
        (["--warmup-steps", "100", "--steps", "10"], "--warmup-steps"),
    ],
)
def test_bad_arguments(script, extra, message, capsys):
    with pytest.raises(SystemExit) as e:
        script.parse_args(extra)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_missing_text_names_the_file(script, tmp_path):
    from jaxzip import DataError

    with pytest.raises(DataError, match=r"lacks nope\.txt\.gz"):
        script.main(
            [
                "--text",
                str(tmp_path / "nope.txt"),
                "--sha256",
                "0" * 64,
                *TINY,
                "--out",
                str(tmp_path / "o"),
            ],
            log=lambda s: None,
        )


def test_teacher_init_copies_embeddings_head_and_chosen_blocks(script):
    import argparse

    import jax
    import numpy as np

    import jaxzip as jz

    args = argparse.Namespace(size="tiny", seq_len=8)
    example = np.zeros((1, 8), np.int32)
    teacher = jz.models.init_params(script.make_model(args, 4), jax.random.key(0), example)
    student = jz.models.init_params(script.make_model(args, 2), jax.random.key(1), example)
    for how, blocks in (("alternate", (0, 2)), ("first", (0, 1))):
        out = script.teacher_init(student, teacher, how)
        assert jax.tree.map(np.shape, out) == jax.tree.map(np.shape, student)
        for name in ("embed", "pos_embed", "ln_f", "head"):
            assert jax.tree.all(jax.tree.map(np.array_equal, out[name], teacher[name]))
        for i, j in enumerate(blocks):
            same = jax.tree.map(np.array_equal, out[f"block_{i}"], teacher[f"block_{j}"])
            assert jax.tree.all(same)
    small = jz.models.init_params(script.make_model(args, 2), jax.random.key(2), example)
    with pytest.raises(ValueError, match="need 3 teacher blocks, the teacher has 2"):
        script.teacher_init(student, small, "alternate")
