"""The stage cache: each stage's outputs under ``out_dir/stages/<NN>-<name>-<hash12>/``.

A stage's key is :func:`jaxzip.auto.config_hash` (the one content hash, also
that of ``jaxzip auto``'s journal and trials) of what it depends on (the
config parts it reads), its position and name, the key of the stage before it
(a chain, so a change invalidates every later stage) and the jaxzip version.
Its directory holds the run-state fields it set (trees holding arrays, such as
params, masks and codebooks, as :func:`jaxzip.codec.encode` files, bit for bit;
anything else as JSON), copies of the files it wrote to the output directory,
and ``done.json``, written last and atomically: a directory without a valid
``done.json`` (a crash mid-write) is never restored.

Every name read back from a manifest is checked with
:func:`jaxzip._io.contained_path` before a file is read or written under it: a
plain relative name inside its directory, with no symlink on the way, so a
tampered cache cannot make a resumed run read or write outside the output
directory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import auto as jz_auto
from jaxzip import codec as jz_codec
from jaxzip import quant as jz_quant
from jaxzip._io import atomic_write_bytes, atomic_write_json, contained_path
from jaxzip.pipeline._stage_utils import jsonable

__all__ = [
    "CACHE_DIR",
    "DONE_FILE",
    "file_digest",
    "find_complete",
    "remove_entry",
    "restore_outputs",
    "stage_dir_name",
    "stage_key",
    "store_outputs",
]

CACHE_DIR = "stages"
"""The cache's directory under the output directory."""
DONE_FILE = "done.json"
"""Written last in a stage directory; its presence (and matching key) marks it complete."""
_FORMAT = 2  # 1: params as .npz
_RAW = jz_codec.Encoding(symbols="pack")  # quick to write and read: the cache is not shipped
_FILES = "files"


def stage_key(*, index: int, name: str, depends: Any, previous: str, version: str) -> str:
    """The hex sha256 keying one stage's outputs.

    Args:
      index: the stage's 1-based position.
      name: the stage's name.
      depends: JSON-able description of what the stage's outputs depend on.
      previous: the key of the stage before it ("" for the first).
      version: the jaxzip version.

    Example:
      >>> a = stage_key(index=1, name="train", depends={"epochs": 1}, previous="", version="0")
      >>> b = stage_key(index=1, name="train", depends={"epochs": 2}, previous="", version="0")
      >>> len(a), a == b
      (64, False)
    """
    key = {
        "index": index,
        "name": name,
        "depends": depends,
        "previous": previous,
        "jaxzip": version,
    }
    return jz_auto.config_hash(jsonable(key))


def stage_dir_name(index: int, name: str, key: str) -> str:
    """``"<NN>-<name>-<first 12 hex digits of key>"``.

    Example:
      >>> stage_dir_name(3, "train", "0123456789abcdef")
      '03-train-0123456789ab'
    """
    return f"{index:02d}-{name}-{key[:12]}"


def file_digest(path: str) -> str | None:
    """sha256 hex of a file's bytes (so a stage depending on it sees it change); None if absent."""
    p = Path(path)
    if not path or not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def remove_entry(path: Path) -> None:
    """Removes a cache entry: a symlink is unlinked (never followed), a directory deleted.

    Example:
      >>> import tempfile, pathlib
      >>> d = pathlib.Path(tempfile.mkdtemp()) / "03-train-abc"
      >>> (d / "files").mkdir(parents=True)
      >>> remove_entry(d); d.exists()
      False
    """
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def find_complete(stage_dir: Path, key: str) -> dict[str, Any] | None:
    """The manifest in ``stage_dir/done.json`` if it is valid and for ``key``, else None.

    A ``stage_dir`` that is a symlink is not followed: it is never complete.
    """
    if stage_dir.is_symlink() or stage_dir.parent.is_symlink():
        return None
    try:
        manifest = json.loads((stage_dir / DONE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return None
    if manifest.get("format") != _FORMAT:
        return None
    return manifest


def _has_arrays(value: Any) -> bool:
    """Whether ``value`` holds arrays (params, masks, codebooks): stored with the codec."""
    leaves = jax.tree.leaves(value, is_leaf=jz_quant.is_quantized)
    return any(isinstance(x, jax.Array | np.ndarray) or jz_quant.is_quantized(x) for x in leaves)


def store_outputs(
    stage_dir: Path,
    *,
    key: str,
    name: str,
    updates: Mapping[str, Any],
    metrics: Mapping[str, Any],
    out_dir: Path,
    files: tuple[str, ...],
    skip: tuple[str, ...] = (),
) -> bool:
    """Writes a stage's outputs to ``stage_dir`` (replacing what is there), ``done.json`` last.

    Args:
      stage_dir: the stage's directory.
      key: its :func:`stage_key`.
      name: its name.
      updates: the run-state fields it returned.
      metrics: the metrics it returned.
      out_dir: the output directory, where it wrote ``files``.
      files: names of files it wrote to ``out_dir``; copied into ``stage_dir``.
      skip: update keys not to store (the runner rebuilds them on restore).

    Returns:
      False (and nothing left in ``stage_dir``) if an update cannot be stored:
      a function, or an array tree with a node other than dicts (string keys),
      lists and tuples.
    """
    remove_entry(stage_dir)
    outputs: dict[str, Any] = {}
    for k, value in (item for item in updates.items() if item[0] not in skip):
        if not callable(value) and not _has_arrays(value):
            outputs[k] = {"kind": "json", "value": jsonable(value)}
            continue
        try:  # bit for bit, any nesting of dicts, lists and tuples
            if callable(value):
                raise TypeError("a function")
            data = jz_codec.encode(value, encoding=_RAW, allow_nonfinite=True)
        except TypeError:  # a function, or a node the codec does not know (a custom class)
            remove_entry(stage_dir)
            return False
        atomic_write_bytes(stage_dir / f"{k}.jz", data)
        outputs[k] = {"kind": "codec", "file": f"{k}.jz"}
    for f in files:
        atomic_write_bytes(stage_dir / _FILES / f, (out_dir / f).read_bytes())
    manifest = {
        "format": _FORMAT,
        "key": key,
        "stage": name,
        "metrics": jsonable(dict(metrics)),
        "outputs": outputs,
        "files": list(files),
    }
    atomic_write_json(stage_dir / DONE_FILE, manifest)
    return True


def restore_outputs(
    stage_dir: Path, manifest: Mapping[str, Any], out_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads back what :func:`store_outputs` wrote: ``(updates, metrics)``; copies files back.

    Raises:
      ValueError, OSError: a stored file is missing or does not match its
        manifest, or a name in the manifest is not a plain relative name inside
        its directory or passes through a symlink (:class:`jaxzip._io.UnsafePathError`);
        the runner then reruns the stage. Nothing is written before every name
        has been checked.
    """
    what = str(stage_dir / DONE_FILE)
    outputs, files = manifest.get("outputs"), manifest.get("files")
    if not isinstance(outputs, dict) or not all(isinstance(e, dict) for e in outputs.values()):
        raise ValueError(f"{what}: 'outputs' must map names to entries, got {outputs!r}")
    if not isinstance(files, list):
        raise ValueError(f"{what}: 'files' must be a list of names, got {files!r}")
    targets = [contained_path(out_dir, f, what=what) for f in files]  # names the raw name
    copies = [
        (contained_path(stage_dir, f"{_FILES}/{f}", what=what), t)
        for f, t in zip(files, targets, strict=True)
    ]
    updates: dict[str, Any] = {}
    for k, entry in outputs.items():
        kind = entry.get("kind")
        if kind == "json":
            updates[k] = entry["value"]
        elif kind == "codec":
            tree = jz_codec.load(contained_path(stage_dir, entry.get("file"), what=what))
            updates[k] = jax.tree.map(  # device arrays, as the stage gave; scalars stay
                lambda x: jnp.asarray(x) if isinstance(x, np.ndarray) else x, tree
            )
        else:
            raise ValueError(f"{what}: unknown output kind {kind!r}")
    for source, target in copies:
        atomic_write_bytes(target, source.read_bytes())
    return updates, dict(manifest["metrics"])
