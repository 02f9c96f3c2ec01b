"""Fixtures for tests/quant: a tiny pre-LN transformer block (d=16) for the activation-aware tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest


class Block(nn.Module):
    """A tiny pre-LN block: causal attention and a GELU MLP."""

    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(x)
        mask = nn.make_causal_mask(jnp.zeros(x.shape[:2], jnp.int32))
        x = x + nn.MultiHeadDotProductAttention(num_heads=2)(h, mask=mask)
        h = nn.LayerNorm()(x)
        return x + nn.Dense(16)(nn.gelu(nn.Dense(32)(h)))


@pytest.fixture
def tiny_block():
    """A factory ``make(outlier=1.0) -> (apply_fn, params, batches)``."""
    return _make_block


def _make_block(outlier: float = 1.0):
    """``(apply_fn, params, batches)``; ``outlier`` scales input channel 3 of the batches."""
    model = Block()
    keys = jax.random.split(jax.random.key(7), 3)
    batches = [jax.random.normal(k, (2, 6, 16)) for k in keys]
    batches = [b.at[..., 3].multiply(outlier) for b in batches]
    params = model.init(jax.random.key(0), batches[0])["params"]
    apply_fn = lambda p, x: model.apply({"params": p}, x)  # noqa: E731
    return apply_fn, params, batches
