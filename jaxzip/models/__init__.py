"""Reference models (LeNet-300-100, LeNet-5, MLPs, a small CNN, a decoder-only transformer).

And :func:`max_pool_2x2`, flax's 2x2 max pool with a gradient that is cheap on CPU.

Every model is called through the ``ApplyFn`` convention.

Linen models take ``__call__(x, *, train=False)`` on images ``(N, H, W, C)`` and
return logits (:class:`Transformer` takes ``(N, T)`` tokens and returns
``(N, T, vocab)`` logits); their params are named ``Dense_0``, ``Conv_0``, ... so that
``where=`` patterns such as ``r".*/kernel"`` select their weights. Training code
calls every model through an :class:`ApplyFn`, built by :func:`linen_apply_fn`
or :func:`nnx_apply_fn`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import jaxzip as jz
  >>> model = jz.models.lenet_300_100()
  >>> init = lambda: jz.models.init_params(model, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  >>> jz.models.param_count(jax.eval_shape(init))
  266610
"""

from jaxzip.models._apply import ApplyFn, init_params, linen_apply_fn, param_count
from jaxzip.models._cnn import LeNet5, SmallCNN
from jaxzip.models._mlp import MLP, lenet_300_100
from jaxzip.models._nnx import NnxMLP, nnx_apply_fn
from jaxzip.models._pool import max_pool_2x2
from jaxzip.models._transformer import Transformer, loop_params, scan_params

__all__ = [
    "MLP",
    "ApplyFn",
    "LeNet5",
    "NnxMLP",
    "SmallCNN",
    "Transformer",
    "init_params",
    "lenet_300_100",
    "linen_apply_fn",
    "loop_params",
    "max_pool_2x2",
    "nnx_apply_fn",
    "param_count",
    "scan_params",
]
