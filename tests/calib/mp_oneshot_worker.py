"""Calibration, GPTQ and SparseGPT on sharded params: the shared model and one worker (not a test).

The model, its params, the calibration batches and :func:`compress` (collect_stats +
GPTQ + SparseGPT, and GPTQ on a layer stack; results brought to the host) are used three ways: by
``test_oneshot_shard.py`` on 4 host devices of one process, by
``test_multiprocess.py`` for its single-process reference, and by ``main`` here:

Run as ``python mp_oneshot_worker.py PORT PROCESS_ID NUM_PROCESSES DEVICES_PER_PROCESS
OUT METHOD`` (METHOD a name in :data:`METHODS`): joins the ``jax.distributed`` run
coordinated at ``127.0.0.1:PORT`` (CPU collectives over gloo), places the params
sharded over a ``("data", "model")`` mesh whose ``"data"`` row ``i`` is process
``i``'s devices, builds each global calibration batch from this process's own block
of its rows (``jax.make_array_from_process_local_data``), runs :func:`compress` for
METHOD and writes the results and facts about the run to ``OUT`` (``np.savez``). It
prints ``INITIALIZING`` before ``jax.distributed.initialize`` and
``DISTRIBUTED_STARTED`` once it has returned (the test skips only on a failure
between the two).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxzip.calib import collect_stats
from jaxzip.layout import trace_layouts
from jaxzip.prune import NByM, sparsegpt
from jaxzip.quant import QuantSpec, gptq

D_MODEL, HEADS, HEAD_DIM, HIDDEN = 8, 2, 4, 16
N_BATCHES, SEQUENCES, TOKENS = 3, 8, 4

# FSDP-style on "data" (each kernel's first axis split over the data axis), tensor-parallel
# on "model" (heads, or a Dense's other axis); the biases stay replicated.
SPECS = {
    "q": P("data", "model", None),
    "k": P("data", "model", None),
    "v": P("data", "model", None),
    "o": P("model", None, "data"),
    "w1": P("data", "model"),
    "b1": P(),
}


def apply(params, x):
    """One attention block (q/k/v ``(in, heads, head_dim)``, o ``(heads, head_dim, out)``
    DenseGeneral kernels, softmax over the tokens, a residual) and a tanh Dense layer;
    ``x`` is ``(sequences, tokens, D_MODEL)``."""
    q, k, v = (jnp.einsum("btd,dhk->bthk", x, params[n]) for n in ("q", "k", "v"))
    att = jax.nn.softmax(jnp.einsum("bthk,bshk->bhts", q, k) / np.sqrt(HEAD_DIM), axis=-1)
    ctx = jnp.einsum("bhts,bshk->bthk", att, v)
    h = x + jnp.einsum("bthk,hko->bto", ctx, params["o"])
    return jnp.tanh(h @ params["w1"] + params["b1"])


def init() -> dict[str, np.ndarray]:
    """Random params of :func:`apply` (NumPy, identical in every process)."""
    rng = np.random.default_rng(0)

    def normal(*shape: int) -> np.ndarray:
        return (rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32)

    return {
        "q": normal(D_MODEL, HEADS, HEAD_DIM),
        "k": normal(D_MODEL, HEADS, HEAD_DIM),
        "v": normal(D_MODEL, HEADS, HEAD_DIM),
        "o": normal(HEADS, HEAD_DIM, D_MODEL),
        "w1": normal(D_MODEL, HIDDEN),
        "b1": (rng.normal(size=HIDDEN) / 10).astype(np.float32),
    }


def global_batches() -> list[np.ndarray]:
    """The :data:`N_BATCHES` global calibration batches, ``(SEQUENCES, TOKENS, D_MODEL)``;
    correlated inputs, so that the Hessians are far from diagonal."""
    rng = np.random.default_rng(1)
    mix = (np.eye(D_MODEL) + rng.normal(size=(D_MODEL, D_MODEL)) / 2).astype(np.float32)
    return [
        rng.normal(size=(SEQUENCES, TOKENS, D_MODEL)).astype(np.float32) @ mix
        for _ in range(N_BATCHES)
    ]


def to_host(tree, prefix: str) -> dict[str, np.ndarray]:
    """``{prefix + keystr: NumPy array}`` for every leaf, gathered from every process."""
    from jax.experimental import multihost_utils

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = multihost_utils.process_allgather(leaf, tiled=True)
        out[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
    return out


LAYERS = 3
STACK_SPEC = P(None, "data", "model")  # a layer stack: each layer FSDP on "data", TP on "model"


def stack_apply(stack, x):
    """``LAYERS`` tanh layers as one ``lax.scan`` over the stacked ``(LAYERS, D, D)`` kernel
    (the layer stack of an ``nn.scan`` model)."""
    return jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, stack["ws"])[0]


def init_stack() -> dict[str, np.ndarray]:
    """Random params of :func:`stack_apply` (NumPy, identical in every process)."""
    rng = np.random.default_rng(2)
    ws = rng.normal(size=(LAYERS, D_MODEL, D_MODEL)) / np.sqrt(D_MODEL)
    return {"ws": ws.astype(np.float32)}


METHODS = ("gptq", "sparsegpt", "stack")


def compress(params, batches, methods=METHODS) -> dict[str, np.ndarray]:
    """``"gptq"``: collect_stats on every kernel, then GPTQ (3 bits per output channel);
    ``"sparsegpt"``: 2:4 SparseGPT; both sequential with blocks of 4 rows. Every result
    leaf on the host."""
    lay = trace_layouts(apply, params, batches[0]) if {"gptq", "sparsegpt"} & {*methods} else None
    out = {}
    if "gptq" in methods:
        out.update(to_host(collect_stats(apply, params, batches, layouts=lay), "stats"))
        spec = QuantSpec(bits=3, axes=(-1,))
        out.update(to_host(gptq(apply, params, batches, spec, block_size=4, layouts=lay), "gptq"))
    if "sparsegpt" in methods:
        pruned, mask = sparsegpt(
            apply, params, batches, structure=NByM(2, 4), block_size=4, layouts=lay
        )
        out.update({**to_host(pruned, "sparsegpt"), **to_host(mask, "mask")})
    if "stack" in methods:  # GPTQ layer by layer on the stack (``params["stack"]`` if placed)
        stack = params.get("stack", init_stack())
        spec = QuantSpec(bits=3, axes=(-1,))
        q = gptq(stack_apply, stack, batches, spec, block_size=4)
        out.update(to_host(q, "stack"))
    return out


def place(params, mesh):
    """``params`` as global arrays sharded by :data:`SPECS` (every process passes the same
    values; each device's block is cut from them on the host)."""

    def leaf(name: str, value: np.ndarray) -> jax.Array:
        sharding = NamedSharding(mesh, SPECS[name])
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return {name: leaf(name, value) for name, value in params.items()}


def main(argv: list[str]) -> None:
    port, process_id, num_processes, devices_per_process = map(int, argv[:4])
    out, method = argv[4], argv[5]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", devices_per_process)
    print("INITIALIZING", flush=True)
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
    print("DISTRIBUTED_STARTED", flush=True)
    # Row i of the "data" axis is process i's devices: process i holds data slice i.
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    mesh = jax.sharding.Mesh(
        np.array(devices).reshape(num_processes, devices_per_process),
        ("data", "model"),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
    )
    rows = SEQUENCES // num_processes
    mine = slice(process_id * rows, (process_id + 1) * rows)
    data = NamedSharding(mesh, P("data"))
    batches = [
        jax.make_array_from_process_local_data(data, b[mine], b.shape) for b in global_batches()
    ]
    in_order = all(
        np.array_equal(np.asarray(s.data), g[s.index])
        for b, g in zip(batches, global_batches(), strict=True)
        for s in b.addressable_shards
    )
    params = place(init(), mesh)
    ws = init_stack()["ws"]
    stack = {
        "ws": jax.make_array_from_callback(
            ws.shape, NamedSharding(mesh, STACK_SPEC), lambda i: ws[i]
        )
    }
    result = compress({"stack": stack} if method == "stack" else params, batches, (method,))
    try:  # this process's rows as a host array: refused, it would be taken as every process's
        gptq(apply, params, [b[mine] for b in global_batches()], QuantSpec(bits=3, axes=(-1,)))
        refused = "no error"
    except ValueError as err:
        refused = str(err)
    np.savez(
        out,
        **result,
        in_order=np.asarray(in_order),
        refused=np.asarray(refused),
        process_count=np.asarray(jax.process_count()),
        param_devices=np.asarray(len(params["w1"].sharding.device_set)),
        local_rows=np.asarray(batches[0].addressable_shards[0].data.shape[0]),
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
