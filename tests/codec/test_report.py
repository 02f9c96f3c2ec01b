import json
import math

import jax.numpy as jnp
import numpy as np

from jaxzip.codec import encode, format_size_report, size_report
from jaxzip.quant import kmeans


def test_report_kmeans_pruned():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 30)).astype(np.float32)
    mask = rng.random(x.shape) < 0.1
    book = kmeans(jnp.asarray(x), bits=3, mask=jnp.asarray(mask), iters=2)
    tree = {"dense": {"kernel": book}, "bias": np.zeros(30, np.float32)}
    r = size_report(tree)
    assert r == size_report(encode(tree))
    row = next(x for x in r.leaves if x.path == "dense/kernel")
    assert row.nnz == mask.sum() and row.size == 1200
    assert row.bound_bits >= math.log2(math.comb(1200, int(mask.sum())))
    assert row.overhead > -1e-9  # never below the bound
    assert r.ratio > 3  # small tree: the JSON header dominates
    json.dumps(r.to_dict())
    assert "dense/kernel" in format_size_report(r)
