"""Tests for jaxzip/models/_transformer.py: the decoder-only byte-level transformer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxzip as jz
from jaxzip.models import (
    Transformer,
    init_params,
    linen_apply_fn,
    loop_params,
    param_count,
    scan_params,
)

SMALL = {"num_layers": 2, "d_model": 16, "num_heads": 2, "max_len": 8, "vocab_size": 13}


def _tokens(n=3, t=8, vocab=13, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, (n, t)), jnp.int32)


def test_shapes_names_and_hand_counted_params():
    model = Transformer(**SMALL)
    params = init_params(model, jax.random.key(0), _tokens())
    assert sorted(params) == ["block_0", "block_1", "embed", "head", "ln_f", "pos_embed"]
    assert sorted(params["block_0"]) == ["attn", "ln_1", "ln_2", "mlp_in", "mlp_out"]
    d, v, f, t = 16, 13, 64, 8
    per_block = 4 * (d * d + d) + 2 * 2 * d + (d * f + f) + (f * d + d)
    assert param_count(params) == v * d + t * d + 2 * per_block + 2 * d + (d * v + v)
    assert linen_apply_fn(model)(params, _tokens()).shape == (3, 8, 13)


def test_reference_size_is_about_1_9m_params():
    init = lambda: init_params(Transformer(), jax.random.key(0), jnp.zeros((1, 8), jnp.int32))  # noqa: E731
    assert param_count(jax.eval_shape(init)) == 1_927_552  # 1,902,976 with max_len=128


def test_causal_a_later_token_never_changes_earlier_logits():
    model = Transformer(**SMALL)
    x = _tokens()
    params = init_params(model, jax.random.key(1), x)
    apply = linen_apply_fn(model)
    base = apply(params, x)
    for pos in (0, 3, 7):
        changed = x.at[:, pos].set((x[:, pos] + 1) % 13)
        out = apply(params, changed)
        np.testing.assert_allclose(out[:, :pos], base[:, :pos], atol=1e-6)
        assert not np.allclose(out[:, pos], base[:, pos])


def test_shorter_context_equals_a_prefix_and_jit_matches_eager():
    model = Transformer(**SMALL)
    x = _tokens()
    params = init_params(model, jax.random.key(2), x)
    apply = linen_apply_fn(model)
    np.testing.assert_allclose(apply(params, x[:, :5]), apply(params, x)[:, :5], atol=1e-5)
    jitted = jax.jit(lambda p, x: apply(p, x))(params, x)
    np.testing.assert_allclose(jitted, apply(params, x), atol=1e-5)


def test_dropout_needs_a_key_and_only_acts_when_training():
    model = Transformer(**SMALL, dropout_rate=0.5)
    x = _tokens()
    params = init_params(model, jax.random.key(0), x)
    apply = linen_apply_fn(model)
    np.testing.assert_array_equal(apply(params, x), apply(params, x, train=False))
    with pytest.raises(ValueError, match="needs a dropout PRNG key"):
        apply(params, x, train=True)
    a = apply(params, x, train=True, key=jax.random.key(1))
    b = apply(params, x, train=True, key=jax.random.key(2))
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_layers", 0),
        ("d_model", 2.0),
        ("num_heads", True),
        ("max_len", -1),
        ("vocab_size", 0),
        ("mlp_ratio", 0),
        ("dropout_rate", 1.0),
    ],
)
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field):
        Transformer(**{**SMALL, field: value})


def test_heads_must_divide_d_model_and_bad_inputs():
    with pytest.raises(ValueError, match=r"d_model \(16\) must be divisible by num_heads \(3\)"):
        Transformer(**{**SMALL, "num_heads": 3})
    model = Transformer(**SMALL)
    params = init_params(model, jax.random.key(0), _tokens())
    apply = linen_apply_fn(model)
    with pytest.raises(ValueError, match=r"T <= max_len=8, got shape \(1, 9\)"):
        apply(params, jnp.zeros((1, 9), jnp.int32))
    with pytest.raises(ValueError, match=r"got shape \(8,\)"):
        apply(params, jnp.zeros((8,), jnp.int32))
    with pytest.raises(ValueError, match="integer tokens"):
        apply(params, jnp.zeros((1, 8), jnp.float32))


def test_the_scanned_build_computes_the_loop_builds_logits():
    sizes = {"num_layers": 3, "d_model": 16, "num_heads": 2, "max_len": 8, "vocab_size": 11}
    loop, scan = Transformer(**sizes), Transformer(**sizes, scan_layers=True)
    x = jax.random.randint(jax.random.key(0), (2, 8), 0, 11)
    params = init_params(loop, jax.random.key(1), x)
    stacked = scan_params(params)
    like = jax.eval_shape(lambda: init_params(scan, jax.random.key(1), x))
    assert jax.tree.structure(stacked) == jax.tree.structure(like)
    assert stacked["blocks"]["attn"]["query"]["kernel"].shape == (3, 16, 2, 8)
    np.testing.assert_allclose(
        scan.apply({"params": stacked}, x), loop.apply({"params": params}, x), atol=1e-5
    )
    back = loop_params(stacked)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), back, params))
    # dropout draws per layer under the scan (split_rngs): training runs and is random
    drop = Transformer(**sizes, scan_layers=True, dropout_rate=0.5)
    a, b = (
        drop.apply({"params": stacked}, x, train=True, rngs={"dropout": jax.random.key(k)})
        for k in (2, 3)
    )
    assert a.shape == (2, 8, 11) and not np.allclose(a, b)


def test_scan_params_errors_name_what_was_expected():
    with pytest.raises(ValueError, match=r"scan_params: expected the params of a loop-built"):
        scan_params({"embed": 1, "block_1": {}})
    with pytest.raises(ValueError, match=r"loop_params: expected .*'blocks' entry"):
        loop_params({"embed": 1})
    with pytest.raises(ValueError, match="scan_layers must be a bool"):
        Transformer(scan_layers=1)
    q = jz.quant.quantize(jnp.ones((2, 3, 4)), jz.quant.QuantSpec(bits=4, axes=(-1,)))
    with pytest.raises(TypeError, match=r"loop_params: expected float arrays .* got a QArray"):
        loop_params({"blocks": {"w": q}})
    with pytest.raises(TypeError, match=r"scan_params: expected float arrays .* got a QArray"):
        scan_params({"block_0": {"w": q}})
