"""``Checkpoint``: the one training loop's progress on disk, so a killed run resumes mid-epoch.

:func:`jaxzip.train.run_epochs` with ``checkpoint=Checkpoint(directory)`` writes,
at most every ``every_seconds`` and at each epoch's end, the loop's state (the
training state's arrays, via :func:`save_params`) and where it stands (epoch,
batch, the epoch's running metric sums, the history so far) to ``directory``.
Started again with the same arguments, it restores that point and goes on:
the shuffles and step keys derive from the key, the epoch and the state's own
step counter, so the resumed run takes the same steps and ends with the same
state as one that never stopped. When the loop ends the files are removed.

The state's arrays go to ``state-<n>.npz`` and ``loop.json`` is written after
it (both atomically): ``loop.json`` names the one complete ``.npz`` it belongs
to, so a kill between the two writes leaves the previous pair intact.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._errors import CheckpointError
from jaxzip._io import atomic_write_json, contained_path
from jaxzip.train._checkpoint import load_params, save_params

__all__ = ["Checkpoint", "LoopPoint", "LoopSaver"]

LOOP_FILE = "loop.json"
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where :func:`jaxzip.train.run_epochs` (and :func:`~jaxzip.train.fit`) keep their progress.

    Attributes:
      directory: a directory of its own (created if missing); a checkpoint of
        another run there (another key, model, dataset size, batch size or epoch
        count) is an error, not silently resumed. The optimizer's settings are not
        compared: give a run with other settings another directory (``jaxzip run``
        keys it by the config, like its stage cache).
      every_seconds: write at most this often (>= 0; 0: after every step), and at
        the end of every epoch.

    Example:
      >>> Checkpoint("runs/ckpt").every_seconds
      60.0
      >>> Checkpoint("runs/ckpt", every_seconds=-1)
      Traceback (most recent call last):
      ...
      ValueError: Checkpoint: every_seconds must be a number >= 0, got -1
    """

    directory: str | os.PathLike[str]
    every_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.directory, (str, os.PathLike)) or not str(self.directory):
            raise TypeError(
                f"Checkpoint: directory must be a non-empty path, got {self.directory!r}"
            )
        s = self.every_seconds
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s < float("inf"):
            raise ValueError(f"Checkpoint: every_seconds must be a number >= 0, got {s!r}")


class LoopPoint(NamedTuple):
    """Where a restored loop stands: the state after ``batch`` batches of epoch ``epoch``."""

    state: Any
    history: list[dict[str, Any]]
    epoch: int  # 0-based
    batch: int  # batches of that epoch already taken
    sums: dict[str, jax.Array]
    start_loss: float | None


def _check_meta(meta: Any, run: dict[str, Any]) -> None:
    """Raises ``ValueError`` unless ``meta`` has the fields and types ``tick`` writes."""
    number = (int, float)
    steps = run["n"] // run["batch_size"]
    ok = (
        isinstance(meta, dict)
        and meta.get("format") == _FORMAT
        and isinstance(meta.get("run"), dict)
        and isinstance(meta.get("state"), str)
        and type(meta.get("epoch")) is int
        and 0 <= meta["epoch"] <= run["epochs"]
        and type(meta.get("batch")) is int
        and 0 <= meta["batch"] <= steps
        and isinstance(meta.get("sums"), dict)
        and all(isinstance(v, number) for v in meta["sums"].values())
        and (meta.get("start_loss") is None or isinstance(meta["start_loss"], number))
        and isinstance(meta.get("history"), list)
        and all(isinstance(h, dict) for h in meta["history"])
    )
    if not ok:
        raise ValueError("not a loop checkpoint of this run's shape, as jaxzip writes them")


def _plain(x: Any) -> Any:
    """``x`` with NumPy / JAX scalars as Python numbers, for JSON (an ``evaluate`` may return
    them in the history's records)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, jax.Array | np.ndarray | np.generic) and np.ndim(x) == 0:
        return np.asarray(x).item()
    return x


def _placed_like(like: Any, value: Any) -> Any:
    """``value`` as a device array with ``like``'s sharding when that spans several devices (a
    mesh-sharded state stays so); else on the default device, as ``jnp.asarray`` puts it."""
    sharding = getattr(like, "sharding", None)
    if sharding is None or len(sharding.device_set) == 1:
        return jnp.asarray(value)
    return jax.device_put(value, sharding)


class LoopSaver:
    """Writes and restores one loop's :class:`LoopPoint` under a :class:`Checkpoint`."""

    def __init__(self, checkpoint: Checkpoint, like: Any, run: dict[str, Any]) -> None:
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"checkpoint: expected a Checkpoint or None, got {checkpoint!r}")
        for leaf in jax.tree.leaves(like):
            if jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
                raise TypeError(
                    "checkpoint: the training state holds a typed PRNG key leaf, which a "
                    "checkpoint cannot store; keep keys outside the state"
                )
        self.dir, self.every = Path(checkpoint.directory), float(checkpoint.every_seconds)
        self.like = like
        shapes = [
            [list(np.shape(x)), str(x.dtype if hasattr(x, "dtype") else np.result_type(x))]
            for x in jax.tree.leaves(like)
        ]
        self.run = {**run, "leaves": shapes}  # what must match for a checkpoint to resume
        self.last = time.monotonic()

    def restore(self) -> LoopPoint | None:
        """The saved point, or None when there is none.

        Raises:
          CheckpointError: the checkpoint is of another run, or its files are damaged.
        """
        meta_path = self.dir / LOOP_FILE
        if not meta_path.is_file():
            return None
        what = f"checkpoint {str(meta_path)!r}"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            _check_meta(meta, self.run)
            npz = contained_path(self.dir, meta["state"], what=what)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{what}: unreadable ({e}); delete it to start over") from e
        run = meta["run"]
        if run != json.loads(json.dumps(self.run)):
            diff = sorted(k for k in {*run, *self.run} if run.get(k) != self.run.get(k))
            raise CheckpointError(
                f"{what}: a checkpoint of another training run (it differs in {diff}); "
                "delete the directory to start over, or give this run its own"
            )
        try:
            state = load_params(npz, self.like)
        except FileNotFoundError as e:
            raise CheckpointError(f"{what}: {e}; delete it to start over") from e
        state = jax.tree.map(_placed_like, self.like, state)  # on the devices it was on
        sums = {k: jnp.float32(v) for k, v in meta["sums"].items()}
        return LoopPoint(
            state, meta["history"], meta["epoch"], meta["batch"], sums, meta["start_loss"]
        )

    def tick(self, point: LoopPoint, *, force: bool = False) -> None:
        """Saves ``point`` if ``every_seconds`` have passed since the last save (or ``force``)."""
        if not force and time.monotonic() - self.last < self.every:
            return
        step = f"{point.epoch}-{point.batch}"
        name = f"state-{step}.npz"
        save_params(self.dir / name, jax.device_get(point.state))
        meta = {
            "format": _FORMAT,
            "run": self.run,
            "state": name,
            "epoch": point.epoch,
            "batch": point.batch,
            "sums": {k: float(v) for k, v in point.sums.items()},
            "start_loss": point.start_loss,
            "history": _plain(point.history),
        }
        atomic_write_json(self.dir / LOOP_FILE, meta)  # the commit point
        for old in self.dir.glob("state-*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)
        self.last = time.monotonic()

    def clear(self) -> None:
        """Removes the checkpoint's files (the loop has ended)."""
        (self.dir / LOOP_FILE).unlink(missing_ok=True)
        for old in self.dir.glob("state-*.npz"):
            old.unlink(missing_ok=True)
