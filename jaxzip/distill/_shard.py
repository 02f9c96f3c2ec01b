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


def shard_batch(
    batch: Mapping[str, Any], mesh: Mesh, *, local: bool = False
) -> dict[str, jax.Array]:
    """Places every array of ``batch`` on ``mesh``, split along its leading (batch) axis.

    With ``local=False`` the batch is the global batch, the same on every process.
    With ``local=True`` it is this process's part of the global batch (a
    multi-process run under ``jax.distributed``: each process loads only its own
    examples), and the global batch is assembled with
    ``jax.make_array_from_process_local_data``: the local rows fill, in order, the
    slices of the ``"data"`` axis that this process's devices hold, so the global
    size is the local size times the ``"data"`` axis size over the number of those
    slices (with a mesh from ``jax.make_mesh`` over CPU or GPU processes, process
    ``i`` of ``P`` holds block ``i`` of ``P`` equal blocks). Processes whose devices
    hold the same slices (replicas along another mesh axis) must pass the same
    rows. In a single process both modes give the same array.

    Args:
      batch: a mapping of per-example arrays of one leading size (``"x"``, ``"y"``,
        optionally ``"mask"``).
      mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis of type ``AxisType.Auto``;
        other axes replicate.
      local: whether ``batch`` is this process's part (True) or the whole global
        batch (False).

    Returns:
      A new dict of global device arrays with the ``PartitionSpec("data")`` sharding.

    Raises:
      TypeError: ``batch`` is not a mapping, ``mesh`` is not a Mesh or ``local`` is
        not a bool.
      ValueError: the mesh has no ``"data"`` axis, the arrays differ in leading
        size, or that size does not divide evenly over the ``"data"`` axis (with
        ``local=True``: over this process's slices of it).

    Example:
      >>> import jax, numpy as np
      >>> mesh = jax.make_mesh((len(jax.devices()),), ("data",),
      ...                      axis_types=(jax.sharding.AxisType.Auto,))
      >>> b = shard_batch({"x": np.zeros((4, 2)), "y": np.arange(4)}, mesh)
      >>> b["x"].sharding.spec == jax.sharding.PartitionSpec("data")
      True
      >>> part = {"x": np.zeros((4, 2)), "y": np.arange(4)}  # this process's examples
      >>> g = shard_batch(part, mesh, local=True)
      >>> g["y"].shape == (4 * jax.process_count(),), g["y"].sharding == b["y"].sharding
      (True, True)
    """
    where = "shard_batch"
    mesh = check_mesh(where, mesh)
    if not isinstance(local, bool):
        raise TypeError(f"{where}: local must be a bool, got {local!r}")
    if not isinstance(batch, Mapping) or not batch:
        raise TypeError(f"{where}: batch must be a non-empty mapping of arrays, got {batch!r}")
    sizes = {k: (np.shape(v)[:1] or (None,))[0] for k, v in batch.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise ValueError(f"{where}: every batch array needs one leading size, got {sizes}")
    n = next(iter(sizes.values()))
    sharding = data_sharded(mesh)
    if not local:
        check_divisible(where, n, mesh)
        return {k: jax.device_put(v, sharding) for k, v in batch.items()}
    parts = local_data_parts(mesh)
    if not parts:
        raise ValueError(
            f"{where}: with local=True the mesh must include devices of this process "
            f"({jax.process_index()}), got a mesh over {mesh.devices.size} other device(s)"
        )
    if n % parts:
        raise ValueError(
            f"{where}: the local batch size {n} must be a multiple of the {parts} slice(s) of "
            f"the mesh's {DATA_AXIS!r} axis held by this process's devices (process "
            f"{jax.process_index()} of {jax.process_count()}; pad and pass batch['mask'])"
        )
    rows = n // parts * mesh.shape[DATA_AXIS]
    return {
        k: jax.make_array_from_process_local_data(sharding, v, (rows, *np.shape(v)[1:]))
        for k, v in batch.items()
    }


def local_data_parts(mesh: Mesh) -> int:
    """How many distinct slices of the ``"data"`` axis this process's devices hold."""
    axis = mesh.axis_names.index(DATA_AXIS)
    mine = {d.id for d in jax.local_devices()}
    rows = np.moveaxis(mesh.devices, axis, 0).reshape(mesh.devices.shape[axis], -1)
    return sum(any(d.id in mine for d in row) for row in rows)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` on every device of ``mesh``, a full copy on each.

    The state and teacher params of a data-parallel step are replicated; the step
    from :func:`make_train_step` calls this itself, so use it to place them once
    (a large teacher is then not copied on every step) or to bring loaded params
    onto the mesh. In a multi-process run (``jax.distributed``) every process must
    pass the same values (same seed, same checkpoint); a leaf on this process's
    devices only is copied through the host with ``jax.make_array_from_callback``,
    since ``jax.device_put`` cannot move it across hosts. Leaves already replicated
    on ``mesh`` are returned as they are.

    Args:
      tree: a pytree of arrays (params, a ``TrainState``).
      mesh: the ``jax.sharding.Mesh`` to replicate over.

    Returns:
      A pytree of the same structure whose leaves are global arrays with the
      ``PartitionSpec()`` sharding on ``mesh``.

    Raises:
      TypeError: ``mesh`` is not a Mesh.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> mesh = jax.make_mesh((len(jax.devices()),), ("data",),
      ...                      axis_types=(jax.sharding.AxisType.Auto,))
      >>> params = replicate({"w": jnp.ones((2, 3))}, mesh)
      >>> params["w"].sharding.is_fully_replicated
      True
      >>> params["w"].sharding.device_set == set(jax.devices())
      True
      >>> replicate(params, mesh)["w"] is params["w"]
      True
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"replicate: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: _replicate_leaf(leaf, sharding), tree)


def _replicate_leaf(leaf: Any, sharding: NamedSharding) -> Any:
    if isinstance(leaf, jax.Array):
        if leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        is_key = jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        if jax.process_count() > 1 and leaf.is_fully_addressable and not is_key:
            host = np.asarray(leaf)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.device_put(leaf, sharding)
