"""collect_stats, GPTQ and SparseGPT with params sharded over a 4-device mesh equal one device.

The model, params, batches and the runs are ``mp_oneshot_worker.py``'s (shared with the
2-process test): an attention block with DenseGeneral-shaped q/k/v ``(in, heads,
head_dim)`` and o ``(heads, head_dim, out)`` kernels, then a plain Dense kernel.
Sharded, every kernel is split FSDP-style over ``"data"`` and over ``"model"`` on
another axis, and the batches over ``"data"``.

Tolerance: integer results (GPTQ's values and zero points, SparseGPT's masks) must be
identical; each float array within ``1e-5`` of its largest magnitude (``rtol=1e-5``,
``atol=1e-5 * max|x|``). The sharded ``XᵀX`` adds the per-device partial sums of the
rows in another order than one device does, and float32 addition is not associative:
the rounding error of a sum is relative to the sum of its terms' magnitudes, not to the
sum, so an entry of ``XᵀX`` much smaller than the diagonal (cancellation) may differ by
more than 1e-5 of itself while staying far below 1e-5 of the matrix's largest entry;
what is computed from the Hessians inherits that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

_WORKER = Path(__file__).with_name("mp_oneshot_worker.py")

_SCRIPT = r"""
import importlib.util, jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
spec = importlib.util.spec_from_file_location("jaxzip_tests_calib_mp_oneshot_worker", WORKER)
w = importlib.util.module_from_spec(spec)
spec.loader.exec_module(w)
assert len(jax.devices()) == 4, jax.devices()
mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
params = w.place(w.init(), mesh)
batches = [jax.device_put(b, NamedSharding(mesh, P("data"))) for b in w.global_batches()]
single = w.compress(w.init(), w.global_batches(), METHODS)
sharded = w.compress(params, batches, METHODS)
RESULT = {
    "single": {k: [str(v.dtype), v.tolist()] for k, v in single.items()},
    "sharded": {k: [str(v.dtype), v.tolist()] for k, v in sharded.items()},
    "split": sorted(k for k, a in params.items() if not a.sharding.is_fully_replicated),
    "devices": len(params["w1"].sharding.device_set),
}
if "gptq" in METHODS:  # collect_stats again (its small ops compiled): the step compiles once
    from jaxzip.calib import collect_stats
    from jaxzip.layout import trace_layouts
    compiles = []
    def count(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)
    lay = trace_layouts(w.apply, params, batches[0])
    jax.monitoring.register_event_duration_secs_listener(count)
    stats = jax.block_until_ready(collect_stats(w.apply, params, batches, layouts=lay))
    jax.monitoring.unregister_event_duration_listener(count)
    RESULT["compiles"] = len(compiles)
    RESULT["replicated"] = all(a.sharding.is_fully_replicated and len(a.sharding.device_set) == 4
                               for a in jax.tree.leaves(stats))
"""

KERNELS = ("q", "k", "v", "o", "w1")


def compare(single: dict, sharded: dict) -> int:
    """Asserts the tolerance of the module docstring; returns how many float entries differ."""
    assert set(sharded) == set(single)
    differ = 0
    for name, want in single.items():
        got = sharded[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if np.issubdtype(want.dtype, np.floating):
            atol = 1e-5 * float(np.max(np.abs(want), initial=0.0))
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol, err_msg=name)
            differ += int(np.sum(got != want))
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)
    return differ


def check_results(result: dict) -> None:
    """What makes the comparison meaningful: every kernel compressed, 2:4 masks, real codes."""
    assert result, "no results"
    for k in KERNELS:
        if "gptq['b1']" in result:
            values = result[f"gptq['{k}'].values"]
            assert values.dtype == np.int8 and len(np.unique(values)) > 4, k  # 3 bits: 8 codes
            assert float(result[f"stats['{k}'].count"]) == 3 * 8 * 4, k  # every token, 3 batches
        if "mask['b1']" in result:
            mask = result[f"mask['{k}']"]
            assert mask.dtype == bool and mask.mean() == 0.5, k
            pruned = result[f"sparsegpt['{k}']"]
            assert np.all(pruned[~mask] == 0) and np.all(pruned[mask] != 0), k
    if "mask['b1']" in result:
        assert result["mask['b1']"].all()  # the bias is not pruned
    if "stack['ws'].values" in result:  # the layer stack: every layer its own 3-bit codes
        values = result["stack['ws'].values"]
        assert values.dtype == np.int8 and values.shape[0] == 3
        assert all(len(np.unique(values[i])) > 4 for i in range(3))


@pytest.mark.parametrize("methods", [("gptq",), ("sparsegpt",)])
def test_four_device_mesh_matches_one_device(four_devices, methods):
    script = _SCRIPT.replace("WORKER", repr(str(_WORKER))).replace("METHODS", repr(methods))
    result = four_devices(script)
    assert result["devices"] == 4
    assert result["split"] == sorted(KERNELS)  # every kernel is sharded, b1 replicated
    single, sharded = (
        {k: np.asarray(v, dtype=dt) for k, (dt, v) in result[name].items()}
        for name in ("single", "sharded")
    )
    assert all(
        k.startswith(("stats", "gptq") if methods == ("gptq",) else ("sparsegpt", "mask"))
        for k in single
    )
    check_results(single)
    compare(single, sharded)
    if methods == ("gptq",):  # statistics pinned replicated on the mesh: no second compile
        assert result["replicated"] and result["compiles"] == 1, result["compiles"]
