"""``save_params`` / ``load_params``: params as an ``.npz`` keyed by ``/``-joined paths."""

from __future__ import annotations

import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._errors import CheckpointError
from jaxzip._io import atomic_open
from jaxzip._types import Params
from jaxzip.paths import leaves_with_paths


def _arrays_by_path(params: Params, where: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for path, leaf in leaves_with_paths(params):
        if path in arrays:
            raise ValueError(f"{where}: two leaves share the path {path!r}; paths must be unique")
        array = np.asarray(jax.device_get(leaf))
        if not (array.dtype == np.bool_ or jnp.issubdtype(array.dtype, jnp.number)):
            raise TypeError(
                f"{where}: leaf {path!r} is not a numeric array (got {type(leaf).__name__} of dtype {array.dtype})"
            )
        arrays[path] = array
    return arrays


def save_params(path: str | os.PathLike[str], params: Params) -> None:
    """Writes ``params`` to ``path`` as an uncompressed ``.npz``, atomically.

    Each leaf is stored under its ``/``-joined path (``"Dense_0/kernel"``), so the
    file is readable with plain ``np.load``. The file is written exactly at
    ``path`` (no ``.npz`` suffix is added). Nothing is pickled.

    Args:
      path: the file to write (its directory is created if missing).
      params: the parameter pytree (jax or numpy arrays, scalars).

    Raises:
      ValueError: two leaves have the same path.
      TypeError: a leaf is not numeric.

    Example:
      >>> import tempfile, pathlib, numpy as np
      >>> f = pathlib.Path(tempfile.mkdtemp()) / "params.npz"
      >>> save_params(f, {"Dense_0": {"kernel": np.ones((2, 3), np.float32)}})
      >>> sorted(np.load(f))
      ['Dense_0/kernel']
    """
    arrays = _arrays_by_path(params, "save_params")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def _describe(shape: tuple[int, ...], dtype: np.dtype) -> str:
    return f"shape {tuple(shape)} dtype {np.dtype(dtype).name}"


# Files jaxzip writes that are not params archives, told apart by their magic.
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
"""An .npz is a zip: a local file header first, or the end record of an empty archive."""

_OTHER_FORMATS = (
    (b"\x89JZC\r\n\x1a\n", "a jaxzip .jz codec file", "for a .jz use jz.codec.load"),
    (b"\x89JZX\r\n\x1a\n", "a jaxzip exported model", "for it use jz.deploy.load_exported"),
)


def load_params(
    path: str | os.PathLike[str], like: Params, *, require_finite: bool = False
) -> Params:
    """Reads params written by :func:`save_params`, checked against a template.

    Args:
      path: the ``.npz`` file.
      like: a pytree with the expected structure; its leaves give the expected
        shapes and dtypes (arrays or ``jax.ShapeDtypeStruct``, e.g. from
        ``jax.eval_shape`` of the model's init).
      require_finite: refuse a file whose float arrays hold NaN or Inf (for
        params that will be compressed or deployed); off by default so a file
        loads exactly as it was saved.

    Returns:
      A pytree with ``like``'s structure holding the file's arrays (as jax arrays).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      jaxzip.CheckpointError: (a ``ValueError``) the file is not an ``.npz``
        archive (a jaxzip ``.jz`` or exported-model file is named as such), a path
        of ``like`` is missing from the file or the file has a path ``like``
        lacks, a shape or dtype differs (the message names the path, expected and
        found), or ``require_finite`` and a leaf holds NaN or Inf (named with its
        counts).
      TypeError: ``require_finite`` is not a bool.

    Example:
      >>> import tempfile, pathlib, numpy as np
      >>> f = pathlib.Path(tempfile.mkdtemp()) / "params.npz"
      >>> params = {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
      >>> save_params(f, params)
      >>> load_params(f, params)["Dense_0"]["kernel"].tolist()
      [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    if not isinstance(require_finite, bool):
        raise TypeError(f"require_finite: expected a bool, got {require_finite!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_params: no params file at {str(path)!r}")
    with path.open("rb") as f:
        head = f.read(8)
    for magic, what, instead in _OTHER_FORMATS:
        if head == magic:
            raise CheckpointError(
                f"load_params: {str(path)!r} is {what} (magic {magic!r}), not the .npz params "
                f"file expected (written by jz.train.save_params); {instead}"
            )
    if not head.startswith((*_ZIP_MAGICS, b"\x93NUMPY")):  # never let numpy guess (pickle advice)
        raise CheckpointError(
            f"load_params: {str(path)!r} is not an .npz archive (it starts with {head[:4]!r}, "
            "an .npz starts with the zip magic b'PK\\x03\\x04'); expected the params file "
            "written by jz.train.save_params or jaxzip run (params.npz)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise CheckpointError(f"load_params: {str(path)!r} is not a readable .npz file: {e}") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(
            f"load_params: {str(path)!r} is a single .npy array, not an .npz archive"
        )
    with archive:
        expected = leaves_with_paths(like)
        wanted = [p for p, _ in expected]
        missing = [p for p in wanted if p not in archive.files]
        extra = sorted(set(archive.files) - set(wanted))
        if missing or extra:
            raise CheckpointError(
                f"load_params: {str(path)!r} does not match the expected params: "
                f"missing paths {missing}, unexpected paths {extra}"
            )
        leaves = []
        for p, leaf in expected:
            want_shape, want_dtype = tuple(np.shape(leaf)), _dtype_of(leaf)
            try:
                head_shape, head_dtype = _member_header(archive, p)
                same = head_dtype == want_dtype or (
                    head_dtype.kind == "V" and head_dtype.itemsize == want_dtype.itemsize
                )
                # checked before reading, so the array is never larger than ``like`` says
                got = archive[p] if head_shape == want_shape and same else None
            except _READ_ERRORS as e:  # e.g. a pickled object array, a corrupt zip member
                raise CheckpointError(f"load_params: {str(path)!r}: cannot read {p!r}: {e}") from e
            if got is None:
                raise CheckpointError(
                    f"load_params: {str(path)!r}: {p!r} expected "
                    f"{_describe(want_shape, want_dtype)}, file has {_describe(head_shape, head_dtype)}"
                )
            if got.dtype.kind == "V" and got.dtype.itemsize == want_dtype.itemsize:
                got = got.view(want_dtype)  # extension dtypes (bfloat16) are stored as raw bytes
            if got.shape != want_shape or got.dtype != want_dtype:
                raise CheckpointError(
                    f"load_params: {str(path)!r}: {p!r} expected "
                    f"{_describe(want_shape, want_dtype)}, file has {_describe(got.shape, got.dtype)}"
                )
            if require_finite:
                _check_finite(got, p, path)
            leaves.append(jnp.asarray(got))
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


def _check_finite(got: np.ndarray, key: str, path: Path) -> None:
    if not jnp.issubdtype(got.dtype, jnp.inexact):
        return
    x = np.asarray(got, np.float32) if got.dtype.itemsize < 4 else got
    nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    if nan or inf:
        raise CheckpointError(
            f"load_params: {str(path)!r}: {key!r} holds {nan} NaN and {inf} Inf of "
            f"{got.size} values; expected finite params"
        )


# What zipfile/numpy raise on a damaged archive or member: besides the obvious ones, an
# unsupported compression method or zip version (NotImplementedError), an "encrypted"
# flag bit (RuntimeError), a garbled .npy header dict (SyntaxError, tokenize.TokenError).
_READ_ERRORS = (
    ValueError,
    KeyError,
    OSError,
    EOFError,
    OverflowError,
    TypeError,
    NotImplementedError,
    RuntimeError,
    SyntaxError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    zlib.error,
)


def _member_header(archive: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an ``.npy`` member declares, read without reading its data."""
    name = f"{key}.npy" if f"{key}.npy" in archive.zip.namelist() else key
    with archive.zip.open(name) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded (they would need pickle)")
    return tuple(shape), dtype


def _dtype_of(leaf: object) -> np.dtype:
    dtype = getattr(leaf, "dtype", None)
    return np.dtype(dtype) if dtype is not None else np.asarray(leaf).dtype
