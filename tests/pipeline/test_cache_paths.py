"""Names read back from the stage cache never lead outside the output directory (issue 19.1).

A resumed run copies the files a stage's ``done.json`` lists back into the
output directory; a tampered manifest (``../`` names, names through a symlink
planted in the run directory, a symlinked stage directory) must be refused, and
nothing written outside ``--out``.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import pytest

from jaxzip._io import UnsafePathError, contained_path
from jaxzip.pipeline._cache import DONE_FILE, find_complete, restore_outputs, store_outputs


def _stage(tmp_path):
    """A stored stage with one file (``m.txt``) copied from the output directory."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "m.txt").write_text("model")
    stage_dir = out / "stages" / "01-train-abc"
    ok = store_outputs(
        stage_dir,
        key="k",
        name="train",
        out_dir=out,
        files=("m.txt",),
        updates={"params": {"w": jnp.ones(2)}},
        metrics={"acc": 1.0},
    )
    assert ok
    return out, stage_dir


def _tamper(stage_dir, **changes):
    manifest = json.loads((stage_dir / DONE_FILE).read_text())
    manifest.update(changes)
    (stage_dir / DONE_FILE).write_text(json.dumps(manifest))
    return find_complete(stage_dir, "k")


def test_untampered_stage_restores(tmp_path):
    out, stage_dir = _stage(tmp_path)
    (out / "m.txt").unlink()
    updates, metrics = restore_outputs(stage_dir, find_complete(stage_dir, "k"), out)
    assert (out / "m.txt").read_text() == "model" and metrics == {"acc": 1.0}
    assert updates["params"]["w"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "name",
    [
        "../../ESCAPED.txt",
        "/tmp/ESCAPED.txt",
        "a/../../ESCAPED.txt",
        "a//b",
        "./m.txt",
        "a\\..\\b",
        "",
        7,
    ],
)
def test_a_name_leaving_the_directory_is_refused_and_nothing_written(tmp_path, name):
    out, stage_dir = _stage(tmp_path)
    escaped = tmp_path.parent / "ESCAPED.txt"
    if isinstance(name, str) and name.startswith("../"):
        # the attacker also plants the source the name points at inside the stage
        (stage_dir / "files" / name).parent.mkdir(parents=True, exist_ok=True)
        (stage_dir / "files" / name).write_text("evil")
    manifest = _tamper(stage_dir, files=[name])
    with pytest.raises(UnsafePathError, match="refusing the name"):
        restore_outputs(stage_dir, manifest, out)
    assert not escaped.exists()


def test_a_name_through_a_symlink_in_the_run_directory_is_refused(tmp_path):
    out, stage_dir = _stage(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "lnk")
    (stage_dir / "files" / "lnk").mkdir()
    (stage_dir / "files" / "lnk" / "evil.sh").write_text("echo evil")
    manifest = _tamper(stage_dir, files=["lnk/evil.sh"])
    with pytest.raises(UnsafePathError, match="is a symlink"):
        restore_outputs(stage_dir, manifest, out)
    assert list(elsewhere.iterdir()) == []


def test_a_stored_output_file_outside_the_stage_is_refused(tmp_path):
    out, stage_dir = _stage(tmp_path)
    manifest = json.loads((stage_dir / DONE_FILE).read_text())
    manifest["outputs"]["params"]["file"] = "../../../secret.npz"
    (stage_dir / DONE_FILE).write_text(json.dumps(manifest))
    with pytest.raises(UnsafePathError):
        restore_outputs(stage_dir, find_complete(stage_dir, "k"), out)


def test_a_symlinked_stage_directory_is_never_complete(tmp_path):
    out, stage_dir = _stage(tmp_path)
    link = out / "stages" / "02-prune-def"
    os.symlink(stage_dir, link)
    assert find_complete(stage_dir, "k") is not None
    assert find_complete(link, "k") is None


def test_malformed_manifest_lists_are_refused(tmp_path):
    out, stage_dir = _stage(tmp_path)
    with pytest.raises(ValueError, match="'files' must be a list"):
        restore_outputs(stage_dir, _tamper(stage_dir, files="m.txt"), out)


def test_contained_path_accepts_plain_names_and_a_symlinked_root(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "root")  # the user's own choice of directory
    assert contained_path(tmp_path / "root", "a/b.txt", what="x") == tmp_path / "root" / "a/b.txt"
    with pytest.raises(UnsafePathError, match=r"x: refusing the name 'a/\.\./b'"):
        contained_path(tmp_path / "root", "a/../b", what="x")


def test_resumed_run_with_a_tampered_manifest_writes_nothing_outside_out(tmp_path, capsys):
    """End to end: the tampered stage is run again (and says why); nothing escapes."""
    from jaxzip.config import apply_overrides, load_config
    from jaxzip.pipeline import run_experiment

    stages = '["data", "model", "train", "evaluate", "report"]'
    cfg = apply_overrides(
        load_config(),
        ["model.name=mlp", "model.widths=[8]", "train.epochs=1", f"experiment.stages={stages}"],
    )
    out = tmp_path / "deep" / "run"
    first = run_experiment(cfg, out, progress=False, report=False)
    (train_dir,) = (out / "stages").glob("*-train-*")
    (train_dir / "files" / "../../../ESCAPED.txt").parent.mkdir(parents=True, exist_ok=True)
    (train_dir / "files" / "../../../ESCAPED.txt").write_text("evil")
    manifest = json.loads((train_dir / DONE_FILE).read_text())
    manifest["files"] = ["../../ESCAPED.txt"]
    (train_dir / DONE_FILE).write_text(json.dumps(manifest))
    capsys.readouterr()
    second = run_experiment(cfg, out, progress=False, report=False)
    assert not (tmp_path / "ESCAPED.txt").exists()
    assert "refusing the name '../../ESCAPED.txt'" in capsys.readouterr().err
    assert "train" not in second["cached"]
    assert second["metrics"]["test_accuracy"] == first["metrics"]["test_accuracy"]
