"""One process of the 2-process distillation run of ``test_multiprocess.py`` (not a test).

Run as ``python mp_worker.py PORT PROCESS_ID NUM_PROCESSES DEVICES_PER_PROCESS OUT``:
joins the ``jax.distributed`` run coordinated at ``127.0.0.1:PORT`` (CPU
collectives over gloo), feeds its own block of every global batch through
``shard_batch(..., local=True)``, trains for :data:`STEPS` steps and writes the
student params, the last loss and facts about the run to ``OUT`` (``np.savez``).
The test imports :func:`global_batches` and :func:`train` for its single-process
reference, so both runs see the same data and the same step.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip.distill import kd_loss, make_train_step, shard_batch
from jaxzip.train import init_state

STEPS = 5
GLOBAL_BATCH = 8
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def apply(params, x, *, train, key):
    """A two-layer tanh MLP (student and teacher share the shape)."""
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def init(seed: int) -> dict[str, np.ndarray]:
    """Random params of :func:`apply` for 6 inputs, 16 hidden units and 3 classes (numpy, so
    that no random kernel has to compile in the workers)."""
    rng = np.random.default_rng(seed)
    return {
        "w1": (rng.normal(size=(6, 16)) / 2.0).astype(np.float32),
        "b1": np.zeros((16,), np.float32),
        "w2": (rng.normal(size=(16, 3)) / 4.0).astype(np.float32),
    }


def global_batches() -> list[dict[str, np.ndarray]]:
    """The :data:`STEPS` global batches of :data:`GLOBAL_BATCH` examples."""
    rng = np.random.default_rng(0)
    return [
        {
            "x": rng.normal(size=(GLOBAL_BATCH, 6)).astype(np.float32),
            "y": rng.integers(0, 3, GLOBAL_BATCH).astype(np.int32),
        }
        for _ in range(STEPS)
    ]


def train(batches, teacher_params, mesh=None):
    """Distils for one step per batch; with ``mesh``, each batch is this process's part.

    Returns the final state, its metrics and the number of XLA compilations after
    the first step (0: the step never recompiles, the state's placement included).
    """
    tx = optax.adam(0.05)
    step = make_train_step(apply, apply, tx, loss=kd_loss(temperature=3.0, alpha=0.7), mesh=mesh)
    state = init_state(init(0), tx)
    metrics, compiles = {}, []

    def count(event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            compiles.append(event)

    for i, batch in enumerate(batches):
        if mesh is not None:
            batch = shard_batch(batch, mesh, local=True)
        state, metrics = step(state, teacher_params, batch, jax.random.key(i))
        if i == 0:
            jax.block_until_ready(state)
            jax.monitoring.register_event_duration_secs_listener(count)
    jax.block_until_ready(state)
    jax.monitoring.unregister_event_duration_listener(count)
    return state, metrics, len(compiles)


def main(argv: list[str]) -> None:
    port, process_id, num_processes, devices_per_process = map(int, argv[:4])
    out = argv[4]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", devices_per_process)
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = GLOBAL_BATCH // num_processes
    part = slice(process_id * rows, (process_id + 1) * rows)
    mine = [{k: v[part] for k, v in b.items()} for b in global_batches()]
    # The global batch assembled from the processes' parts is the global batch, in order:
    # each local shard holds the rows of the global batch that its index names.
    assembled = shard_batch(mine[0], mesh, local=True)
    in_order = assembled["x"].shape == (GLOBAL_BATCH, 6) and all(
        np.array_equal(np.asarray(s.data), global_batches()[0]["x"][s.index])
        for s in assembled["x"].addressable_shards
    )
    # The teacher's params committed to one local device, as a loaded checkpoint may be.
    teacher = jax.device_put(init(1), jax.local_devices()[0])
    state, metrics, compiles = train(mine, teacher, mesh)
    others = np.array([d for d in jax.devices() if d.process_index != process_id])
    foreign = jax.sharding.Mesh(others, ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    errors = []
    for bad_mesh, rows in ((mesh, 3), (foreign, 2)):  # 3 rows over 2 slices; no local slice
        try:
            shard_batch({"y": np.zeros(rows, np.int32)}, bad_mesh, local=True)
            errors.append("no error")
        except ValueError as err:
            errors.append(str(err))
    np.savez(
        out,
        **{k: np.asarray(v) for k, v in state.params.items()},
        loss=np.asarray(metrics["loss"]),
        step=np.asarray(state.step),
        compiles=np.asarray(compiles),
        indivisible=np.asarray(errors[0]),
        foreign=np.asarray(errors[1]),
        in_order=np.asarray(in_order),
        process_count=np.asarray(jax.process_count()),
        param_devices=np.asarray(len(state.params["w1"].sharding.device_set)),
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
