"""Export a model with its compressed weights to one file that runs without the model's source."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip import codec
from jaxzip._io import atomic_write_bytes
from jaxzip._types import Params
from jaxzip.deploy._format import ExportInfo, pack, parse_info
from jaxzip.quant import make_quantized_apply


def export(
    apply_fn: Callable[..., jax.Array],
    compressed: Params,
    example_input: ArrayLike,
    path: str | os.PathLike[str],
    *,
    polymorphic_batch: bool = False,
) -> ExportInfo:
    """Exports ``x -> apply_fn(dequantize_params(compressed), x)`` with its weights to one file.

    The weights are dequantized inside the exported StableHLO at run time, each
    next to its use as :func:`jaxzip.quant.make_quantized_apply` does (a scanned
    layer stack one layer per iteration), so the file holds them compressed (a
    :func:`jaxzip.codec.encode` section) and the program never holds a float
    copy of the whole model. The module
    carries no Python tracebacks: no file paths of the caller's, and the same bytes
    from wherever ``export`` is called. The
    exported function takes inputs of ``example_input``'s shape and dtype; with
    ``polymorphic_batch=True`` the first (batch) dimension may be any size.

    Args:
      apply_fn: ``apply_fn(params, x, *, train, key) -> logits`` (called with
        ``train=False, key=None``).
      compressed: the params tree; may hold ``QArray``/``KMeansArray`` leaves.
      example_input: an input batch fixing the input shape and dtype.
      path: the file to write (atomically).
      polymorphic_batch: export a symbolic batch dimension instead of a fixed one.

    Returns:
      The :class:`ExportInfo` of the written file.

    Raises:
      TypeError: ``apply_fn`` is not callable, ``polymorphic_batch`` is not a bool,
        or ``compressed`` holds a leaf the codec cannot store.
      ValueError: ``example_input`` is a scalar.

    Example:
      >>> import tempfile, pathlib, jax.numpy as jnp
      >>> from jaxzip.deploy import load_exported
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jzx"
      >>> apply = lambda params, x, *, train, key: x @ params["w"]
      >>> export(apply, {"w": jnp.eye(2)}, jnp.ones((1, 2)), p).output_shape
      (1, 2)
      >>> load_exported(p)(jnp.array([[1.0, 2.0]]))
      Array([[1., 2.]], dtype=float32)
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn: expected a callable, got {type(apply_fn).__name__}")
    if not isinstance(polymorphic_batch, bool):
        raise TypeError(f"polymorphic_batch: expected a bool, got {polymorphic_batch!r}")
    x = jnp.asarray(example_input)
    if x.ndim == 0:
        raise ValueError("example_input: expected an array with a batch dimension, got a scalar")
    weights = codec.encode(compressed)
    leaves, treedef = jax.tree.flatten(codec.decode(weights))
    leaves = [jnp.asarray(leaf) for leaf in leaves]

    # Each weight dequantized next to its use (a scanned stack one layer per iteration),
    # so the exported program never holds a float copy of the whole model.
    forward = make_quantized_apply(lambda p, x: apply_fn(p, x, train=False, key=None))

    def run(flat: list[jax.Array], x: jax.Array) -> jax.Array:
        return forward(jax.tree.unflatten(treedef, flat), x)

    x_shape: tuple[Any, ...] = x.shape
    if polymorphic_batch:
        x_shape = jax.export.symbolic_shape(
            ", ".join(["b", *(str(d) for d in x.shape[1:])]), constraints=("b >= 1",)
        )
    specs = [jax.ShapeDtypeStruct(leaf.shape, leaf.dtype) for leaf in leaves]
    # Without Python tracebacks in the module's locations: they would put the caller's
    # file paths into the file and make its bytes depend on who called export.
    limit = jax.config.jax_traceback_in_locations_limit
    jax.config.update("jax_traceback_in_locations_limit", 0)
    try:
        exported = jax.export.export(jax.jit(run))(specs, jax.ShapeDtypeStruct(x_shape, x.dtype))
    finally:
        jax.config.update("jax_traceback_in_locations_limit", limit)
    out = exported.out_avals
    if len(out) != 1:
        raise TypeError(f"apply_fn: expected one output array, got {len(out)}")

    def dims(shape: tuple[Any, ...]) -> list[int | None]:
        return [d if isinstance(d, int) else None for d in shape]

    info = {
        "input_shape": dims(x_shape),
        "input_dtype": x.dtype.name,
        "output_shape": dims(out[0].shape),
        "output_dtype": np.dtype(out[0].dtype).name,
        "num_weights": len(leaves),
        "jax_version": jax.__version__,
    }
    data = pack(info, bytes(exported.serialize()), weights)
    atomic_write_bytes(path, data)
    return parse_info(data)
