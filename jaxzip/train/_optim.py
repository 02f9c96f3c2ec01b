"""``kernel_mask``: the leaves weight decay applies to (kernels, not biases or scalars)."""

from __future__ import annotations

from jaxzip._types import Params, PyTree
from jaxzip.paths import min_ndim, select


def kernel_mask(params: Params) -> PyTree:
    """True for the leaves with at least 2 dimensions (kernels), False for biases and scalars.

    The weight-decay mask for optax's ``mask=`` (e.g. ``optax.adamw(lr, mask=kernel_mask)``).

    Example:
      >>> import jax.numpy as jnp
      >>> kernel_mask({"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}})
      {'Dense_0': {'bias': False, 'kernel': True}}
    """
    return select(params, min_ndim(2), allow_empty=True)
