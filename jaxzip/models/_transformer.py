"""``Transformer``: a small decoder-only byte-level language model (linen)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxzip.models._mlp import check_dropout_rate


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Transformer: {name} must be a positive int, got {value!r}")


class Block(nn.Module):
    """One pre-LayerNorm decoder block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``.

    Attributes:
      num_heads: attention heads (``d_model`` of the input must divide by it).
      mlp_ratio: hidden width of the MLP as a multiple of ``d_model``.
      dropout_rate: dropout on the attention weights and both residual branches.
    """

    num_heads: int
    mlp_ratio: int
    dropout_rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """``(N, T, d_model) -> (N, T, d_model)`` with causal self-attention."""
        d_model = x.shape[-1]
        deterministic = not (train and self.dropout_rate > 0.0)
        mask = nn.make_causal_mask(jnp.zeros(x.shape[:2], jnp.int32))
        h = nn.LayerNorm(name="ln_1")(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dropout_rate=self.dropout_rate,
            deterministic=deterministic,
            name="attn",
        )(h, mask=mask)
        x = x + nn.Dropout(self.dropout_rate, deterministic=deterministic)(h)
        h = nn.LayerNorm(name="ln_2")(x)
        h = nn.gelu(nn.Dense(self.mlp_ratio * d_model, name="mlp_in")(h))
        h = nn.Dense(d_model, name="mlp_out")(h)
        return x + nn.Dropout(self.dropout_rate, deterministic=deterministic)(h)


class _ScannedBlock(Block):
    """A :class:`Block` as an ``nn.scan`` body: ``(h, None) -> (h, None)``, ``train`` fixed."""

    train: bool = False

    def __call__(self, x: jax.Array, _: None) -> tuple[jax.Array, None]:  # type: ignore[override]
        return super().__call__(x, train=self.train), None


class Transformer(nn.Module):
    """A decoder-only transformer over tokens (bytes by default): next-token logits.

    Token and learned position embeddings, ``num_layers`` pre-LayerNorm blocks of
    causal self-attention (Flax's ``nn.MultiHeadDotProductAttention``) and a GELU
    MLP, a final LayerNorm and an untied output head. Params are named
    ``embed``, ``pos_embed``, ``block_<i>/{ln_1, attn/{query,key,value,out},
    ln_2, mlp_in, mlp_out}``, ``ln_f`` and ``head``, so ``where=r".*/kernel"``
    selects every matrix of the blocks and the head (not the embeddings).

    With ``scan_layers=True`` the blocks are one ``nn.scan`` over a stack of
    layers (as MaxText- and Gemma-style models are built): their params are
    ``blocks/...`` with a leading layer axis, holding the same numbers as the
    ``block_<i>`` of the loop build (:func:`scan_params` / :func:`loop_params`
    convert), and the model computes the same logits up to float rounding.

    The reference size (the defaults): 4 layers, ``d_model`` 192, 4 heads, MLP
    ratio 4, 256 tokens, context up to 256: 1,927,552 params (1,902,976 with
    ``max_len=128``).

    Attributes:
      num_layers: decoder blocks.
      d_model: the residual width (divisible by ``num_heads``).
      num_heads: attention heads.
      mlp_ratio: MLP hidden width as a multiple of ``d_model``.
      max_len: the longest context (position embeddings).
      vocab_size: the number of tokens (256 for bytes) and of output logits.
      dropout_rate: dropout in ``[0, 1)``, active only for ``train=True`` (the
        ``"dropout"`` PRNG stream must then be given).
      scan_layers: build the blocks as one ``nn.scan`` over stacked params.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import init_params, param_count
      >>> model = Transformer(num_layers=1, d_model=16, num_heads=2, max_len=8, vocab_size=11)
      >>> x = jnp.zeros((3, 8), jnp.int32)
      >>> params = jax.eval_shape(lambda: init_params(model, jax.random.key(0), x))
      >>> jax.eval_shape(model.apply, {"params": params}, x).shape
      (3, 8, 11)
      >>> sorted(params["block_0"]["attn"])
      ['key', 'out', 'query', 'value']
    """

    num_layers: int = 4
    d_model: int = 192
    num_heads: int = 4
    mlp_ratio: int = 4
    max_len: int = 256
    vocab_size: int = 256
    dropout_rate: float = 0.0
    scan_layers: bool = False

    def __post_init__(self) -> None:
        for name in ("num_layers", "d_model", "num_heads", "mlp_ratio", "max_len", "vocab_size"):
            _check_positive_int(name, getattr(self, name))
        if self.d_model % self.num_heads:
            raise ValueError(
                f"Transformer: d_model ({self.d_model}) must be divisible by num_heads "
                f"({self.num_heads})"
            )
        check_dropout_rate("Transformer", "dropout_rate", self.dropout_rate)
        if not isinstance(self.scan_layers, bool):
            raise ValueError(f"Transformer: scan_layers must be a bool, got {self.scan_layers!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Logits ``(N, T, vocab_size)`` for int tokens ``x`` of shape ``(N, T)``.

        Raises:
          ValueError: ``x`` is not ``(N, T)`` integers with ``T <= max_len``, or
            ``train=True`` with ``dropout_rate > 0`` but no ``"dropout"`` PRNG key.
        """
        if x.ndim != 2 or x.shape[1] > self.max_len or x.shape[1] < 1:
            raise ValueError(
                f"Transformer: x must be (N, T) tokens with 1 <= T <= max_len={self.max_len}, "
                f"got shape {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"Transformer: x must hold integer tokens, got dtype {x.dtype}")
        use_dropout = train and self.dropout_rate > 0.0
        if use_dropout and not self.has_rng("dropout"):
            raise ValueError(
                f"Transformer: train=True with dropout_rate={self.dropout_rate} needs a "
                "dropout PRNG key (apply_fn(..., key=key) or rngs={'dropout': key}); got none"
            )
        init = nn.initializers.normal(stddev=0.02)
        h = nn.Embed(self.vocab_size, self.d_model, embedding_init=init, name="embed")(x)
        pos = self.param("pos_embed", init, (self.max_len, self.d_model))
        h = h + pos[None, : x.shape[1]]
        h = nn.Dropout(self.dropout_rate, deterministic=not use_dropout)(h)
        if self.scan_layers:
            stack = nn.scan(
                _ScannedBlock,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                length=self.num_layers,
            )
            h = stack(self.num_heads, self.mlp_ratio, self.dropout_rate, train, name="blocks")(
                h, None
            )[0]
        for i in range(0 if self.scan_layers else self.num_layers):
            block = Block(self.num_heads, self.mlp_ratio, self.dropout_rate, name=f"block_{i}")
            h = block(h, train=train)
        h = nn.LayerNorm(name="ln_f")(h)
        return nn.Dense(self.vocab_size, name="head")(h)


def _check_arrays(tree: Any, name: str) -> None:
    """Raises ``TypeError`` unless every leaf under the mappings of ``tree`` is an array."""
    for leaf in jax.tree.leaves(tree, is_leaf=lambda x: not isinstance(x, Mapping)):
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            raise TypeError(
                f"{name}: expected float arrays in the blocks' params, got a "
                f"{type(leaf).__name__}; convert the float params, then quantize (a QArray's "
                "axes would not follow the layer axis)"
            )


def scan_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params of a loop-built :class:`Transformer` for ``scan_layers=True``.

    ``block_0 ... block_<L-1>`` become ``blocks``, each leaf stacked along a new
    leading layer axis; the other entries are kept. Pass the ``"params"``
    collection (not the whole variables dict).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import init_params
      >>> model = Transformer(num_layers=2, d_model=8, num_heads=2, max_len=4, vocab_size=5)
      >>> p = init_params(model, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
      >>> s = scan_params(p)
      >>> s["blocks"]["mlp_in"]["kernel"].shape, sorted(s)[:2]
      ((2, 8, 32), ['blocks', 'embed'])
      >>> jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), loop_params(s), p))
      True
    """
    names = sorted((k for k in params if re.fullmatch(r"block_\d+", k)), key=lambda k: int(k[6:]))
    if not names or names != [f"block_{i}" for i in range(len(names))]:
        raise ValueError(
            "scan_params: expected the params of a loop-built Transformer (block_0, block_1, "
            f"...), got the keys {sorted(params)}"
        )
    blocks = [params[k] for k in names]
    for block in blocks:
        _check_arrays(block, "scan_params")
    out = {k: v for k, v in params.items() if k not in names}
    out["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
    return out


def loop_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`scan_params`: ``blocks`` split into ``block_0 ...``."""
    if "blocks" not in params:
        raise ValueError(
            "loop_params: expected the params of a Transformer with scan_layers=True "
            f"(a 'blocks' entry), got the keys {sorted(params)}"
        )
    _check_arrays(params["blocks"], "loop_params")
    leaves = jax.tree.leaves(params["blocks"])
    n = len(leaves[0]) if leaves else 0
    out = {k: v for k, v in params.items() if k != "blocks"}
    for i in range(n):
        out[f"block_{i}"] = jax.tree.map(lambda a, i=i: a[i], params["blocks"])
    return out
