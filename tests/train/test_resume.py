"""Tests for jaxzip/train/_resume.py: the loop's checkpoint, kill and resume."""

from __future__ import annotations

import json

import jax
import numpy as np
import optax
import pytest

from jaxzip import CheckpointError
from jaxzip.train import Checkpoint, fit, init_state, make_train_step, run_epochs


class Killed(Exception):
    """Stands for the process dying between two steps."""


def _killing(step, after):
    """``step``, but the run dies instead of taking step number ``after + 1``."""
    calls = []

    def wrapped(state, batch, key):
        if len(calls) == after:
            raise Killed
        calls.append(1)
        return step(state, batch, key)

    return wrapped


def _run(toy, linear, linear_params, step=None, **kw):
    tx = optax.adam(0.1)  # a state with moments: they must come back too
    step = step or make_train_step(linear, tx)
    args = {"key": jax.random.key(3), "epochs": 3, "batch_size": 5}
    return run_epochs(step, init_state(linear_params, tx), toy, **{**args, **kw}), step


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _no_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("after", [1, 6, 8, 15])  # mid-epoch, at an epoch's last batch, ...
def test_a_killed_run_resumes_and_ends_as_if_never_stopped(
    toy, linear, linear_params, tmp_path, after
):
    (whole, history), step = _run(toy, linear, linear_params)
    ckpt = Checkpoint(tmp_path / "ckpt", every_seconds=0)
    with pytest.raises(Killed):
        _run(toy, linear, linear_params, step=_killing(step, after), checkpoint=ckpt)
    saved = json.loads((tmp_path / "ckpt" / "loop.json").read_text())
    assert (saved["epoch"], saved["batch"]) == divmod(after, 6)  # 32 // 5 = 6 steps an epoch
    (resumed, history2), _ = _run(toy, linear, linear_params, step=step, checkpoint=ckpt)
    _same(resumed, whole)
    assert int(resumed.step) == 18
    assert _no_seconds(history2) == _no_seconds(history)
    assert not list((tmp_path / "ckpt").iterdir())  # the loop ended: its files are gone


def test_a_checkpoint_of_another_run_is_an_error(toy, linear, linear_params, tmp_path):
    (_, _), step = _run(toy, linear, linear_params)
    ckpt = Checkpoint(tmp_path, every_seconds=0)
    with pytest.raises(Killed):
        _run(toy, linear, linear_params, step=_killing(step, 2), checkpoint=ckpt)
    with pytest.raises(CheckpointError, match=r"another training run .*\['key'\]"):
        _run(toy, linear, linear_params, step=step, checkpoint=ckpt, key=jax.random.key(4))
    with pytest.raises(CheckpointError, match=r"another training run .*\['epochs'\]"):
        _run(toy, linear, linear_params, step=step, checkpoint=ckpt, epochs=4)
    (tmp_path / "loop.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        _run(toy, linear, linear_params, step=step, checkpoint=ckpt)


def test_fit_passes_the_checkpoint_on_and_saves_at_most_as_often_as_asked(
    toy, linear, linear_params, tmp_path
):
    args = {"epochs": 2, "batch_size": 8, "key": jax.random.key(0), "progress": False}
    plain, _ = fit(linear, linear_params, optax.sgd(0.5), toy, **args)
    ckpt = Checkpoint(tmp_path, every_seconds=3600)  # only at the end of each epoch
    again, _ = fit(linear, linear_params, optax.sgd(0.5), toy, checkpoint=ckpt, **args)
    _same(again.params, plain.params)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Checkpoint(""), TypeError, "directory must be a non-empty path"),
        (lambda: Checkpoint("d", every_seconds=float("inf")), ValueError, "every_seconds"),
        (lambda: Checkpoint("d", every_seconds=True), ValueError, "every_seconds"),
    ],
)
def test_bad_checkpoints_name_the_field(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: {**m, "batch": "3"}, "unreadable"),
        (lambda m: {**m, "epoch": 99}, "unreadable"),
        (lambda m: {**m, "state": "../elsewhere.npz"}, "unreadable.*refusing the name"),
        (lambda m: {**m, "state": "state-9-9.npz"}, "no params file"),
        (lambda m: {**m, "history": {"a": 1}}, "unreadable"),
    ],
)
def test_a_tampered_checkpoint_is_refused_naming_it(
    toy, linear, linear_params, tmp_path, change, match
):
    (_, _), step = _run(toy, linear, linear_params)
    ckpt = Checkpoint(tmp_path, every_seconds=0)
    with pytest.raises(Killed):
        _run(toy, linear, linear_params, step=_killing(step, 2), checkpoint=ckpt)
    meta = json.loads((tmp_path / "loop.json").read_text())
    (tmp_path / "loop.json").write_text(json.dumps(change(meta)))
    with pytest.raises(CheckpointError, match=match):
        _run(toy, linear, linear_params, step=step, checkpoint=ckpt)


_SHARDED = r"""
import json, tempfile, jax, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P
import jaxzip as jz
mesh = jax.make_mesh((4,), ("model",), axis_types=(jax.sharding.AxisType.Auto,))
ds = jz.data.Dataset(x=np.random.default_rng(0).random((32, 2, 2, 1), np.float32),
                     y=np.arange(32, dtype=np.int32) % 4, num_classes=4, name="toy")
apply = lambda p, x, *, train, key: x.reshape(len(x), -1) @ p["w"]
params = {"w": jax.device_put(np.zeros((4, 4), np.float32), NamedSharding(mesh, P(None, "model")))}
tx = optax.adam(0.1)
step = jz.train.make_train_step(apply, tx)
def run(step, ckpt=None):
    return jz.train.run_epochs(step, jz.train.init_state(params, tx), ds, key=jax.random.key(0),
                               epochs=2, batch_size=8, checkpoint=ckpt)[0]
whole = run(step)
ckpt = jz.train.Checkpoint(tempfile.mkdtemp(), every_seconds=0)
calls = []
def dying(state, batch, key):
    calls.append(1)
    if len(calls) == 6:
        raise KeyboardInterrupt
    return step(state, batch, key)
try:
    run(dying, ckpt)
except KeyboardInterrupt:
    pass
seen = []
def watching(state, batch, key):  # the restored state, as the first resumed step gets it
    seen.append(str(state.params["w"].sharding.spec))
    return step(state, batch, key)
resumed = run(watching, ckpt)
RESULT = {"seen": seen[0], "final": str(resumed.params["w"].sharding.spec),
          "same": bool(np.array_equal(np.asarray(whole.params["w"]), np.asarray(resumed.params["w"]))),
          "steps": len(seen)}
"""


def test_a_sharded_state_is_restored_with_its_sharding(four_devices):
    out = four_devices(_SHARDED)
    assert out["seen"] == "P(None, 'model')" == out["final"]
    assert out["same"] and out["steps"] == 3  # 8 steps in all, 5 taken before the kill


def test_an_early_stop_is_kept_across_a_kill_and_leaves_no_checkpoint(
    toy, linear, linear_params, tmp_path
):
    stop = [lambda record, state: record["epoch"] == 1]
    (plain, history), step = _run(toy, linear, linear_params, callbacks=stop)

    def dies_deciding(record, state):  # killed while the callbacks decide to stop
        raise Killed

    ckpt = Checkpoint(tmp_path, every_seconds=0)
    with pytest.raises(Killed):
        _run(toy, linear, linear_params, step=step, callbacks=[dies_deciding], checkpoint=ckpt)
    (again, history2), _ = _run(
        toy, linear, linear_params, step=step, callbacks=stop, checkpoint=ckpt
    )
    _same(again, plain)  # the resumed run stops after epoch 1 too, not one epoch later
    assert len(history2) == len(history) == 1 and not list(tmp_path.iterdir())


def test_an_evaluate_returning_arrays_is_checkpointed_as_numbers(
    toy, linear, linear_params, tmp_path
):
    def evaluate(state):  # a user's evaluate: device scalars, not floats
        return {"w_norm": jax.numpy.linalg.norm(state.params["w"]), "step": state.step + 0}

    (_, history), step = _run(toy, linear, linear_params, evaluate=evaluate)
    ckpt = Checkpoint(tmp_path, every_seconds=0)
    with pytest.raises(Killed):
        _run(
            toy, linear, linear_params, step=_killing(step, 14), evaluate=evaluate, checkpoint=ckpt
        )
    (_, resumed), _ = _run(
        toy, linear, linear_params, step=step, evaluate=evaluate, checkpoint=ckpt
    )
    assert [float(h["w_norm"]) for h in resumed] == [float(h["w_norm"]) for h in history]
    assert [int(h["step"]) for h in resumed] == [6, 12, 18]
