"""Tiny models shared by the layout and calibration tests."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class Block(nn.Module):
    d_model: int = 16
    heads: int = 2

    @nn.compact
    def __call__(self, x):
        t = x.shape[-2]
        mask = nn.make_causal_mask(jnp.ones((1, t)))
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(h, h, mask=mask)
        h = nn.LayerNorm()(x)
        h = nn.Dense(2 * self.d_model)(h)
        return x + nn.Dense(self.d_model)(nn.gelu(h))


class Decoder(nn.Module):
    """A 4-layer decoder-only transformer with Flax's own attention."""

    vocab: int = 11
    d_model: int = 16
    layers: int = 4

    @nn.compact
    def __call__(self, ids):
        x = nn.Embed(self.vocab, self.d_model)(ids)
        x = x + self.param("pos", nn.initializers.normal(0.02), (ids.shape[-1], self.d_model))
        for _ in range(self.layers):
            x = Block(self.d_model)(x)
        return nn.Dense(self.vocab, name="head")(nn.LayerNorm()(x))
