"""``evaluate``: loss and accuracy over a whole dataset, with a padded last batch."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip._types import Params
from jaxzip.data import Dataset, TokenWindows, batches
from jaxzip.models._apply import ApplyFn
from jaxzip.train._step import check_logits_fit


@functools.partial(jax.jit, static_argnames="apply_fn")
def _eval_batch(
    apply_fn: ApplyFn, params: Params, x: jax.Array, y: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    logits = apply_fn(params, x, train=False, key=None)
    check_logits_fit("evaluate", logits, y)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    correct = jnp.argmax(logits, axis=-1) == y
    valid = jnp.broadcast_to(valid.reshape(valid.shape + (1,) * (y.ndim - 1)), y.shape)
    loss_sum = jnp.sum(jnp.where(valid, losses, 0.0))
    n_correct = jnp.sum(jnp.logical_and(valid, correct), dtype=jnp.int32)
    return loss_sum, n_correct, correct


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) == size:
        return a
    pad = np.zeros((size - len(a), *a.shape[1:]), a.dtype)
    return np.concatenate([a, pad])


def _in_order(ds: Dataset | TokenWindows, size: int):
    if isinstance(ds, Dataset):
        return batches(ds, size, seed=None)
    return ({"x": ds.x[i : i + size], "y": ds.y[i : i + size]} for i in range(0, len(ds), size))


def evaluate(
    apply_fn: ApplyFn,
    params: Params,
    ds: Dataset | TokenWindows,
    *,
    batch_size: int = 1000,
    per_example: bool = False,
) -> dict[str, Any]:
    """Mean loss and accuracy of the model on every example (or token) of ``ds``.

    The model runs with ``train=False, key=None`` in batches of
    ``min(batch_size, len(ds))``; the last batch is zero-padded to that size and
    the padding masked out, so every example counts exactly once and the jitted
    evaluation compiles once per (model, batch shape), not once per batch size.
    Sums stay on the device until the end.

    A :class:`jaxzip.data.TokenWindows` is a sequence dataset: the model maps
    ``(N, T)`` tokens to ``(N, T, C)`` logits, every token is one prediction,
    and the result also holds ``"bits_per_token"`` (the mean cross-entropy in
    bits; for byte-level text, bits per byte) and ``"windows"``.

    Args:
      apply_fn: the model, ``apply_fn(params, x, *, train, key) -> logits``. The
        compiled evaluation is cached per ``apply_fn`` object: reuse one.
      params: the parameter pytree.
      ds: the :class:`jaxzip.data.Dataset` or :class:`jaxzip.data.TokenWindows`
        to evaluate on (not empty).
      batch_size: the largest batch (of examples or windows) to run at once.
      per_example: also return ``"correct"``, whether each prediction was right: a
        NumPy bool array of ``ds.y``'s shape (for paired comparisons of two models on
        the same examples, e.g. :func:`jaxzip.auto.paired_drop_se`).

    Returns:
      ``{"loss": mean cross-entropy (nats), "accuracy": fraction correct,
      "error": 1 - accuracy, "errors": number wrong, "count": examples (or
      tokens)}`` as plain Python floats and ints, plus ``"bits_per_token"`` and
      ``"windows"`` for token windows, and ``"correct"`` with ``per_example``.

    Raises:
      TypeError: ``ds`` is not a Dataset or TokenWindows, or ``batch_size`` is
        not an int.
      ValueError: ``ds`` is empty, ``batch_size < 1``, or the model's logits do
        not have shape ``(N, C)`` (``(N, T, C)`` for token windows).

    Example:
      >>> import numpy as np
      >>> from jaxzip.data import Dataset
      >>> ds = Dataset(x=np.eye(3, dtype=np.float32).reshape(3, 1, 1, 3),
      ...              y=np.array([0, 1, 1], np.int32), num_classes=3, name="toy")
      >>> apply_fn = lambda params, x, *, train, key: x.reshape(len(x), -1) * params
      >>> r = evaluate(apply_fn, 10.0, ds, batch_size=2)
      >>> r["errors"], r["count"], round(r["accuracy"], 4)
      (1, 3, 0.6667)
      >>> evaluate(apply_fn, 10.0, ds, batch_size=2, per_example=True)["correct"]
      array([ True,  True, False])

      Uniform logits over 4 tokens cost 2 bits a token:

      >>> from jaxzip.data import TokenWindows
      >>> w = TokenWindows(x=np.zeros((2, 3), np.int32), y=np.ones((2, 3), np.int32),
      ...                  vocab_size=4, name="toy")
      >>> uniform = lambda params, x, *, train, key: np.zeros((*x.shape, 4), np.float32)
      >>> r = evaluate(uniform, {}, w)
      >>> r["count"], r["windows"], round(r["bits_per_token"], 6)
      (6, 2, 2.0)
    """
    if not isinstance(ds, (Dataset, TokenWindows)):
        raise TypeError(
            "evaluate: ds must be a jaxzip.data.Dataset or jaxzip.data.TokenWindows, "
            f"got {type(ds).__name__}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"evaluate: batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be at least 1, got {batch_size}")
    if not isinstance(per_example, bool):
        raise TypeError(f"evaluate: per_example must be a bool, got {per_example!r}")
    if len(ds) == 0:
        raise ValueError(f"evaluate: dataset {ds.name!r} is empty")
    size = min(int(batch_size), len(ds))
    loss_sum = jnp.zeros((), jnp.float32)
    n_correct = jnp.zeros((), jnp.int32)
    hits = []  # each batch's per-example correctness, with per_example
    for batch in _in_order(ds, size):
        n = len(batch["y"])
        valid = np.arange(size) < n
        b_loss, b_correct, b_hits = _eval_batch(
            apply_fn, params, _pad(batch["x"], size), _pad(batch["y"], size), valid
        )
        loss_sum = loss_sum + b_loss
        n_correct = n_correct + b_correct
        if per_example:
            hits.append((b_hits, n))  # on the device until the end: one transfer
    count = int(ds.y.size)
    correct = int(n_correct)
    accuracy = correct / count
    loss = float(loss_sum) / count
    result = {
        "loss": loss,
        "accuracy": accuracy,
        "error": 1.0 - accuracy,
        "errors": count - correct,
        "count": count,
    }
    if isinstance(ds, TokenWindows):
        result["bits_per_token"] = loss / math.log(2)
        result["windows"] = len(ds)
    if per_example:
        fetched = jax.device_get([h for h, _ in hits])
        result["correct"] = np.concatenate([h[:n] for h, (_, n) in zip(fetched, hits, strict=True)])
    return result
