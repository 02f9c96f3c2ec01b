"""Codebook fine-tuning: a jitted train step whose trainable leaves are the centroids, and
Deep Compression's centroid fine-tuning over epochs (:func:`finetune_codebooks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxzip._types import Params
from jaxzip.quant._kmeans import codebook_centroids, replace_centroids
from jaxzip.quant._params import dequantize_params
from jaxzip.train import Checkpoint, run_epochs


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


def finetune_codebooks(
    apply_fn: Callable[..., Any],
    books: Params,
    train_ds: Any,
    tx: optax.GradientTransformation,
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    augment: Callable[..., jax.Array] | None = None,
    loss: Callable[..., tuple[jax.Array, Any]] | None = None,
    teacher_params: Params | None = None,
    progress: bool = False,
    max_loss_growth: float | None = None,
    desc: str = "finetune_codebooks",
    checkpoint: Checkpoint | None = None,
) -> Params:
    """Deep Compression's centroid fine-tuning: ``epochs`` epochs of :func:`make_codebook_step`.

    Trains the centroids and the float leaves of ``books`` (indices and masks fixed, so
    pruned weights stay exactly 0) over ``train_ds`` with :func:`jaxzip.train.run_epochs`:
    a fresh shuffle per epoch from ``key``; step ``i`` splits ``fold_in(key, i)`` into the
    augmentation's key and the dropout key. The loss is the softmax cross-entropy on the
    labels (per token for a language model's windows), or ``loss(logits, teacher_logits,
    labels) -> (per_example, terms)`` (e.g. :func:`jaxzip.distill.kd_loss`) against
    ``apply_fn`` on ``teacher_params`` in inference mode, on the same augmented inputs.

    Args:
      apply_fn: the model, ``apply_fn(params, x, *, train, key)``.
      books: params with :class:`KMeansArray` leaves (:func:`kmeans_params`).
      train_ds: the training :class:`jaxzip.data.Dataset` or ``TokenWindows``.
      tx: the optimizer of the trainable tree (chain ``jaxzip.prune.keep_masked`` to hold
        pruned float weights at zero).
      epochs, batch_size, progress, max_loss_growth, desc: as in :func:`jaxzip.train.run_epochs`.
      key: the PRNG key of the shuffles and the steps.
      augment: optional ``augment(x, key=key) -> x`` (e.g. :class:`jaxzip.train.RandomShift`).
      loss: optional distillation loss; needs ``teacher_params``.
      teacher_params: the teacher's params (the model before weight sharing); only
        with ``loss``.
      checkpoint: a :class:`jaxzip.train.Checkpoint`: a killed fine-tuning, run again
        with the same arguments, resumes from it (see :func:`jaxzip.train.run_epochs`).

    Returns:
      ``books`` with the fine-tuned centroids and float leaves.

    Raises:
      ValueError: ``loss`` without ``teacher_params`` or the other way round; from
        :func:`jaxzip.train.run_epochs` (bad sizes or key, a diverged run).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> from jaxzip.data import Dataset
      >>> from jaxzip.quant import dequantize_params, kmeans_params
      >>> ds = Dataset(x=np.eye(2, dtype=np.float32).reshape(2, 1, 1, 2),
      ...              y=np.array([1, 0], np.int32), num_classes=2, name="toy")
      >>> linear = lambda p, x, *, train, key: x.reshape(len(x), -1) @ p["w"]
      >>> books = kmeans_params({"w": jnp.eye(2)}, bits=1, where="w")
      >>> tuned = finetune_codebooks(linear, books, ds, optax.sgd(1.0), epochs=5,
      ...                            batch_size=2, key=jax.random.key(0))
      >>> w = dequantize_params(tuned)["w"]  # still two shared values, now swapped in rank
      >>> bool(w[0, 1] > w[0, 0]), len(set(np.asarray(w).ravel().tolist()))
      (True, 2)
    """
    if (loss is None) != (teacher_params is None):
        raise ValueError(
            "finetune_codebooks: loss and teacher_params go together (a distillation loss "
            f"against the teacher); got loss={loss!r} and teacher_params "
            f"{'None' if teacher_params is None else 'given'}"
        )

    def loss_fn(params: Params, batch: dict[str, Any]) -> jax.Array:
        k_aug, k_drop = jax.random.split(batch["key"])
        x = batch["x"] if augment is None else augment(batch["x"], key=k_aug)
        logits = apply_fn(params, x, train=True, key=k_drop)
        if loss is None:
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        target = jax.lax.stop_gradient(apply_fn(batch["teacher"], x, train=False, key=None))
        per_example, _ = loss(logits, target, batch["y"])
        return per_example.mean()

    codebook_step = make_codebook_step(loss_fn, tx)
    extra = {} if loss is None else {"teacher": teacher_params}  # an argument: no retrace

    def step(state: CodebookState, batch: dict[str, Any], key: jax.Array) -> Any:
        return codebook_step(
            state, books, {**batch, **extra, "key": jax.random.fold_in(key, state.step)}
        )

    tuned, _ = run_epochs(
        step,
        init_codebook_state(books, tx),
        train_ds,
        key=key,
        epochs=epochs,
        batch_size=batch_size,
        progress=progress,
        max_loss_growth=max_loss_growth,
        desc=desc,
        checkpoint=checkpoint,
    )
    return replace_centroids(books, tuned.trainable)
