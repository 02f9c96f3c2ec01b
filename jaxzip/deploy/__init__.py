"""Deployment: export a model with its compressed weights to one file that runs without its source.

The file holds the model's function as serialized StableHLO (``jax.export``)
and its weights as a :mod:`jaxzip.codec` file; quantized weights are decoded
inside the exported function at run time, so they stay compressed on disk.

Example:
  >>> import tempfile, pathlib, jax.numpy as jnp
  >>> from jaxzip import deploy
  >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jzx"
  >>> apply = lambda params, x, *, train, key: x * params["s"]
  >>> deploy.export(apply, {"s": jnp.float32(2.0)}, jnp.ones((1, 3)), p).input_shape
  (1, 3)
  >>> deploy.load_exported(p)(jnp.array([[1.0, 2.0, 3.0]]))
  Array([[2., 4., 6.]], dtype=float32)
"""

from jaxzip.deploy._export import export
from jaxzip.deploy._format import ExportInfo, is_exported_file, parse_info
from jaxzip.deploy._load import ALLOWED_CUSTOM_CALLS, check_exported, load_exported

__all__ = [
    "ALLOWED_CUSTOM_CALLS",
    "ExportInfo",
    "check_exported",
    "export",
    "is_exported_file",
    "load_exported",
    "parse_info",
]
