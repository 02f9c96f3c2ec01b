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
        np.bool_,
        np.int8,
        np.uint8,
        np.int16,
        np.uint16,
        np.int32,
        np.uint32,
        np.int64,
        np.uint64,
        np.float16,
        jnp.bfloat16,
        np.float32,
        np.float64,
    )
}
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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


FLOATS = frozenset(n for n, d in DTYPES.items() if d.kind == "f" or n == "bfloat16")


def _float_dtype(meta: dict[str, Any], path: str) -> None:
    if meta.get("dtype") not in FLOATS:
        raise FormatError(
            f"{path}: dtype {meta.get('dtype')!r} is not a float dtype {sorted(FLOATS)}"
        )


def _bits(meta: dict[str, Any], path: str) -> int:
    bits = meta.get("bits")
    if not _is_int(bits) or not 1 <= bits <= 8:
        raise FormatError(f"{path}: bits {bits!r} is not an int in 1..8")
    return bits


def _has(meta: dict[str, Any], keys: tuple[str, ...], path: str) -> None:
    missing = [k for k in keys if k not in meta]
    if missing:
        raise FormatError(f"{path}: leaf metadata lacks {missing}")


def _check_qarray(meta: dict[str, Any], comps: dict[str, np.ndarray], path: str) -> None:
    """The QArray invariant: integer values within ``bits``, scales laid out by axes/groups."""
    _has(meta, ("bits", "axes", "group_size", "group_axis", "dtype"), path)
    values, scale, zp = comps["values"], comps["scale"], comps["zero_point"]
    axes, gs, ga = meta.get("axes"), meta.get("group_size"), meta.get("group_axis")
    bits, nd = _bits(meta, path), values.ndim
    _float_dtype(meta, path)
    if not (isinstance(axes, list) and all(_is_int(a) and 0 <= a < nd for a in axes)) or len(
        set(axes)
    ) != len(axes):
        raise FormatError(f"{path}: bad QArray axes {axes!r} for {nd}-d values")
    if not (_int_or_none(gs) and _int_or_none(ga)) or (gs is None) != (ga is None):
        raise FormatError(f"{path}: bad QArray group_size/group_axis {gs!r}/{ga!r}")
    if ga is not None and not (
        0 <= ga < nd and ga not in axes and gs > 0 and values.shape[ga] % gs == 0
    ):
        raise FormatError(
            f"{path}: group_size {gs} on axis {ga} does not fit values {values.shape}"
        )
    want = tuple(n if i in axes else n // gs if i == ga else 1 for i, n in enumerate(values.shape))
    if values.dtype.kind not in "iu" or scale.dtype.name not in FLOATS or zp.dtype.kind not in "iu":
        raise FormatError(
            f"{path}: QArray values/scale/zero_point must be int/float/int, got "
            f"{values.dtype}/{scale.dtype}/{zp.dtype}"
        )
    if scale.shape != want or zp.shape != want:
        raise FormatError(
            f"{path}: scale {scale.shape} and zero_point {zp.shape} do not have the "
            f"shape {want} that axes {axes} and groups give values {values.shape}"
        )
    if values.size:
        lo, hi = int(values.min()), int(values.max())
        # a signed or unsigned grid of `bits`; binary weights are ±1 with bits=1
        if lo < -(1 << (bits - 1)) or hi >= 1 << bits or hi - lo > 1 << bits:
            raise FormatError(f"{path}: values span {lo}..{hi}, more than {bits} bits")


def _check_kmeans(meta: dict[str, Any], comps: dict[str, np.ndarray], path: str) -> np.ndarray:
    """The KMeansArray invariant; returns the full-shape indices (scattered if ``masked``)."""
    _has(meta, ("bits", "dtype", "masked"), path)
    mask, idx, books = comps["mask"], comps["indices"], comps["centroids"]
    bits = _bits(meta, path)
    _float_dtype(meta, path)
    if mask.dtype != np.bool_ or idx.dtype.kind not in "iu":
        raise FormatError(
            f"{path}: mask must be bool and indices integers, got {mask.dtype}/{idx.dtype}"
        )
    if books.shape != (1 << bits,) or books.dtype.name not in FLOATS:
        raise FormatError(
            f"{path}: centroids {books.dtype}{list(books.shape)} are not a {bits}-bits "
            f"float codebook of {1 << bits} entries"
        )
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= books.size):
        raise FormatError(f"{path}: an index is outside the {books.size}-entry codebook")
    if meta.get("masked") is True:
        k = int(np.count_nonzero(mask))
        if idx.shape != (k,):
            raise FormatError(f"{path}: {idx.size} stored indices for {k} unmasked weights")
        full = np.zeros(mask.shape, idx.dtype)
        full[mask] = idx
        return full
    if meta.get("masked") is not False:
        raise FormatError(f"{path}: masked must be true or false, got {meta.get('masked')!r}")
    if idx.shape != mask.shape:
        raise FormatError(f"{path}: indices {list(idx.shape)} and mask {list(mask.shape)} differ")
    return idx


def check_leaf(kind: str, meta: Any, comps: dict[str, np.ndarray], path: str) -> dict[str, Any]:
    """Validates one decoded leaf's metadata against its arrays; returns the checked components.

    Every invariant the leaf's type states is checked here (a file that breaks one
    is refused rather than loaded inconsistent): QArray values fit ``bits`` and the
    scales fit ``axes``/groups; a KMeansArray's codebook has ``2**bits`` float
    entries, its indices are inside it and have the mask's shape; the float
    ``dtype`` they decode to is a float dtype.

    Raises:
      FormatError: naming ``path`` and what is inconsistent.
    """
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: leaf metadata must be an object")
    if kind == "qarray":
        _check_qarray(meta, comps, path)
        return comps
    if kind == "kmeans":
        return {**comps, "indices": _check_kmeans(meta, comps, path)}
    value = comps["value"]
    if kind == "py":
        want = {"bool": np.bool_, "int": np.int64, "float": np.float64}.get(meta.get("type"))
        if want is None or value.shape != () or value.dtype != want:
            raise FormatError(f"{path}: bad Python scalar")
    elif kind == "npscalar" and value.shape != ():
        raise FormatError(f"{path}: a numpy scalar must have shape (), got {value.shape}")
    elif kind not in ("py", "npscalar", "numpy", "jax"):
        raise FormatError(f"{path}: unknown leaf kind {kind!r}")
    return comps


def join_leaf(kind: str, meta: Any, comps: dict[str, np.ndarray], path: str) -> Any:
    """Inverse of :func:`split_leaf`: :func:`check_leaf`, then :func:`build_leaf`."""
    return build_leaf(kind, meta, check_leaf(kind, meta, comps, path))


def build_leaf(kind: str, meta: dict[str, Any], comps: dict[str, np.ndarray]) -> Any:
    """The leaf of components that :func:`check_leaf` returned."""
    if kind in ("qarray", "kmeans"):
        arrays = {k: jnp.asarray(comps[k]) for k in COMPONENTS[kind]}
        dtype = DTYPES[meta["dtype"]]
        if kind == "kmeans":
            return KMeansArray(**arrays, bits=meta["bits"], dtype=dtype)
        return QArray(
            **arrays,
            bits=meta["bits"],
            axes=tuple(meta["axes"]),
            group_size=meta["group_size"],
            group_axis=meta["group_axis"],
            dtype=dtype,
        )
    value = comps["value"]
    if kind == "py":
        return value.item()
    if kind == "npscalar":
        return value[()]
    return jnp.asarray(value) if kind == "jax" else value


COMPONENTS = {
    "qarray": ("values", "scale", "zero_point"),
    "kmeans": ("mask", "centroids", "indices"),
    "py": ("value",),
    "numpy": ("value",),
    "jax": ("value",),
    "npscalar": ("value",),
}
