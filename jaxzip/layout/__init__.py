"""Kernel layouts read off the model: which axes of each weight a matmul or conv contracts.

:func:`trace_layouts` traces the user's apply function once and returns a
:class:`KernelLayout` for every param leaf consumed by a ``dot_general`` or a
convolution; :func:`to_matrix` / :func:`from_matrix` view a kernel as the
``(n_in, n_out)`` matrix of ``y = x @ W``; :func:`matmul_where` selects exactly
those kernels for ``where=``; :func:`intercept_matmuls` runs the model with a
hook at every matmul that consumes a selected kernel (calibration, activation
quantization).

Example:
  >>> import jax, jax.numpy as jnp, flax.linen as nn
  >>> import jaxzip.layout
  >>> model = nn.Sequential([nn.Dense(8), nn.LayerNorm(), nn.Dense(2)])
  >>> params = model.init(jax.random.key(0), jnp.ones((1, 4)))
  >>> lay = jaxzip.layout.trace_layouts(model.apply, params, jnp.ones((1, 4)))
  >>> {p: l.in_axes for p, l in lay.items()}
  {'params/layers_0/kernel': (0,), 'params/layers_2/kernel': (0,)}
"""

from jaxzip.layout._intercept import MatmulCall, intercept_matmuls, select_kernels
from jaxzip.layout._layout import KernelLayout, from_matrix, matmul_where, to_matrix
from jaxzip.layout._trace import trace_layouts

__all__ = [
    "KernelLayout",
    "MatmulCall",
    "from_matrix",
    "intercept_matmuls",
    "matmul_where",
    "select_kernels",
    "to_matrix",
    "trace_layouts",
]
