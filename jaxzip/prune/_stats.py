"""Mask statistics: per-layer and global sparsity, nonzeros, and dense/sparse FLOPs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxzip._types import Mask, Params, Where
from jaxzip.paths import leaves_with_paths, select
from jaxzip.paths._trees import check_mask


def nonzero_mask(params: Params) -> Mask:
    """True where a param is nonzero (the mask a pruned tree actually has).

    Example:
      >>> import jax.numpy as jnp
      >>> nonzero_mask({"w": jnp.array([0.0, 2.0])})
      {'w': Array([False,  True], dtype=bool)}
    """
    return jax.tree.map(lambda p: p != 0, params)


def mask_stats(mask: Mask, *, where: Where | None = None) -> dict[str, Any]:
    """Sizes, nonzeros (kept entries) and sparsity per leaf and overall (host-side ints/floats).

    Args:
      mask: a bool tree.
      where: the leaves that count in the totals (and are listed); None = all.

    Returns:
      ``{"layers": {path: {"size", "nonzeros", "sparsity"}}, "size", "nonzeros", "sparsity"}``.

    Raises:
      ValueError: non-bool leaves, or ``where`` selects nothing.

    Example:
      >>> import jax.numpy as jnp
      >>> st = mask_stats({"a": jnp.array([True, False]), "b": jnp.array([False, False])})
      >>> st["sparsity"], st["layers"]["b"]["nonzeros"]
      (0.75, 0)
    """
    check_mask(mask, mask)
    picked = jax.tree.leaves(select(mask, where)) if where is not None else None
    layers, size, kept = {}, 0, 0
    for i, (path, leaf) in enumerate(leaves_with_paths(mask)):
        if picked is not None and not picked[i]:
            continue
        arr = np.asarray(leaf)
        n, nz = int(arr.size), int(np.count_nonzero(arr))
        layers[path] = {"size": n, "nonzeros": nz, "sparsity": 1.0 - nz / n if n else 0.0}
        size, kept = size + n, kept + nz
    return {
        "layers": layers,
        "size": size,
        "nonzeros": kept,
        "sparsity": 1.0 - kept / size if size else 0.0,
    }


def flops(
    params: Params,
    mask: Mask | None,
    input_shape: Sequence[int],
    *,
    layers: Sequence[str],
    pool: int = 2,
) -> dict[str, Any]:
    """Dense and sparse FLOPs of one example through a chain of Dense and Conv layers.

    Assumptions: ``layers`` are applied in order, each with a ``kernel`` leaf at
    ``"<layer>/kernel"``; a 2-D kernel ``(in, out)`` is a Dense layer on the
    flattened input; a 4-D HWIO kernel is a stride-1 VALID convolution followed by
    a ``pool x pool`` max pool with stride ``pool`` (``pool=1``: none), as in
    LeNet-5. A multiply-add counts as 2 FLOPs; biases, activations and pooling
    are not counted. Sparse FLOPs count only kept kernel weights (``mask`` True;
    with ``mask=None``, nonzero weights); they do not propagate removed channels
    to the next layer's inputs (compact the model for that).

    Args:
      params: the params.
      mask: a keep-mask with the params' structure, or None.
      input_shape: one example's shape without batch, e.g. ``(28, 28, 1)``.
      layers: the layer names (paths) in application order.
      pool: pooling window and stride after every conv.

    Returns:
      ``{"layers": {name: {"dense", "sparse"}}, "dense", "sparse"}`` (ints).

    Raises:
      ValueError: a missing layer, a kernel whose shape does not fit the running
        shape, an unsupported kernel rank, or a bad mask.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"Dense_0": {"kernel": jnp.ones((4, 3))}, "Dense_1": {"kernel": jnp.ones((3, 2))}}
      >>> f = flops(p, None, (4,), layers=["Dense_0", "Dense_1"])
      >>> f["dense"], f["layers"]["Dense_0"]["dense"]
      (36, 24)
    """
    if mask is not None:
        check_mask(params, mask)
    if not isinstance(pool, int) or pool < 1:
        raise ValueError(f"pool: expected an int >= 1, got {pool!r}")
    kernels = dict(leaves_with_paths(params))
    kept = dict(
        leaves_with_paths(mask if mask is not None else jax.tree.map(lambda p: p != 0, params))
    )
    shape = tuple(int(d) for d in input_shape)
    out: dict[str, Any] = {"layers": {}, "dense": 0, "sparse": 0}
    for name in layers:
        path = f"{name}/kernel"
        if path not in kernels:
            raise ValueError(f"layers: no kernel at path {path!r} in params")
        kshape = tuple(np.shape(kernels[path]))
        nnz = int(np.count_nonzero(np.asarray(kept[path])))
        if len(kshape) == 2:
            n_in = int(np.prod(shape))
            if n_in != kshape[0]:
                raise ValueError(
                    f"layers: {path!r} expects {kshape[0]} inputs, running shape {shape} has {n_in}"
                )
            dense, sparse, shape = 2 * kshape[0] * kshape[1], 2 * nnz, (kshape[1],)
        elif len(kshape) == 4:
            kh, kw, cin, cout = kshape
            if len(shape) != 3 or shape[2] != cin or shape[0] < kh or shape[1] < kw:
                raise ValueError(
                    f"layers: conv kernel {path!r} of shape {kshape} does not fit input {shape}"
                )
            h, w = shape[0] - kh + 1, shape[1] - kw + 1
            dense, sparse = 2 * h * w * kh * kw * cin * cout, 2 * h * w * nnz
            shape = (h // pool, w // pool, cout)
        else:
            raise ValueError(
                f"layers: {path!r} has a rank-{len(kshape)} kernel; expected 2 (Dense) or 4 (HWIO conv)"
            )
        out["layers"][name] = {"dense": dense, "sparse": sparse}
        out["dense"] += dense
        out["sparse"] += sparse
    return out
