"""MNIST and Fashion-MNIST: find the IDX files, verify them, download if needed.

Lookup order for the two files of a split (each as ``NAME.gz`` or raw
``NAME``; ``.gz`` is preferred when both exist):

1. ``data_dir``, if given. Missing or corrupt files there raise; there is no
   fallback, since the caller asked for that directory.
2. ``$JAXZIP_DATA_DIR/<name>`` (``mnist`` or ``fashion_mnist``), if the
   variable is set and both files are there (corrupt files raise).
3. The cache, ``<cache root>/<name>``. The cache root is ``cache_dir`` if
   given, else ``$JAXZIP_CACHE_DIR`` if set, else
   ``platformdirs.user_cache_dir("jaxzip")``.
4. A download from the source's mirrors into the cache (when
   ``download=True``), verified before it is renamed into place.

Every file is verified against the MD5 of its decompressed content each time
it is read (hashing runs alongside decompression and costs little).
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np
import platformdirs

from jaxzip._errors import DataError
from jaxzip.data._dataset import Dataset
from jaxzip.data._download import download_verified
from jaxzip.data._idx import _MAX_IDX_BYTES, read_idx
from jaxzip.data._sources import FASHION_MNIST, IDX_FILES, MNIST, IdxSource

DATA_DIR_ENV = "JAXZIP_DATA_DIR"
CACHE_DIR_ENV = "JAXZIP_CACHE_DIR"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The root of jaxzip's download cache.

    Args:
      cache_dir: an explicit root; if ``None``, ``$JAXZIP_CACHE_DIR`` when set
        and non-empty, else ``platformdirs.user_cache_dir("jaxzip")``.

    Returns:
      The directory (it may not exist yet).

    Example:
      >>> cache_root("/tmp/jz-cache")
      PosixPath('/tmp/jz-cache')
    """
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("jaxzip"))


def _find(directory: Path, file: str) -> Path | None:
    for candidate in (directory / f"{file}.gz", directory / file):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dataset(
    source: IdxSource,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split: str,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Dataset:
    """Loads one split of an MNIST-style IDX dataset (see the module docs for the lookup).

    Args:
      source: the dataset's files, checksums and mirrors, e.g. :data:`MNIST`.
      data_dir: a directory holding the files; if given, nothing else is tried.
      split: ``"train"`` or ``"test"``.
      download: fetch missing files from the mirrors into the cache.
      cache_dir: the cache root (see :func:`cache_root`).
      mirrors: base URLs to use instead of ``source.mirrors``.
      progress: show a download progress bar on stderr.
      timeout: seconds to wait for a connection or a read before trying the
        next mirror.

    Returns:
      A :class:`Dataset` named ``"<source.name>/<split>"``: x float32 of shape
      (N, H, W, 1) in [0, 1] (pixels / 255), y int32.

    Raises:
      DataError: files are missing, corrupt or fail their checksum, or the
        download failed; the message says which files to put where.
      ValueError: an argument is malformed.

    Example:
      >>> import tempfile
      >>> load_idx_dataset(MNIST, tempfile.mkdtemp(), split="test")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      jaxzip._errors.DataError: mnist test split: directory ... lacks t10k-images-idx3-ubyte, ...
    """
    if not isinstance(source, IdxSource):
        raise TypeError(
            f"load_idx_dataset: source must be an IdxSource, got {type(source).__name__}"
        )
    if split not in IDX_FILES:
        raise ValueError(f"{source.name}: split must be 'train' or 'test', got {split!r}")
    if mirrors is not None:  # validated by the same rules as IdxSource
        mirrors = IdxSource(name=source.name, md5s=source.md5s, mirrors=mirrors).mirrors
    else:
        mirrors = source.mirrors
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    files = IDX_FILES[split]
    what = f"{source.name} {split} split"

    if data_dir is not None:
        directory = Path(data_dir)
        missing = [f for f in files if _find(directory, f) is None]
        if missing:
            raise DataError(
                f"{what}: directory {directory} lacks {', '.join(missing)} (as NAME.gz or raw NAME)"
            )
        return _read_split(source, split, directory)

    env_dir = os.environ.get(DATA_DIR_ENV)
    if env_dir:
        directory = Path(env_dir) / source.name
        if all(_find(directory, f) is not None for f in files):
            return _read_split(source, split, directory)

    cache = cache_root(cache_dir) / source.name
    arrays: dict[str, np.ndarray] = {}
    problems: dict[str, str] = {}
    for f in files:
        path = _find(cache, f)
        if path is None:
            problems[f] = "missing"
            continue
        try:
            arrays[f] = read_idx(path, md5=source.md5(f))
        except DataError as e:
            problems[f] = str(e)
    if problems and not download:
        details = [f"{f}: {why}" for f, why in problems.items()]
        raise DataError(_instructions(source, split, cache, mirrors, "download=False", details))
    for f in problems:
        _download(source, split, f, cache, mirrors, timeout=timeout, progress=progress)
        arrays[f] = read_idx(cache / f"{f}.gz", md5=source.md5(f))
    return _to_dataset(*_shape_of(source), split, cache, arrays)


def _download(
    source: IdxSource,
    split: str,
    file: str,
    cache: Path,
    mirrors: tuple[str, ...],
    *,
    timeout: float,
    progress: bool,
) -> None:
    """Tries each mirror in turn; raises one DataError if all of them fail."""
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + f"/{file}.gz"
        try:
            download_verified(
                url,
                cache / f"{file}.gz",
                md5=source.md5(file),
                timeout=timeout,
                progress=progress,
                max_bytes=_MAX_IDX_BYTES + 4 * 256,  # the payload cap plus the largest header
            )
        except (OSError, http.client.HTTPException, DataError) as e:
            errors.append(f"{url}: {e}")
            continue
        return
    header = f"downloading {file}.gz failed from every mirror"
    raise DataError(
        _instructions(source, split, cache, mirrors, header, errors or ["no mirrors given"])
    )


def _instructions(
    source: IdxSource,
    split: str,
    cache: Path,
    mirrors: tuple[str, ...],
    header: str,
    details: list[str],
) -> str:
    """The error text: what went wrong, then which files to place where."""
    env_dir = os.environ.get(DATA_DIR_ENV)
    env_line = (
        f"{Path(env_dir) / source.name}  (from ${DATA_DIR_ENV})"
        if env_dir
        else f"${DATA_DIR_ENV}/{source.name}  (${DATA_DIR_ENV} is not set)"
    )
    wanted = " and ".join(f"{f}.gz" for f in IDX_FILES[split])
    lines = [f"{source.name} {split} split is not available: {header}:"]
    lines += [f"  - {d}" for d in details]
    lines += [
        f"Place {wanted} (or the decompressed files, without .gz) in one of:",
        "  - a directory passed as data_dir",
        f"  - {env_line}",
        f"  - the cache directory {cache}  (its root is cache_dir= if given, else "
        f"${CACHE_DIR_ENV}, else the user cache directory)",
    ]
    if header == "download=False":
        lines.append(f"or pass download=True to fetch them from {', '.join(mirrors) or '(none)'}.")
    return "\n".join(lines)


def _read_split(source: IdxSource, split: str, directory: Path) -> Dataset:
    arrays = {}
    for f in IDX_FILES[split]:
        path = _find(directory, f)
        if path is None:  # the callers check first; a file may vanish meanwhile
            raise DataError(f"{source.name} {split} split: {directory} lacks {f}")
        arrays[f] = read_idx(path, md5=source.md5(f))
    return _to_dataset(*_shape_of(source), split, directory, arrays)


def _shape_of(source: IdxSource) -> tuple[str, tuple[int, ...], int]:
    return source.name, source.image_shape, source.num_classes


def _to_dataset(
    name: str,
    shape: tuple[int, ...],
    classes: int,
    split: str,
    directory: Path,
    arrays: dict[str, np.ndarray],
) -> Dataset:
    image_file, label_file = IDX_FILES[split]
    images, labels = arrays[image_file], arrays[label_file]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != shape:
        raise DataError(
            f"{image_file} in {directory}: expected uint8 images of shape (N, "
            f"{shape[0]}, {shape[1]}), got {images.dtype} of shape {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{label_file} in {directory}: expected {len(images)} uint8 labels (one per "
            f"image in {image_file}), got {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) and int(labels.max()) >= classes:
        raise DataError(
            f"{label_file} in {directory}: labels must lie in [0, {classes}), "
            f"found {int(labels.max())}"
        )
    x = images.astype(np.float32)[..., None]
    x /= np.float32(255)  # in place: much faster than a casting true_divide
    y = labels.astype(np.int32)
    return Dataset(x=x, y=y, num_classes=classes, name=f"{name}/{split}")


class LoadOptions(TypedDict, total=False):
    """The keyword arguments of :func:`load_mnist` and :func:`load_fashion_mnist`."""

    split: str  # "train" (the default) or "test"
    download: bool  # default True
    cache_dir: str | os.PathLike[str] | None
    mirrors: Sequence[str] | None
    progress: bool  # default True


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None, **options: Unpack[LoadOptions]
) -> Dataset:
    """Loads MNIST (LeCun, Cortes and Burges): 60,000 train / 10,000 test digits.

    Files are found, verified and downloaded as described in
    :func:`load_idx_dataset` (``$JAXZIP_DATA_DIR/mnist``, then the cache
    ``<root>/mnist`` whose root is set by ``cache_dir`` or ``$JAXZIP_CACHE_DIR``).

    Args:
      data_dir: a directory holding the IDX files; if given, nothing else is tried.
      split: ``"train"`` or ``"test"``.
      download: fetch missing files from the mirrors into the cache.
      cache_dir: the cache root (see :func:`cache_root`).
      mirrors: base URLs to use instead of the default mirrors.
      progress: show a download progress bar on stderr.

    Returns:
      A :class:`Dataset`: x (N, 28, 28, 1) float32 in [0, 1], y int32 in [0, 10).

    Raises:
      DataError: the files are missing, corrupt, or could not be downloaded.

    Example:
      >>> import tempfile
      >>> load_mnist(tempfile.mkdtemp(), split="train")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      jaxzip._errors.DataError: mnist train split: directory ... lacks train-images-idx3-ubyte, ...
    """
    return load_idx_dataset(MNIST, data_dir, **{"split": "train", **options})


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, **options: Unpack[LoadOptions]
) -> Dataset:
    """Loads Fashion-MNIST (Xiao, Rasul and Vollgraf): 60,000 train / 10,000 test images.

    Takes the arguments of :func:`load_mnist` and returns and raises as it does,
    with ``$JAXZIP_DATA_DIR/fashion_mnist``, the cache subdirectory
    ``fashion_mnist`` and the default mirror of ``FASHION_MNIST``. Files are
    verified against the MD5s of their decompressed content (see
    ``FASHION_MNIST`` for their provenance).

    Example:
      >>> import tempfile
      >>> try:  # an empty directory the user named: nothing else is tried
      ...     load_fashion_mnist(tempfile.mkdtemp(), split="test")
      ... except DataError as e:
      ...     print(str(e).split(": directory")[0])
      fashion_mnist test split
    """
    return load_idx_dataset(FASHION_MNIST, data_dir, **{"split": "train", **options})


def load_idx_dir(data_dir: str | os.PathLike[str], *, split: str = "train") -> Dataset:
    """Loads one split of your own MNIST-style dataset: IDX files in a directory you name.

    The directory holds the four standard file names of :data:`IDX_FILES`
    (each as ``NAME.gz`` or raw ``NAME``). Images may have any height and
    width; labels are ``0 .. num_classes - 1`` with ``num_classes`` one more
    than the largest label of the split. There are no checksums to verify
    (the files are yours), but every file is validated as :func:`read_idx`
    does before anything is kept, and nothing is downloaded.

    Args:
      data_dir: the directory holding the files.
      split: ``"train"`` or ``"test"``.

    Returns:
      A :class:`Dataset` named ``"idx/<split>"``: x float32 of shape
      (N, H, W, 1) in [0, 1] (pixels / 255), y int32.

    Raises:
      DataError: a file is missing, corrupt or not uint8 images (N, H, W) with
        one uint8 label each, or the labels take fewer than 2 values.
      ValueError: ``split`` is not ``"train"`` or ``"test"``.

    Example:
      >>> import tempfile
      >>> load_idx_dir(tempfile.mkdtemp(), split="test")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      jaxzip._errors.DataError: idx test split: directory ... lacks t10k-images-idx3-ubyte, ...
    """
    if split not in IDX_FILES:
        raise ValueError(f"load_idx_dir: split must be 'train' or 'test', got {split!r}")
    directory = Path(data_dir)
    files = IDX_FILES[split]
    found = {f: _find(directory, f) for f in files}
    missing = [f for f, path in found.items() if path is None]
    if missing:
        raise DataError(
            f"idx {split} split: directory {directory} lacks {', '.join(missing)} "
            "(as NAME.gz or raw NAME)"
        )
    arrays = {f: read_idx(path) for f, path in found.items() if path is not None}
    images, labels = (arrays[f] for f in files)
    if images.dtype != np.uint8 or images.ndim != 3 or 0 in images.shape:
        raise DataError(
            f"{files[0]} in {directory}: expected uint8 images of shape (N, H, W), none of "
            f"them 0, got {images.dtype} of shape {images.shape}"
        )
    # labels are checked to be uint8 before their maximum sets the class count
    classes = int(labels.max()) + 1 if labels.dtype == np.uint8 and labels.size else 2
    dataset = _to_dataset("idx", images.shape[1:], classes, split, directory, arrays)
    if classes < 2:
        raise DataError(
            f"{files[1]} in {directory}: expected labels taking at least 2 values "
            "(0 .. num_classes - 1), got only 0"
        )
    return dataset
