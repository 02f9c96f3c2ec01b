"""Training: a jitted train step, evaluation, the one training loop, params files.

Every model enters through an :class:`jaxzip.models.ApplyFn`
(``apply_fn(params, x, *, train, key) -> logits``), so linen, nnx and plain
pytree models train through the same code.

Example:
  >>> import numpy as np
  >>> import jax, optax, jaxzip as jz
  >>> ds = jz.data.Dataset(x=np.eye(4, dtype=np.float32).reshape(4, 2, 2, 1),
  ...                      y=np.array([0, 1, 0, 1], np.int32), num_classes=2, name="toy")
  >>> model = jz.models.MLP((8,), num_classes=2)
  >>> params = jz.models.init_params(model, jax.random.key(0), ds.x[:1])
  >>> tx = optax.adam(0.1)
  >>> state, history = jz.train.fit(jz.models.linen_apply_fn(model), params, tx, ds,
  ...                               epochs=20, batch_size=4, key=jax.random.key(0),
  ...                               progress=False)
  >>> jz.train.evaluate(jz.models.linen_apply_fn(model), state.params, ds)["accuracy"]
  1.0
"""

from jaxzip._keys import named_key
from jaxzip.train._augment import RandomShift
from jaxzip.train._batches import epoch_batches
from jaxzip.train._checkpoint import load_params, save_params
from jaxzip.train._evaluate import evaluate
from jaxzip.train._fit import fit, run_epochs
from jaxzip.train._guard import raise_if_nonfinite
from jaxzip.train._optim import kernel_mask
from jaxzip.train._resume import Checkpoint
from jaxzip.train._state import TrainState, init_state
from jaxzip.train._step import make_train_step

__all__ = [
    "Checkpoint",
    "RandomShift",
    "TrainState",
    "epoch_batches",
    "evaluate",
    "fit",
    "init_state",
    "kernel_mask",
    "load_params",
    "make_train_step",
    "named_key",
    "raise_if_nonfinite",
    "run_epochs",
    "save_params",
]
