"""collect_stats on a 4-device mesh (sharded params and batches) equals one device."""

from __future__ import annotations

import numpy as np

_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxzip.calib import collect_stats
from jaxzip.layout import trace_layouts
assert len(jax.devices()) == 4, jax.devices()
def f(p, x):
    h = jnp.tanh(jnp.einsum("bti,ihk->bthk", x, p["qkv"]))
    return jnp.einsum("bthk,hko->bto", h, p["out"])
k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
params = {"qkv": jax.random.normal(k1, (8, 2, 4)), "out": jax.random.normal(k2, (2, 4, 8))}
batches = [np.asarray(b) for b in jax.random.normal(k3, (3, 4, 5, 8))]
lay = trace_layouts(f, params, batches[0])
single = collect_stats(f, params, batches, layouts=lay)
mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
sp = {"qkv": jax.device_put(params["qkv"], NamedSharding(mesh, P(None, "model", None))),
      "out": jax.device_put(params["out"], NamedSharding(mesh, P("model", None, None)))}
sb = [jax.device_put(b, NamedSharding(mesh, P("data", None, None))) for b in batches]
sharded = collect_stats(f, sp, sb, layouts=lay)
def g(p, x):  # a shard_map: traced for layouts, refused by the hooks
    body = lambda w, x: jax.lax.psum(x @ w, "data")
    return jax.shard_map(body, mesh=mesh, in_specs=(P("data", None), P(None, "data")),
                         out_specs=P())(p["w"], x)
w = {"w": jnp.ones((4, 3))}
lay_g = trace_layouts(g, w, jnp.ones((2, 4)))
assert {k: (v.in_axes, v.out_axes) for k, v in lay_g.items()} == {"w": ((0,), (1,))}, lay_g
try:
    collect_stats(g, w, [jnp.ones((2, 4))], layouts=lay_g)
    refused = "no error"
except ValueError as err:
    refused = str(err)
out = {"refused": refused}
for path in lay:
    out[path] = {n: [np.asarray(getattr(s[path], n)).tolist() for s in (single, sharded)]
                 for n in ("count", "xtx", "sq_sum", "absmax")}
    out[path]["devices"] = len(sharded[path].xtx.sharding.device_set)
RESULT = out
"""


def test_four_device_mesh_matches_one_device(four_devices):
    result = four_devices(_SCRIPT)
    assert "'w' is used by a dot_general inside a shard_map body" in result.pop("refused")
    assert set(result) == {"qkv", "out"}
    for path, stats in result.items():
        assert stats["devices"] == 4, path
        for name in ("count", "xtx", "sq_sum", "absmax"):
            single, sharded = stats[name]
            np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-5, err_msg=path)
    assert result["out"]["count"][0] == 60.0 and np.shape(result["out"]["xtx"][0]) == (8, 8)
