"""The ``ApplyFn`` calling convention, and helpers to get params and apply functions from linen."""

from __future__ import annotations

from typing import Protocol

import flax.linen as nn
import jax
import numpy as np
from jax.typing import ArrayLike

from jaxzip._keys import check_key
from jaxzip._types import Params
from jaxzip.paths import leaves_with_paths


class ApplyFn(Protocol):
    """What the train loop calls: ``apply_fn(params, x, *, train, key) -> logits``.

    ``params`` is the parameter pytree, ``x`` a batch of images ``(N, H, W, C)``,
    ``train`` switches on training-only behaviour (dropout) and ``key`` is the
    PRNG key for it (``None`` when nothing random happens). The result is the
    ``(N, num_classes)`` logits. Build one with :func:`linen_apply_fn` or
    :func:`jaxzip.models.nnx_apply_fn`, or write your own for a plain pytree model.
    """

    def __call__(
        self, params: Params, x: jax.Array, *, train: bool, key: jax.Array | None
    ) -> jax.Array: ...


def linen_apply_fn(module: nn.Module) -> ApplyFn:
    """Wraps a linen module's ``apply`` in the :class:`ApplyFn` convention.

    The module must accept ``__call__(x, *, train: bool)``; ``key``, when given,
    becomes the ``"dropout"`` PRNG stream.

    Args:
      module: a linen module (for example :class:`jaxzip.models.MLP`).

    Returns:
      ``apply_fn(params, x, *, train=False, key=None) -> logits``, where ``params``
      is the module's ``"params"`` collection.

    Raises:
      TypeError: ``module`` is not a linen module.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import MLP, init_params
      >>> model = MLP((4,), num_classes=3)
      >>> x = jnp.ones((2, 2, 2, 1))
      >>> params = init_params(model, jax.random.key(0), x)
      >>> linen_apply_fn(model)(params, x, train=False, key=None).shape
      (2, 3)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"linen_apply_fn: module must be a flax.linen Module, got {type(module)!r}")

    def apply_fn(
        params: Params, x: jax.Array, *, train: bool = False, key: jax.Array | None = None
    ) -> jax.Array:
        rngs = None if key is None else {"dropout": key}
        return module.apply({"params": params}, x, train=train, rngs=rngs)

    return apply_fn


def init_params(module: nn.Module, key: jax.Array, example_x: ArrayLike) -> Params:
    """Initializes a linen module and returns its ``"params"`` collection.

    Args:
      module: a linen module taking ``__call__(x, *, train)``.
      key: PRNG key for the initializers.
      example_x: an input batch whose shape (and dtype) fixes the parameter shapes;
        only its shape and dtype are used.

    Returns:
      The params pytree (a plain nested dict of arrays).

    Raises:
      TypeError: ``module`` is not a linen module, or ``key`` is not a PRNG key.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxzip.models import MLP
      >>> params = init_params(MLP((4,), num_classes=3), jax.random.key(0), jnp.ones((1, 2, 2, 1)))
      >>> jax.tree.map(jnp.shape, params)
      {'Dense_0': {'bias': (4,), 'kernel': (4, 4)}, 'Dense_1': {'bias': (3,), 'kernel': (4, 3)}}
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"init_params: module must be a flax.linen Module, got {type(module)!r}")
    check_key("init_params", key)
    return module.init({"params": key}, example_x, train=False)["params"]


def param_count(params: Params) -> int:
    """The total number of scalar parameters (elements of every leaf).

    Leaves may be arrays, scalars or ``jax.ShapeDtypeStruct`` (so the count of a
    model can be had from ``jax.eval_shape`` without running its initializers).

    Example:
      >>> import jax.numpy as jnp
      >>> param_count({"Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}})
      16
      >>> from jaxzip.models import LeNet5
      >>> init = lambda: init_params(LeNet5(), jax.random.key(0), jnp.ones((1, 28, 28, 1)))
      >>> param_count(jax.eval_shape(init))
      431080

    Raises:
      TypeError: a leaf is not an array, a number or a ``jax.ShapeDtypeStruct``.
    """
    total = 0
    for path, leaf in leaves_with_paths(params):
        if not hasattr(leaf, "shape") and not isinstance(leaf, (int, float, complex)):
            raise TypeError(
                f"param_count: params leaf {path!r} must be an array, a number or a "
                f"jax.ShapeDtypeStruct, got {type(leaf).__name__} {leaf!r}"
            )
        total += int(np.prod(getattr(leaf, "shape", ())))
    return total
