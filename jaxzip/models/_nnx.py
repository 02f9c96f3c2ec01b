"""Flax nnx models, and ``nnx_apply_fn`` so that they train through the same loop as linen."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxzip._types import Params
from jaxzip.models._apply import ApplyFn
from jaxzip.models._mlp import check_dropout_rate


class NnxMLP(nnx.Module):
    """A ReLU multilayer perceptron in flax nnx, the nnx twin of :class:`jaxzip.models.MLP`.

    Layers are attributes ``Dense_0 ... Dense_k`` (the last is the classifier), so
    its params have the same paths as the linen ``MLP`` (``"Dense_0/kernel"``) and
    the same ``where=`` patterns select them. nnx creates parameters eagerly, so
    the flattened input size is given as ``in_features``. The module holds only
    ``nnx.Param`` state (dropout takes its key at call time), so
    ``nnx.split(model, nnx.Param)`` captures everything; train it with
    :func:`nnx_apply_fn`.

    Args:
      widths: hidden layer widths.
      num_classes: number of output logits.
      in_features: flattened input size (784 for 28x28x1 images, 64 for 8x8x1).
      dropout_rate: dropout probability after each hidden layer, in ``[0, 1)``.
      input_dropout_rate: dropout probability of each input pixel, in ``[0, 1)``.
      rngs: ``nnx.Rngs`` for the initializers.

    Raises:
      ValueError: a width, ``num_classes``, ``in_features``, ``dropout_rate`` or
        ``input_dropout_rate`` is invalid.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> model = NnxMLP((8,), 3, in_features=16, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 4, 4, 1))).shape
      (2, 3)
    """

    def __init__(
        self,
        widths: tuple[int, ...],
        num_classes: int = 10,
        *,
        in_features: int = 784,
        dropout_rate: float = 0.0,
        input_dropout_rate: float = 0.0,
        rngs: nnx.Rngs,
    ) -> None:
        if not isinstance(widths, (tuple, list)):
            raise ValueError(f"NnxMLP: widths must be a tuple of positive ints, got {widths!r}")
        sizes = (in_features, *widths, num_classes)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(
                "NnxMLP: in_features, widths and num_classes must be positive ints, got "
                f"in_features={in_features!r}, widths={widths!r}, num_classes={num_classes!r}"
            )
        check_dropout_rate("NnxMLP", "dropout_rate", dropout_rate)
        check_dropout_rate("NnxMLP", "input_dropout_rate", input_dropout_rate)
        self.in_features = in_features
        self.num_layers = len(sizes) - 1
        self.dropout_rate = float(dropout_rate)
        self.input_dropout_rate = float(input_dropout_rate)
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            setattr(self, f"Dense_{i}", nnx.Linear(n_in, n_out, rngs=rngs))
        self.dropout = nnx.Dropout(self.dropout_rate)
        self.input_dropout = nnx.Dropout(self.input_dropout_rate)

    def __call__(
        self, x: jax.Array, *, train: bool = False, key: jax.Array | None = None
    ) -> jax.Array:
        """Logits ``(N, num_classes)``; dropout runs only with ``train=True`` and needs ``key``.

        Raises:
          ValueError: ``train=True`` with ``dropout_rate > 0`` or ``input_dropout_rate > 0``
            and ``key=None``, or ``x`` does not flatten to ``in_features`` values per example.
        """
        use_dropout = train and self.dropout_rate > 0.0
        use_input_dropout = train and self.input_dropout_rate > 0.0
        if (use_dropout or use_input_dropout) and key is None:
            raise ValueError(
                f"NnxMLP: train=True with dropout_rate={self.dropout_rate}, input_dropout_rate="
                f"{self.input_dropout_rate} needs key=, got None"
            )
        x = jnp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"NnxMLP: x flattens to {x.shape[1]} features per example, "
                f"expected in_features={self.in_features}"
            )
        if use_input_dropout:
            key, sub = jax.random.split(key)
            x = self.input_dropout(x, deterministic=False, rngs=sub)
        for i in range(self.num_layers):
            x = getattr(self, f"Dense_{i}")(x)
            if i < self.num_layers - 1:
                x = nnx.relu(x)
                if use_dropout:
                    key, sub = jax.random.split(key)
                    x = self.dropout(x, deterministic=False, rngs=sub)
        return x


def nnx_apply_fn(graphdef: nnx.GraphDef) -> ApplyFn:
    """An :class:`~jaxzip.models.ApplyFn` for an nnx model split into ``graphdef`` and params.

    ``graphdef, params = nnx.split(model, nnx.Param)`` separates the model's
    structure from its parameters (an ``nnx.State``, a pytree whose paths are the
    attribute names, e.g. ``"Dense_0/kernel"``). The returned function rebuilds
    the module with ``nnx.merge(graphdef, params)`` and calls it as
    ``model(x, train=train, key=key)``, so the model's ``__call__`` must take those
    keyword arguments (as :class:`NnxMLP` does) and it must hold no state besides
    ``nnx.Param`` (or that state would be missing from the split).

    Args:
      graphdef: the first result of ``nnx.split``.

    Returns:
      ``apply_fn(params, x, *, train=False, key=None) -> logits``.

    Raises:
      TypeError: ``graphdef`` is not an nnx ``GraphDef``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> graphdef, params = nnx.split(NnxMLP((8,), 3, in_features=4, rngs=nnx.Rngs(0)), nnx.Param)
      >>> apply_fn = nnx_apply_fn(graphdef)
      >>> apply_fn(params, jnp.ones((2, 2, 2, 1)), train=False, key=None).shape
      (2, 3)
    """
    if not isinstance(graphdef, nnx.GraphDef):
        raise TypeError(
            "nnx_apply_fn: graphdef must be the GraphDef from nnx.split(model, nnx.Param), "
            f"got {type(graphdef)!r}"
        )

    def apply_fn(
        params: Params, x: jax.Array, *, train: bool = False, key: jax.Array | None = None
    ) -> jax.Array:
        model = nnx.merge(graphdef, params)
        return model(x, train=train, key=key)

    return apply_fn
