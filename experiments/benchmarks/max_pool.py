"""Benchmark: a LeNet-5 train step with jaxzip's 2x2 max pool against the same step with flax's.

Usage:
  python experiments/benchmarks/max_pool.py [--batch-size 128] [--steps 10] [--repeats 5]

The reference CNNs (``jz.models.LeNet5``, ``SmallCNN``) pool with
``jz.models.max_pool_2x2``, whose gradient is a compare and a select
over the reshaped windows; ``flax.linen.max_pool``'s gradient is XLA's
``select_and_scatter``. Both give the same values and gradients bit for bit, so
this script also checks that the two steps leave identical params.

Printed, medians over ``--repeats`` of ``--steps`` steps each (``jz.train.make_train_step``,
SGD with momentum, random MNIST-shaped batches; compilation excluded): the backward
pass of each pool alone at LeNet-5's first pooling shape, the whole train step with
each, their ratios, and whether the params after the timed steps are identical.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax

import jaxzip as jz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/, for _common
import _common as common


class FlaxPoolLeNet5(nn.Module):
    """``jz.models.LeNet5`` (same layers, same param tree) pooling with ``flax.linen.max_pool``."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for features in (20, 50):
            x = nn.max_pool(nn.Conv(features, (5, 5), padding="VALID")(x), (2, 2), strides=(2, 2))
        x = nn.relu(nn.Dense(500)(x.reshape(x.shape[0], -1)))
        return nn.Dense(10)(x)


def _median_s(fn: Callable[[], Any], steps: int, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            out = fn()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / steps)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    common.require_at_least(p, args, 1, "batch_size", "steps", "repeats")
    b = args.batch_size
    rng = np.random.default_rng(0)
    x = (rng.random((b, 28, 28, 1)) * (rng.random((b, 28, 28, 1)) > 0.8)).astype(np.float32)
    batch = {"x": x, "y": rng.integers(0, 10, b).astype(np.int32)}
    print(
        f"LeNet-5 train step, batch {b}, on {jax.default_backend()} ({jax.device_count()} device)"
    )

    pooled = jax.numpy.asarray(rng.standard_normal((b, 24, 24, 20)), np.float32)
    grads = {
        "flax.linen.max_pool": jax.jit(
            jax.grad(lambda v: (nn.max_pool(v, (2, 2), (2, 2)) ** 2).sum())
        ),
        "jaxzip max_pool_2x2": jax.jit(jax.grad(lambda v: (jz.models.max_pool_2x2(v) ** 2).sum())),
    }
    pool_s = {
        k: _median_s(lambda f=f: f(pooled), args.steps, args.repeats) for k, f in grads.items()
    }
    for name, s in pool_s.items():
        print(f"pool gradient, {name} at ({b}, 24, 24, 20): median {1e3 * s:.4g} ms")
    ref, ours = pool_s.values()
    print(f"pool gradient ratio: {ref / ours:.2f}x faster")

    tx = optax.sgd(0.05, momentum=0.9)
    models = {"flax.linen.max_pool": FlaxPoolLeNet5(), "jaxzip max_pool_2x2": jz.models.LeNet5()}
    params = jz.models.init_params(models["jaxzip max_pool_2x2"], jax.random.key(0), x[:1])
    step_s, final = {}, {}
    for name, model in models.items():
        step = jz.train.make_train_step(jz.models.linen_apply_fn(model), tx)
        box = [jz.train.init_state(jax.tree.map(np.array, params), tx)]

        def one(step=step, box=box) -> Any:
            box[0], _ = step(box[0], batch, jax.random.key(0))
            return box[0]

        step_s[name] = _median_s(one, args.steps, args.repeats)
        final[name] = box[0].params
        print(f"train step, {name}: median {1e3 * step_s[name]:.4g} ms")
    ref, ours = step_s.values()
    same = jax.tree.all(jax.tree.map(lambda a, c: bool((a == c).all()), *final.values()))
    print(
        f"train step ratio: {ref / ours:.2f}x faster; identical params after the timed steps: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
