"""Compaction: physically remove pruned output channels from a Dense/Conv chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Mask, Params
from jaxzip.paths._trees import check_mask
from jaxzip.prune._masks import apply_mask


def _layer(tree: Any, name: str, what: str) -> dict:
    node = tree
    for part in name.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"layers: no layer {name!r} in {what} (missing {part!r})")
        node = node[part]
    if not isinstance(node, Mapping) or "kernel" not in node:
        raise ValueError(f"layers: {name!r} in {what} has no 'kernel' leaf")
    return node  # type: ignore[return-value]


def _check_layers(layers: Sequence[str]) -> None:
    if isinstance(layers, str) or not layers or len(set(layers)) != len(layers):
        raise ValueError(
            f"layers: expected a non-empty sequence of distinct layer names, got {layers!r}"
        )


def _channel_alive(kernel_mask: Any) -> np.ndarray:
    arr = np.asarray(kernel_mask)
    return arr.reshape(-1, arr.shape[-1]).any(axis=0)


def mask_channel_biases(params: Params, mask: Mask, *, layers: Sequence[str]) -> Mask:
    """Also masks the bias of every output unit whose kernel column is fully pruned.

    Use it after :class:`Channel` pruning of kernels so that pruned units output
    exactly zero (and so :func:`compact` can remove them).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"Dense_0": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
      >>> m = {"Dense_0": {"kernel": jnp.array([[True, False], [True, False]]), "bias": jnp.ones(2, bool)}}
      >>> mask_channel_biases(p, m, layers=["Dense_0"])["Dense_0"]["bias"]
      Array([ True, False], dtype=bool)
    """
    check_mask(params, mask)
    _check_layers(layers)
    out = jax.tree.map(lambda m: m, mask)  # fresh containers, same leaves
    for name in layers:
        _layer(params, name, "params")
        node = _layer(out, name, "mask")
        if "bias" in node:
            node["bias"] = jnp.logical_and(node["bias"], _channel_alive(node["kernel"]))
    return out


def compact(params: Params, mask: Mask, *, layers: Sequence[str]) -> tuple[Params, tuple[int, ...]]:
    """Removes dead output units of a Dense/Conv chain; returns smaller params and the widths.

    ``layers`` are applied in order; each holds ``kernel`` (Dense ``(in, out)`` or
    linen HWIO conv ``(H, W, I, O)``) and optionally ``bias``. An output unit of a
    non-final layer is removed when its whole kernel column is masked out and its
    masked bias is zero; the next layer's matching inputs are removed too. When a
    conv feeds a Dense layer, the Dense rows are taken in the flattened ``(H, W, C)``
    order (spatial positions × channels) that ``x.reshape(n, -1)`` gives after
    pooling. The final layer keeps all outputs. The compact model computes the
    same function as ``apply_mask(params, mask)`` for activations with
    ``act(0) = 0`` (ReLU) and max pooling.

    Args:
      params: the params (nested mappings along the layer names).
      mask: a keep-mask with the params' structure (concrete).
      layers: the layer names in application order, e.g. ``["Conv_0", "Conv_1",
        "Dense_0", "Dense_1"]``.

    Returns:
      ``(compact_params, widths)``: masked params with pruned units removed (other
      leaves unchanged but masked), and each layer's output width.

    Raises:
      ValueError: a missing layer or kernel, bad mask, or shapes that do not chain.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"Dense_0": {"kernel": jnp.ones((3, 2))}, "Dense_1": {"kernel": jnp.ones((2, 1))}}
      >>> m = {"Dense_0": {"kernel": jnp.array([[True, False]] * 3)},
      ...      "Dense_1": {"kernel": jnp.ones((2, 1), bool)}}
      >>> small, widths = compact(p, m, layers=["Dense_0", "Dense_1"])
      >>> widths, small["Dense_1"]["kernel"].shape
      ((1, 1), (1, 1))
    """
    check_mask(params, mask)
    _check_layers(layers)
    out = apply_mask(params, mask)  # fresh containers
    widths: list[int] = []
    kept_prev: np.ndarray | None = None
    prev_out, prev_ndim = 0, 0
    for i, name in enumerate(layers):
        node, mnode = _layer(out, name, "params"), _layer(mask, name, "mask")
        kernel = node["kernel"]
        if kernel.ndim not in (2, 4):
            raise ValueError(f"layers: {name!r} has a rank-{kernel.ndim} kernel; expected 2 or 4")
        if kept_prev is not None:
            n_in = kernel.shape[-2] if kernel.ndim == 4 else kernel.shape[0]
            if kernel.ndim == 4 and (prev_ndim != 4 or n_in != prev_out):
                raise ValueError(
                    f"layers: conv {name!r} with {n_in} inputs cannot follow a layer with {prev_out} outputs"
                )
            if kernel.ndim == 4:
                kernel = kernel[:, :, kept_prev, :]
            elif prev_ndim == 2:
                if n_in != prev_out:
                    raise ValueError(
                        f"layers: {name!r} has {n_in} inputs, previous layer has {prev_out} outputs"
                    )
                kernel = kernel[kept_prev, :]
            else:
                if n_in % prev_out:
                    raise ValueError(
                        f"layers: {name!r} has {n_in} inputs, not a multiple of the previous conv's {prev_out} channels"
                    )
                hw = n_in // prev_out
                cols = kernel.reshape(hw, prev_out, kernel.shape[-1])[:, kept_prev, :]
                kernel = cols.reshape(hw * len(kept_prev), kernel.shape[-1])
        n_out = node["kernel"].shape[-1]
        if i < len(layers) - 1:
            alive = _channel_alive(mnode["kernel"])
            if "bias" in node:
                alive = alive | (np.asarray(node["bias"]) != 0)
            kept = np.flatnonzero(alive)
        else:
            kept = np.arange(n_out)
        node["kernel"] = jnp.take(kernel, kept, axis=-1)
        if "bias" in node:
            node["bias"] = jnp.take(node["bias"], kept, axis=-1)
        widths.append(len(kept))
        kept_prev, prev_out, prev_ndim = kept, n_out, node["kernel"].ndim
    return out, tuple(widths)
