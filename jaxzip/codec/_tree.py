"""Leaves of a tree as named component arrays, and back (QArray, KMeansArray, arrays, scalars)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip.codec._errors import FormatError
from jaxzip.quant import KMeansArray, QArray

DTYPES = {
    np.dtype(t).name: np.dtype(t)
    for t in (
        np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
        np.uint64, np.float16, jnp.bfloat16, np.float32, np.float64,
    )
}  # fmt: skip
MAX_NDIM = 32
MAX_LEAF_BYTES = 1 << 32  # a decoded component larger than this is refused as malformed


def dtype_name(dtype: Any, path: str) -> str:
    d = np.dtype(dtype)
    if d.name not in DTYPES:
        raise TypeError(f"{path}: unsupported dtype {d}; expected one of {sorted(DTYPES)}")
    return d.name


def split_leaf(leaf: Any, path: str) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """``(kind, meta, components)`` for one leaf; ``TypeError`` naming ``path`` if unsupported."""
    if isinstance(leaf, QArray):
        meta = {
            "bits": int(leaf.bits),
            "axes": [int(a) for a in leaf.axes],
            "group_size": None if leaf.group_size is None else int(leaf.group_size),
            "group_axis": None if leaf.group_axis is None else int(leaf.group_axis),
            "dtype": dtype_name(leaf.dtype, path),
        }
        comps = {k: np.asarray(getattr(leaf, k)) for k in ("values", "scale", "zero_point")}
        return "qarray", meta, comps
    if isinstance(leaf, KMeansArray):
        idx, mask = np.asarray(leaf.indices), np.asarray(leaf.mask)
        masked = idx.shape == mask.shape and mask.dtype == np.bool_ and not idx[~mask].any()
        meta = {"bits": int(leaf.bits), "dtype": dtype_name(leaf.dtype, path), "masked": masked}
        comps = {"mask": mask, "centroids": np.asarray(leaf.centroids)}
        comps["indices"] = idx[mask] if masked else idx
        return "kmeans", meta, comps
    if isinstance(leaf, (bool, int, float)):
        kind = type(leaf).__name__
        try:
            value = np.asarray(leaf, {"bool": np.bool_, "int": np.int64, "float": np.float64}[kind])
        except OverflowError:
            raise TypeError(f"{path}: int {leaf} does not fit in int64") from None
        return "py", {"type": kind}, {"value": value}
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        kind = (
            "jax"
            if isinstance(leaf, jax.Array)
            else "numpy"
            if isinstance(leaf, np.ndarray)
            else "npscalar"
        )
        arr = np.asarray(leaf)
        dtype_name(arr.dtype, path)
        return kind, {}, {"value": arr}
    raise TypeError(
        f"{path or '<root>'}: unsupported leaf type {type(leaf).__name__}; expected arrays, "
        "Python scalars, QArray or KMeansArray in dicts (str keys), lists and tuples"
    )


def check_shape(shape: Any, dtype: np.dtype, where: str) -> int:
    """Validates a declared shape; returns its element count (``FormatError`` if absurd)."""
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40 for s in shape)
    ):
        raise FormatError(f"{where}: bad shape {shape!r}")
    n = math.prod(shape)
    if n * dtype.itemsize > MAX_LEAF_BYTES:
        raise FormatError(f"{where}: declares {n * dtype.itemsize} bytes, over {MAX_LEAF_BYTES}")
    return n


def _int_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool))


def join_leaf(kind: str, meta: Any, comps: dict[str, np.ndarray], path: str) -> Any:
    """Inverse of :func:`split_leaf`; ``FormatError`` if the metadata is malformed."""
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: leaf metadata must be an object")
    try:
        if kind == "qarray":
            axes, gs, ga, bits = meta["axes"], meta["group_size"], meta["group_axis"], meta["bits"]
            if not (isinstance(axes, list) and all(isinstance(a, int) for a in axes)):
                raise FormatError(f"{path}: bad QArray axes {axes!r}")
            if not (_int_or_none(gs) and _int_or_none(ga) and isinstance(bits, int)):
                raise FormatError(f"{path}: bad QArray metadata {meta!r}")
            return QArray(
                values=jnp.asarray(comps["values"]), scale=jnp.asarray(comps["scale"]),
                zero_point=jnp.asarray(comps["zero_point"]), bits=bits, axes=tuple(axes),
                group_size=gs, group_axis=ga, dtype=DTYPES[meta["dtype"]],
            )  # fmt: skip
        if kind == "kmeans":
            mask, idx = comps["mask"], comps["indices"]
            if mask.dtype != np.bool_ or not isinstance(meta["bits"], int):
                raise FormatError(f"{path}: bad KMeansArray mask or bits")
            if meta["masked"] is True:
                full = np.zeros(mask.shape, idx.dtype)
                if idx.shape != (int(mask.sum()),):
                    raise FormatError(f"{path}: {idx.size} indices for {int(mask.sum())} weights")
                full[mask] = idx
                idx = full
            elif meta["masked"] is not False:
                raise FormatError(f"{path}: bad KMeansArray metadata {meta!r}")
            return KMeansArray(
                indices=jnp.asarray(idx), centroids=jnp.asarray(comps["centroids"]),
                mask=jnp.asarray(mask), bits=meta["bits"], dtype=DTYPES[meta["dtype"]],
            )  # fmt: skip
        value = comps["value"]
        if kind == "py":
            want = {"bool": np.bool_, "int": np.int64, "float": np.float64}[meta["type"]]
            if value.shape != () or value.dtype != want:
                raise FormatError(f"{path}: bad Python scalar")
            return value.item()
        if kind == "npscalar" and value.shape == ():
            return value[()]
        if kind == "numpy":
            return value
        if kind == "jax":
            return jnp.asarray(value)
    except (KeyError, TypeError) as e:
        raise FormatError(f"{path}: malformed {kind} leaf ({e!r})") from None
    raise FormatError(f"{path}: unknown leaf kind {kind!r}")


COMPONENTS = {
    "qarray": ("values", "scale", "zero_point"),
    "kmeans": ("mask", "centroids", "indices"),
    "py": ("value",),
    "numpy": ("value",),
    "jax": ("value",),
    "npscalar": ("value",),
}
