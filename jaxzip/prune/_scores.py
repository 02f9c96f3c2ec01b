"""Importance scores: trees with the params' structure, higher = more important."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxzip._keys import check_key
from jaxzip._types import Params, PyTree
from jaxzip.paths._trees import first_structure_difference


def magnitude_scores(params: Params) -> PyTree:
    """``|w|`` for every leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> magnitude_scores({"w": jnp.array([-2.0, 1.0])})
      {'w': Array([2., 1.], dtype=float32)}
    """
    return jax.tree.map(jnp.abs, params)


def random_scores(params: Params, *, key: jax.Array) -> PyTree:
    """Uniform ``[0, 1)`` scores, independent per leaf (a random-pruning baseline).

    Args:
      params: the params (only shapes are used).
      key: a JAX PRNG key; each leaf gets its own split.

    Raises:
      TypeError: ``key`` is not a PRNG key (e.g. a plain int seed).

    Example:
      >>> import jax
      >>> s = random_scores({"w": jax.numpy.zeros(3)}, key=jax.random.key(0))
      >>> s["w"].shape
      (3,)
    """
    leaves, treedef = jax.tree.flatten(params)
    check_key("random_scores", key)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = [jax.random.uniform(k, jnp.shape(x)) for k, x in zip(keys, leaves, strict=False)]
    return jax.tree.unflatten(treedef, out)


def saliency_scores(params: Params, grads: PyTree) -> PyTree:
    """First-order saliency ``|w * g|`` (the loss change from removing a weight, to first order).

    Raises:
      ValueError: ``grads`` does not have the params' structure and shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> saliency_scores({"w": jnp.array([2.0, -1.0])}, {"w": jnp.array([0.5, 3.0])})
      {'w': Array([1., 3.], dtype=float32)}
    """
    _check_like(params, grads, "grads")
    return jax.tree.map(lambda w, g: jnp.abs(w * g), params, grads)


def init_movement(params: Params) -> PyTree:
    """Zero movement scores, the start of :func:`accumulate_movement`.

    Example:
      >>> import jax.numpy as jnp
      >>> init_movement({"w": jnp.ones(2)})
      {'w': Array([0., 0.], dtype=float32)}
    """
    return jax.tree.map(lambda w: jnp.zeros(jnp.shape(w), jnp.float32), params)


def accumulate_movement(movement: PyTree, params: Params, grads: PyTree) -> PyTree:
    """Movement pruning scores (Sanh et al. 2020): adds ``-w * g`` for one step.

    Call it once per fine-tuning step with that step's params and gradients;
    the accumulated ``S = -sum_t w_t * g_t`` is high for weights moving away
    from zero. Pure: returns the new scores, pass them back in next step.

    Raises:
      ValueError: ``params`` or ``grads`` do not have ``movement``'s structure and shapes.

    Example:
      >>> import jax.numpy as jnp
      >>> m = init_movement({"w": jnp.ones(2)})
      >>> accumulate_movement(m, {"w": jnp.array([1.0, -1.0])}, {"w": jnp.array([-0.5, -0.5])})
      {'w': Array([ 0.5, -0.5], dtype=float32)}
    """
    _check_like(movement, params, "params")
    _check_like(movement, grads, "grads")
    return jax.tree.map(lambda s, w, g: s - (w * g).astype(jnp.float32), movement, params, grads)


def _check_like(reference: PyTree, other: PyTree, name: str) -> None:
    diff = first_structure_difference(reference, other)
    if diff is not None:
        raise ValueError(f"{name}: expected the params' structure and shapes; {diff}")
