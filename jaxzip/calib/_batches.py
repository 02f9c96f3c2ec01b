"""Where calibration batches and params live: their meshes, processes and shapes.

Used by :func:`jaxzip.calib.collect_stats` to place the statistics on the params'
mesh, to refuse a batch that is not a global array in a run spanning processes,
and to name the shapes of a batch the model rejects.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def mesh_of(*trees: Any) -> Mesh | None:
    """The mesh of the first leaf sharded (or replicated) over a multi-device mesh, if any."""
    for leaf in jax.tree.leaves(trees):
        sharding = getattr(leaf, "sharding", None)
        mesh = sharding.mesh if isinstance(sharding, NamedSharding) else None
        if isinstance(mesh, Mesh) and mesh.size > 1:
            return mesh
    return None


def replicated(a: jax.Array, mesh: Mesh) -> jax.Array:
    """``a`` copied to every device of ``mesh`` through the host (also to other processes'
    devices, where the same value is built: each process passes the same zeros)."""
    host = np.asarray(a)
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def signature(batch: Any, index: int) -> Any:
    """The shapes and dtypes of a batch's leaves; TypeError for a leaf that is not an array."""

    def leaf(a: Any) -> tuple[tuple[int, ...], str]:
        if not isinstance(a, (jax.Array, np.ndarray, np.generic, int, float, bool)):
            raise TypeError(
                f"batches[{index}]: expected arrays (a pytree of NumPy or JAX arrays), got a "
                f"leaf of type {type(a).__name__}"
            )
        dtype = a.dtype if hasattr(a, "dtype") else np.result_type(a)
        if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
            raise TypeError(f"batches[{index}]: expected numeric arrays, got dtype {dtype}")
        return tuple(np.shape(a)), str(dtype)

    return jax.tree.map(leaf, batch)


def spans_processes(tree: Any) -> bool:
    """Whether a leaf of ``tree`` is a global array with devices of other processes."""
    return any(
        isinstance(a, jax.Array) and not a.is_fully_addressable for a in jax.tree.leaves(tree)
    )


def check_global(batch: Any, index: int) -> None:
    """In a computation spanning processes, every batch array must be a global array."""
    for path, a in jax.tree_util.tree_flatten_with_path(batch)[0]:
        if np.ndim(a) and not (isinstance(a, jax.Array) and not a.is_fully_addressable):
            where = f"batches[{index}]{jax.tree_util.keystr(path)}"
            raise ValueError(
                f"{where}: in this {jax.process_count()}-process run the params (or batches) "
                "are global arrays spanning other processes' devices, so each batch array must "
                "be one too, e.g. this process's rows as jax.make_array_from_process_local_data("
                "NamedSharding(mesh, PartitionSpec('data')), rows); got an array of type "
                f"{type(a).__name__} and shape {np.shape(a)} on this process only, which jit "
                "would take as the same on every process"
            )
