"""Tests for jaxzip/distill/_step.py (and the checks in _core.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxzip.distill import combine_losses, hint_loss, kd_loss, make_train_step
from jaxzip.models import MLP, NnxMLP, init_params, linen_apply_fn, nnx_apply_fn
from jaxzip.train import init_state

KD = kd_loss(temperature=2.0, alpha=0.9)


def make_batch(n: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random 2x2x1 images with labels in {0, 1, 2}."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(n, 2, 2, 1)).astype(np.float32),
        "y": rng.integers(0, 3, n).astype(np.int32),
    }


def linear_apply(params, x, *, train, key):
    """A linear classifier on flattened images, as an ApplyFn over a plain dict."""
    return x.reshape(x.shape[0], -1) @ params["w"] + params["b"]


def linear_params(key: jax.Array, scale: float = 0.5) -> dict[str, jax.Array]:
    return {"w": scale * jax.random.normal(key, (4, 3)), "b": jnp.zeros((3,))}


@pytest.fixture
def batch() -> dict[str, np.ndarray]:
    return make_batch()


def _run(step, state, teacher_params, batch, n=5):
    losses = []
    for i in range(n):
        state, metrics = step(state, teacher_params, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    return state, metrics, losses


def test_hand_worked_single_sgd_step():
    # student w = 0 (uniform), teacher softmax rows (3/4, 1/4) and (1/4, 3/4), x = I,
    # alpha = 1, T = 1: dL/dw = x^T (q - p) / N, so w = (p - q) / 2 after one step of lr 1
    apply_fn = lambda p, x, *, train, key: x @ p  # noqa: E731
    tx = optax.sgd(1.0)
    step = make_train_step(apply_fn, apply_fn, tx, loss=kd_loss(temperature=1.0, alpha=1.0))
    teacher = jnp.log(3.0) * jnp.eye(2)
    state = init_state(jnp.zeros((2, 2)), tx)
    batch = {"x": jnp.eye(2), "y": jnp.array([0, 1])}
    state, metrics = step(state, teacher, batch, jax.random.key(0))
    np.testing.assert_allclose(state.params, [[0.125, -0.125], [-0.125, 0.125]], rtol=1e-6)
    kl = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert float(metrics["loss"]) == pytest.approx(kl, rel=1e-5)
    assert float(metrics["kd"]) == pytest.approx(kl, rel=1e-5)


def test_linen_student_and_teacher(batch):
    teacher, student = MLP((8,), num_classes=3), MLP((4,), num_classes=3)
    t_params = init_params(teacher, jax.random.key(0), batch["x"])
    s_params = init_params(student, jax.random.key(1), batch["x"])
    tx = optax.adam(0.05)
    step = make_train_step(linen_apply_fn(student), linen_apply_fn(teacher), tx, loss=KD)
    state, metrics, losses = _run(step, init_state(s_params, tx), t_params, batch, n=8)
    assert losses[-1] < losses[0]
    assert set(metrics) == {"loss", "accuracy", "kd", "ce"} and int(state.step) == 8


def test_nnx_student(batch):
    graphdef, s_params = nnx.split(NnxMLP((4,), 3, in_features=4, rngs=nnx.Rngs(0)), nnx.Param)
    tx = optax.adam(0.05)
    step = make_train_step(nnx_apply_fn(graphdef), linear_apply, tx, loss=KD)
    t_params = linear_params(jax.random.key(2), scale=2.0)
    state, _, losses = _run(step, init_state(s_params, tx), t_params, batch, n=8)
    assert losses[-1] < losses[0]
    assert jax.tree.structure(state.params) == jax.tree.structure(s_params)


def test_no_retrace_and_teacher_params_are_an_argument(batch):
    traces = []

    def counting_teacher(params, x, *, train, key):
        traces.append(train)  # runs only while tracing
        return linear_apply(params, x, train=train, key=key)

    tx = optax.sgd(0.1)
    step = make_train_step(linear_apply, counting_teacher, tx, loss=KD)
    params = linear_params(jax.random.key(0))
    _, m1 = step(init_state(params, tx), linear_params(jax.random.key(1)), batch, jax.random.key(0))
    s2, m2 = step(
        init_state(params, tx), linear_params(jax.random.key(2)), batch, jax.random.key(0)
    )
    step(s2, linear_params(jax.random.key(2)), make_batch(seed=3), jax.random.key(1))
    assert traces == [False]  # traced once, teacher in inference mode
    assert float(m1["kd"]) != float(m2["kd"])  # a new teacher is used, not a closed-over one


def test_teacher_gets_no_gradient_and_jit_matches_eager(batch):
    tx = optax.sgd(0.1)
    t_params = linear_params(jax.random.key(1))
    s_params = linear_params(jax.random.key(0))
    step = make_train_step(linear_apply, linear_apply, tx, loss=KD)
    state, metrics = step(init_state(s_params, tx), t_params, batch, jax.random.key(0))

    def eager_loss(p):
        per_example, _ = KD(
            linear_apply(p, batch["x"], train=True, key=None),
            linear_apply(t_params, batch["x"], train=False, key=None),
            batch["y"],
        )
        return per_example.mean()

    grads = jax.grad(eager_loss)(s_params)
    want = jax.tree.map(lambda p, g: p - 0.1 * g, s_params, grads)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.params, want
    )
    assert float(metrics["loss"]) == pytest.approx(float(eager_loss(s_params)), rel=1e-5)


def test_augment_shows_teacher_and_student_the_same_images(batch):
    from jaxzip.train import RandomShift

    tx = optax.sgd(0.1)
    params = linear_params(jax.random.key(1))
    pure_kd = kd_loss(temperature=2.0, alpha=1.0)  # the soft term only
    # the student is the teacher: on the same images their logits agree and KD is 0
    step = make_train_step(
        linear_apply, linear_apply, tx, loss=pure_kd, augment=RandomShift(pixels=1)
    )
    state, metrics = step(init_state(params, tx), params, batch, jax.random.key(0))
    assert float(metrics["kd"]) == pytest.approx(0.0, abs=1e-6)
    jax.tree.map(np.testing.assert_array_equal, state.params, params)  # no gradient

    # the images were shifted: the labels' term differs from the same step without augment
    steps = {
        name: make_train_step(linear_apply, linear_apply, tx, loss=KD, augment=aug)
        for name, aug in (("shift", RandomShift(pixels=1)), ("plain", None))
    }
    student = linear_params(jax.random.key(0))
    ce = {
        name: float(step(init_state(student, tx), params, batch, jax.random.key(0))[1]["ce"])
        for name, step in steps.items()
    }
    assert ce["shift"] != pytest.approx(ce["plain"])
    with pytest.raises(TypeError, match="augment must be None or callable"):
        make_train_step(linear_apply, linear_apply, tx, loss=KD, augment=2)


def test_student_transform_masks_weights(batch):
    mask = {"w": jnp.zeros((4, 3)).at[0].set(1.0), "b": jnp.ones(3)}
    tx = optax.sgd(0.5)
    step = make_train_step(
        linear_apply,
        linear_apply,
        tx,
        loss=KD,
        student_transform=lambda p: jax.tree.map(jnp.multiply, p, mask),
    )
    params = linear_params(jax.random.key(0))
    state, _, _ = _run(step, init_state(params, tx), linear_params(jax.random.key(1)), batch, n=3)
    np.testing.assert_array_equal(state.params["w"][1:], params["w"][1:])  # no gradient
    assert not np.allclose(state.params["w"][0], params["w"][0])


def test_padded_batch_with_mask_equals_the_unpadded_batch(batch):
    tx = optax.sgd(0.5)
    step = make_train_step(linear_apply, linear_apply, tx, loss=KD)
    params, t_params = linear_params(jax.random.key(0)), linear_params(jax.random.key(1))
    small = {"x": batch["x"][:6], "y": batch["y"][:6]}
    padded = {**batch, "mask": np.arange(8) < 6}
    padded["x"] = padded["x"].copy()
    padded["x"][6:] = 1e3  # finite garbage (NaN inputs would poison x^T @ grad)
    a, ma = step(init_state(params, tx), t_params, small, jax.random.key(0))
    b, mb = step(init_state(params, tx), t_params, padded, jax.random.key(0))
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5), a.params, b.params)
    assert float(ma["loss"]) == pytest.approx(float(mb["loss"]), rel=1e-5)


def test_feature_loss_through_the_step(batch):
    def with_hint(params, x, *, train, key):
        return {
            "logits": linear_apply(params, x, train=train, key=key),
            "hint": x.reshape(len(x), -1) @ params["w"],
        }

    loss = combine_losses({"kd": KD, "hint": hint_loss()}, weights={"hint": 0.1})
    tx = optax.sgd(0.1)
    step = make_train_step(with_hint, with_hint, tx, loss=loss)
    _, metrics = step(
        init_state(linear_params(jax.random.key(0)), tx),
        linear_params(jax.random.key(1)),
        batch,
        jax.random.key(0),
    )
    assert {"hint", "hint/hint", "kd/kd", "accuracy"} <= set(metrics)


def test_bad_transform_raises_before_compiling(batch):
    tx = optax.sgd(0.1)
    state = init_state(linear_params(jax.random.key(0)), tx)
    t_params = linear_params(jax.random.key(1))
    drop_b = make_train_step(
        linear_apply, linear_apply, tx, loss=KD, student_transform=lambda p: {"w": p["w"]}
    )
    with pytest.raises(ValueError, match="same tree structure"):
        drop_b(state, t_params, batch, jax.random.key(0))
    reshape = make_train_step(
        linear_apply, linear_apply, tx, loss=KD, student_transform=lambda p: {**p, "b": p["b"][:2]}
    )
    with pytest.raises(ValueError, match=r"leaf 'b' from float32\[3\] to float32\[2\]"):
        reshape(state, t_params, batch, jax.random.key(0))


def test_bad_inputs(batch):
    tx = optax.sgd(0.1)
    state = init_state(linear_params(jax.random.key(0)), tx)
    step = make_train_step(linear_apply, linear_apply, tx, loss=KD)
    t_params = linear_params(jax.random.key(1))
    with pytest.raises(ValueError, match="missing key"):
        step(state, t_params, {"x": batch["x"]}, jax.random.key(0))
    with pytest.raises(TypeError, match="TrainState"):
        step(state.params, t_params, batch, jax.random.key(0))
    with pytest.raises(ValueError, match=r"batch\['mask'\]"):
        step(state, t_params, {**batch, "mask": np.ones(8)}, jax.random.key(0))
    wide_teacher = {"w": jnp.zeros((4, 5)), "b": jnp.zeros(5)}
    with pytest.raises(ValueError, match=r"same shape.*\(8, 3\).*\(8, 5\)"):
        step(state, wide_teacher, batch, jax.random.key(0))
    with pytest.raises(TypeError, match="loss"):
        make_train_step(linear_apply, linear_apply, tx, loss=None)
    with pytest.raises(TypeError, match="teacher_apply"):
        make_train_step(linear_apply, None, tx, loss=KD)
    with pytest.raises(ValueError, match="'data'"):
        make_train_step(
            linear_apply, linear_apply, tx, loss=KD, mesh=jax.make_mesh((1,), ("batch",))
        )


# Sequence batches: tokens (N, T), per-token labels (N, T), logits (N, T, C).


def bigram_apply(params, x, *, train, key):
    """Each token's logits are a row of a table: a bigram language model."""
    return params[x]


def test_sequence_batch_equals_the_flattened_token_batch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (4, 6)).astype(np.int32)
    seq = {"x": x, "y": ((x + 1) % 5).astype(np.int32)}
    flat = {"x": seq["x"].reshape(-1), "y": seq["y"].reshape(-1)}
    teacher = jnp.asarray(2.0 * rng.normal(size=(5, 5)), jnp.float32)
    student = jnp.asarray(rng.normal(size=(5, 5)), jnp.float32)
    tx = optax.adam(0.05)
    step = make_train_step(bigram_apply, bigram_apply, tx, loss=KD)
    s1, m1 = step(init_state(student, tx), teacher, seq, jax.random.key(0))
    s2, m2 = step(init_state(student, tx), teacher, flat, jax.random.key(0))
    np.testing.assert_allclose(s1.params, s2.params, rtol=1e-5, atol=1e-6)
    for name in ("loss", "kd", "ce", "accuracy"):
        assert float(m1[name]) == pytest.approx(float(m2[name]), rel=1e-5), name
    # the KD of a student equal to its teacher is 0 on every token
    _, m3 = step(init_state(teacher, tx), teacher, seq, jax.random.key(0))
    assert float(m3["kd"]) == pytest.approx(0.0, abs=1e-6)


def test_sequence_batch_with_a_transformer_student_learns_from_the_teacher():
    from jaxzip.models import Transformer

    teacher = Transformer(num_layers=1, d_model=8, num_heads=2, max_len=6, vocab_size=7)
    student = Transformer(num_layers=1, d_model=8, num_heads=1, max_len=6, vocab_size=7)
    x = np.random.default_rng(1).integers(0, 7, (4, 6)).astype(np.int32)
    batch = {"x": x, "y": np.roll(x, -1, axis=1)}
    t_params = init_params(teacher, jax.random.key(0), x)
    tx = optax.adam(0.03)
    step = make_train_step(linen_apply_fn(student), linen_apply_fn(teacher), tx, loss=KD)
    state = init_state(init_params(student, jax.random.key(1), x), tx)
    _, metrics, losses = _run(step, state, t_params, batch, n=6)
    assert losses[-1] < losses[0] and 0.0 <= float(metrics["accuracy"]) <= 1.0


def test_sequence_labels_that_do_not_fit_the_logits():
    tx = optax.sgd(0.1)
    step = make_train_step(bigram_apply, bigram_apply, tx, loss=KD)
    x = np.zeros((2, 3), np.int32)
    with pytest.raises(ValueError, match=r"batch\['x'\] must start with the same \(N, T\)"):
        step(
            init_state(jnp.zeros((5, 5)), tx),
            jnp.zeros((5, 5)),
            {"x": x[:, :2], "y": x},
            jax.random.key(0),
        )
    with pytest.raises(
        ValueError, match=r"batch\['mask'\] must be a boolean array of shape \(2,\)"
    ):
        step(
            init_state(jnp.zeros((5, 5)), tx),
            jnp.zeros((5, 5)),
            {"x": x, "y": x, "mask": np.ones((2, 3), bool)},
            jax.random.key(0),
        )
