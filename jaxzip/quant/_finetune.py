"""Codebook fine-tuning: a jitted train step whose trainable leaves are the centroids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxzip._types import Params
from jaxzip.quant._kmeans import codebook_centroids, replace_centroids
from jaxzip.quant._params import dequantize_params


class CodebookState(NamedTuple):
    """State of codebook fine-tuning.

    Attributes:
      step: int32 scalar step counter.
      trainable: :func:`codebook_centroids` of the books (centroids and float leaves).
      opt_state: the optimizer state of ``trainable``.
    """

    step: jax.Array
    trainable: Params
    opt_state: optax.OptState


def init_codebook_state(books: Params, tx: optax.GradientTransformation) -> CodebookState:
    """Starts codebook fine-tuning from ``books`` (see :func:`make_codebook_step`).

    The trainable leaves are copies, so the step's donation of the state never
    deletes the arrays of ``books`` (or of the params they were built from).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jaxzip.quant import kmeans_params
      >>> books = kmeans_params({"w": jnp.array([0.0, 1.0])}, bits=1, where="w")
      >>> init_codebook_state(books, optax.sgd(0.1)).trainable
      {'w': Array([0., 1.], dtype=float32)}
    """
    trainable = jax.tree.map(jnp.copy, codebook_centroids(books))
    return CodebookState(jnp.zeros((), jnp.int32), trainable, tx.init(trainable))


def make_codebook_step(
    loss_fn: Callable[[Params, Any], jax.Array], tx: optax.GradientTransformation
) -> Callable[[CodebookState, Params, Any], tuple[CodebookState, dict[str, jax.Array]]]:
    """Makes a jitted step that trains the centroids (and float leaves) of codebooks.

    The loss sees the decoded float params, so each centroid's gradient is the
    sum of its members' gradients (the transpose of the gather), as in Deep
    Compression; indices and masks are fixed, so pruned weights stay exactly 0.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` on decoded float params.
      tx: an optax transformation for the trainable tree.

    Returns:
      ``step(state, books, batch) -> (state, {"loss": ...})``, jitted, donating
      ``state``. ``books`` supplies indices and masks (passed in, not closed over).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from jaxzip.quant import kmeans_params
      >>> books = kmeans_params({"w": jnp.array([0.0, 1.0])}, bits=1, where="w")
      >>> loss = lambda p, b: jnp.sum((p["w"] - b) ** 2)
      >>> tx = optax.sgd(0.25)
      >>> state = init_codebook_state(books, tx)
      >>> state, m = make_codebook_step(loss, tx)(state, books, jnp.array([1.0, 1.0]))
      >>> state.trainable["w"]
      Array([0.5, 1. ], dtype=float32)
    """

    def step(
        state: CodebookState, books: Params, batch: Any
    ) -> tuple[CodebookState, dict[str, jax.Array]]:
        def loss(trainable: Params) -> jax.Array:
            return loss_fn(dequantize_params(replace_centroids(books, trainable)), batch)

        value, grads = jax.value_and_grad(loss)(state.trainable)
        updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        return CodebookState(state.step + 1, trainable, opt_state), {"loss": value}

    return jax.jit(step, donate_argnums=0)
