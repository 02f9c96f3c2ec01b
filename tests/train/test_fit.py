"""Tests for jaxzip/train/_fit.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxzip as jz
from jaxzip.data import Dataset
from jaxzip.train import epoch_batches, fit, init_state, make_train_step, named_key, run_epochs

KEYS = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}


def _fit(toy, linear, linear_params, **overrides):
    """``fit`` of the linear model on ``toy`` with SGD(1.0): one epoch of batches of 8,
    key 0, no progress, unless ``overrides`` say otherwise."""
    args = {"epochs": 1, "batch_size": 8, "key": jax.random.key(0), "progress": False}
    train_ds = overrides.pop("train_ds", toy)
    return fit(linear, linear_params, optax.sgd(1.0), train_ds, **{**args, **overrides})


def test_history_and_learning(toy, linear, linear_params):
    state, history = _fit(toy, linear, linear_params, epochs=3, val_ds=toy)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(set(h) == KEYS for h in history)
    assert all(isinstance(h[k], float) for h in history for k in KEYS - {"epoch"})
    assert int(state.step) == 3 * (32 // 8)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] == 1.0
    assert history[0]["train_loss"] < np.log(2.0)  # the mean over the epoch's 4 steps


def test_same_seed_same_result_other_seed_other_order(toy, linear, linear_params):
    def run(seed):
        return _fit(toy, linear, linear_params, batch_size=5, key=jax.random.key(seed))[0].params

    a, b, c = run(0), run(0), run(1)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["w"], c["w"])


def test_drops_the_incomplete_batch_and_leaves_params_usable(toy, linear, linear_params):
    state, history = _fit(toy, linear, linear_params, batch_size=10)
    assert int(state.step) == 3  # 32 examples, batches of 10: the last 2 are dropped
    assert history[0]["val_loss"] is None and history[0]["val_accuracy"] is None
    np.testing.assert_array_equal(linear_params["w"], 0.0)


def test_progress_goes_to_stderr(toy, linear, linear_params, capsys):
    _fit(toy, linear, linear_params, val_ds=toy, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "epoch 1/1" in err and "loss=" in err and "val_acc=1.0000" in err


def test_silent_without_progress(toy, linear, linear_params, capsys):
    _fit(toy, linear, linear_params)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs must be at least 1"),
        ({"epochs": 1.5}, TypeError, "epochs must be an int"),
        ({"batch_size": 33}, ValueError, "batch_size=33 exceeds the 32"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
        ({"key": 0}, TypeError, "fit: key must be a PRNG key"),
        ({"key": None}, TypeError, "fit: key must be a PRNG key"),
        ({"val_ds": "val"}, TypeError, r"val_ds must be a jaxzip\.data\.Dataset"),
        ({"train_ds": ("x", "y")}, TypeError, r"train_ds must be a jaxzip\.data\.Dataset"),
    ],
)
def test_bad_arguments(kwargs, error, match, toy, linear, linear_params):
    with pytest.raises(error, match=match):
        _fit(toy, linear, linear_params, **kwargs)


def _count_step(total, batch, key):
    """A step whose state is the sum of the labels seen: a hand-checkable loop."""
    return total + batch["y"].sum(), {"loss": jnp.float32(batch["y"].sum()), "vec": jnp.ones(2)}


def _labelled(n: int) -> Dataset:
    return Dataset(
        x=np.zeros((n, 1, 1, 1), np.float32),
        y=np.arange(n, dtype=np.int32),
        num_classes=n,
        name="count",
    )


def test_run_epochs_by_hand():
    # 6 examples, batches of 4: one step per epoch over 4 distinct labels of 0..5
    total, history = run_epochs(
        _count_step, jnp.int32(0), _labelled(6), key=jax.random.key(0), epochs=3, batch_size=4
    )
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "train_loss", "seconds"}  # non-scalar metrics skipped
    assert int(total) == sum(h["train_loss"] for h in history)
    assert all(6 <= h["train_loss"] <= 14 for h in history)  # 0+1+2+3 .. 2+3+4+5


def test_run_epochs_evaluate_callbacks_and_early_stop():
    seen = []

    def stop_at_2(record, state):
        seen.append((record["epoch"], int(state)))
        return record["epoch"] == 2

    total, history = run_epochs(
        _count_step,
        jnp.int32(0),
        _labelled(4),
        key=jax.random.key(1),
        epochs=5,
        batch_size=4,
        evaluate=lambda s: {"val": int(s)},
        callbacks=[stop_at_2],
    )
    assert seen == [(1, 6), (2, 12)] and int(total) == 12
    assert [h["val"] for h in history] == [6, 12]


def test_epoch_batches_visit_each_example_once_and_depend_only_on_the_key():
    ds = _labelled(10)

    def order(seed):
        return [b["y"].tolist() for b in epoch_batches(ds, 3, key=jax.random.key(seed))]

    a, b, c = order(0), order(0), order(1)
    assert a == b and a != c
    flat = [y for batch in a for y in batch]
    assert len(a) == 3 and len(flat) == 9 and len(set(flat)) == 9  # the 10th dropped


def test_run_epochs_same_key_same_result_jit_and_eager_steps_agree(toy, linear, linear_params):
    tx = optax.sgd(0.5)
    jitted = make_train_step(linear, tx)

    def eager(state, batch, key):
        with jax.disable_jit():
            return jitted(state, batch, key)

    args = {"key": jax.random.key(3), "epochs": 2, "batch_size": 8}
    a, _ = run_epochs(jitted, init_state(linear_params, tx), toy, **args)
    b, _ = run_epochs(eager, init_state(linear_params, tx), toy, **args)
    np.testing.assert_allclose(a.params["w"], b.params["w"], rtol=1e-6, atol=1e-6)
    assert int(a.step) == int(b.step) == 8


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"step": None}, TypeError, "step must be callable"),
        ({"key": 0}, TypeError, "key must be a PRNG key"),
        ({"epochs": 0}, ValueError, "epochs must be at least 1"),
        ({"batch_size": 7}, ValueError, "batch_size=7 exceeds the 6"),
        ({"evaluate": 1}, TypeError, "evaluate must be callable"),
        ({"callbacks": [1]}, TypeError, "callbacks must be a sequence of callables"),
        ({"train_ds": "ds"}, TypeError, "train_ds must be a jaxzip.data.Dataset or TokenWindows"),
        ({"max_loss_growth": 1.0}, ValueError, "max_loss_growth must be None or a number > 1"),
        (
            {"max_loss_growth": 10, "step": lambda s, b, k: (s, {"acc": 1.0})},
            ValueError,
            "needs a scalar 'loss'",
        ),
    ],
)
def test_run_epochs_bad_arguments(kwargs, error, match):
    args = {
        "step": _count_step,
        "state": jnp.int32(0),
        "train_ds": _labelled(6),
        "key": jax.random.key(0),
        "epochs": 1,
        "batch_size": 2,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        run_epochs(**args)


def test_named_key_is_stable_and_checked():
    root = jax.random.key(0)
    data = jax.random.key_data
    np.testing.assert_array_equal(data(named_key(root, "a")), data(named_key(root, "a")))
    assert not np.array_equal(data(named_key(root, "a")), data(named_key(root, "b")))
    # golden: the name's hash is SHA-256 based, not Python's salted hash()
    np.testing.assert_array_equal(
        data(named_key(root, "train")), data(jax.random.fold_in(root, np.uint32(0xC4546F11)))
    )
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        named_key(root, "")
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        named_key(0, "a")


def _loss_step(losses):
    """A step whose loss is ``losses[step]``: a scripted training curve."""

    def step(i, batch, key):
        return i + 1, {"loss": jnp.float32(losses[int(i)])}

    return step


def test_an_exploding_but_finite_loss_stops_as_diverged():
    # issue 19: lr 1e10 drives cross-entropy to 1e9 without a NaN; the first step's loss is
    # the reference (2.3 here), 100x it is the limit, the epoch's mean crosses it
    step = _loss_step([2.3, 5.0, 1e9, 1e9, 3e9, 2e9])
    with pytest.raises(
        jz.DivergedError,
        match=r"epoch 2's mean loss 1e\+09 is over 100x "
        r"the first step's loss 2\.3",
    ) as e:
        run_epochs(
            step,
            0,
            _labelled(4),
            key=jax.random.key(0),
            epochs=3,
            batch_size=2,
            max_loss_growth=100,
        )
    assert isinstance(e.value, jz.NonFiniteError) and e.value.state == 4
    # without the check the same curve runs to the end
    _, history = run_epochs(step, 0, _labelled(4), key=jax.random.key(0), epochs=3, batch_size=2)
    assert [h["train_loss"] for h in history][-1] == pytest.approx(2.5e9)


def test_a_near_zero_start_may_rise_a_little_and_a_falling_loss_never_stops():
    def two_epochs(losses):  # 4 steps of the given losses, guarded at 100x growth
        step, data = _loss_step(losses), _labelled(4)
        key = jax.random.key(0)
        return run_epochs(step, 0, data, key=key, epochs=2, batch_size=2, max_loss_growth=100)

    # fine-tuning a converged model: 0.001 then 5 (below 100 x the 0.1 floor) is not divergence
    _, history = two_epochs([0.001, 5.0, 5.0, 5.0])
    assert len(history) == 2
    with pytest.raises(jz.DivergedError, match=r"first step.s loss 0\.001"):
        two_epochs([0.001, 20.0, 20.0, 20.0])


# Language models: fit on TokenWindows (N, T) with per-token cross-entropy.


def _bigram(params, x, *, train, key):
    """Each token's logits are a row of a table: a one-layer language model."""
    return params[x]


def _cycle_windows(n: int, t: int = 4, vocab: int = 3):
    """Windows of the text 0 1 2 0 1 2 ...: the next token is (token + 1) % vocab."""
    from jaxzip.data import TokenWindows

    x = (np.arange(n)[:, None] + np.arange(t)[None, :]) % vocab
    return TokenWindows(
        x=x.astype(np.int32), y=((x + 1) % vocab).astype(np.int32), vocab_size=vocab, name="cycle"
    )


def test_fit_learns_a_language_model_on_token_windows():
    train, val = _cycle_windows(12), _cycle_windows(5)
    table = np.zeros((3, 3), np.float32)  # uniform: log2(3) bits a token before training
    state, history = fit(
        _bigram,
        table,
        optax.adam(0.3),
        train,
        epochs=4,
        batch_size=4,
        key=jax.random.key(0),
        val_ds=val,
        progress=False,
    )
    assert int(state.step) == 4 * 3
    last = history[-1]
    assert set(last) == KEYS | {"val_bits_per_token"}
    assert last["val_bits_per_token"] == pytest.approx(last["val_loss"] / np.log(2.0))
    assert last["val_bits_per_token"] < 0.5 * np.log2(3.0) and last["val_accuracy"] == 1.0
    # each step saw whole windows: the table learned every token's successor
    assert np.argmax(np.asarray(state.params), axis=1).tolist() == [1, 2, 0]


def test_fit_on_windows_batches_windows_as_epoch_batches_does():
    w = _cycle_windows(6)
    batches = list(epoch_batches(w, 4, key=jax.random.key(1)))
    assert len(batches) == 1 and batches[0]["x"].shape == batches[0]["y"].shape == (4, 4)
    np.testing.assert_array_equal(batches[0]["y"], (batches[0]["x"] + 1) % 3)


def test_fit_refuses_augment_and_other_data_for_windows():
    w = _cycle_windows(4)
    args = {"epochs": 1, "batch_size": 2, "key": jax.random.key(0), "progress": False}
    table = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="augment shifts images; train_ds holds token windows"):
        fit(_bigram, table, optax.sgd(0.1), w, augment=jz.train.RandomShift(pixels=1), **args)
    with pytest.raises(TypeError, match=r"val_ds must be a jaxzip\.data\.Dataset or TokenWindows"):
        fit(_bigram, table, optax.sgd(0.1), w, val_ds=[1], **args)
    images = Dataset(
        x=np.zeros((4, 1, 1, 1), np.float32), y=np.zeros(4, np.int32), num_classes=3, name="images"
    )
    with pytest.raises(
        TypeError,
        match=r"val_ds must be the same kind of data as train_ds "
        r"\(TokenWindows\), got Dataset",
    ):
        fit(_bigram, table, optax.sgd(0.1), w, val_ds=images, **args)
