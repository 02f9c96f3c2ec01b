"""Data-parallel placement: the batch split along a ``"data"`` mesh axis, params replicated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def check_mesh(where: str, mesh: Any) -> Mesh:
    """Checks that ``mesh`` is a ``jax.sharding.Mesh`` with a ``"data"`` axis."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{where}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"{where}: mesh must have an axis named {DATA_AXIS!r} to split the batch along, "
            f"got axes {mesh.axis_names}"
        )
    kind = dict(zip(mesh.axis_names, mesh.axis_types, strict=True))[DATA_AXIS]
    if kind != jax.sharding.AxisType.Auto:
        raise ValueError(
            f"{where}: the mesh's {DATA_AXIS!r} axis must be of type AxisType.Auto (the model "
            f"code is not sharding-annotated), got {kind}; build it with "
            "jax.make_mesh(shape, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))"
        )
    return mesh


def check_divisible(where: str, n: int, mesh: Mesh) -> None:
    """Checks that a batch of ``n`` examples splits evenly over the mesh's data axis."""
    parts = mesh.shape[DATA_AXIS]
    if n % parts:
        raise ValueError(
            f"{where}: the batch size {n} must be a multiple of the mesh's {DATA_AXIS!r} axis "
            f"size {parts} (pad the batch and pass batch['mask'])"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
    """The sharding that splits the leading (batch) axis along ``"data"``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
    """Places every array of ``batch`` on ``mesh``, split along its leading (batch) axis.

    Args:
      batch: a mapping of per-example arrays of one leading size (``"x"``, ``"y"``,
        optionally ``"mask"``).
      mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis of type ``AxisType.Auto``;
        other axes replicate.

    Returns:
      A new dict of device arrays with the ``PartitionSpec("data")`` sharding.

    Raises:
      TypeError: ``batch`` is not a mapping or ``mesh`` is not a Mesh.
      ValueError: the mesh has no ``"data"`` axis, the arrays differ in leading
        size, or that size does not divide evenly over the ``"data"`` axis.

    Example:
      >>> import jax, numpy as np
      >>> mesh = jax.make_mesh((len(jax.devices()),), ("data",),
      ...                      axis_types=(jax.sharding.AxisType.Auto,))
      >>> b = shard_batch({"x": np.zeros((4, 2)), "y": np.arange(4)}, mesh)
      >>> b["x"].sharding.spec == jax.sharding.PartitionSpec("data")
      True
    """
    where = "shard_batch"
    mesh = check_mesh(where, mesh)
    if not isinstance(batch, Mapping) or not batch:
        raise TypeError(f"{where}: batch must be a non-empty mapping of arrays, got {batch!r}")
    sizes = {k: (np.shape(v)[:1] or (None,))[0] for k, v in batch.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"{where}: every batch array needs one leading size, got {sizes}")
    check_divisible(where, next(iter(sizes.values())), mesh)
    sharding = data_sharded(mesh)
    return {k: jax.device_put(v, sharding) for k, v in batch.items()}
