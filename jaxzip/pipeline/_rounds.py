"""A stage's finished rounds on disk, so a killed stage resumes after the last one it finished.

The prune stage prunes and retrains ``prune.rounds`` times; each round's training
checkpoints itself (``checkpoint_in``), and :class:`RoundSaver` keeps what the
finished rounds left: the trees the next round starts from (``round-<r>.npz``,
through :func:`jaxzip.train.save_params`) and the records and metrics so far in
``rounds.json``, written after the ``.npz`` (both atomically), so a kill between
the two leaves the previous pair whole. The files live in the stage's scratch
directory, which storing the stage removes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from jaxzip import train as jz_train
from jaxzip._errors import CheckpointError
from jaxzip._io import atomic_write_json, contained_path

ROUNDS_FILE = "rounds.json"
_FORMAT = 1


class Rounds(NamedTuple):
    """What the first ``done`` rounds left: the trees, the per-round records, the metrics."""

    done: int
    trees: dict[str, Any]
    records: list[dict[str, Any]]
    metrics: dict[str, Any]


class RoundSaver:
    """Saves and restores :class:`Rounds` in ``directory`` (None: nothing is kept)."""

    def __init__(self, directory: Path | None, total: int) -> None:
        self.dir, self.total = directory, total

    def restore(self, like: dict[str, Any]) -> Rounds | None:
        """The saved rounds, with their trees read against ``like``'s shapes; None if none.

        Raises:
          CheckpointError: the files are damaged or of trees of other shapes.
        """
        if self.dir is None or not (self.dir / ROUNDS_FILE).is_file():
            return None
        what = f"round checkpoint {str(self.dir / ROUNDS_FILE)!r}"
        try:
            meta = json.loads((self.dir / ROUNDS_FILE).read_text(encoding="utf-8"))
            ok = (
                isinstance(meta, dict)
                and meta.get("format") == _FORMAT
                and meta.get("total") == self.total
                and type(meta.get("done")) is int
                and 1 <= meta["done"] <= self.total
                and isinstance(meta.get("records"), list)
                and len(meta["records"]) == meta["done"]
                and all(isinstance(r, dict) for r in meta["records"])
                and isinstance(meta.get("metrics"), dict)
                and isinstance(meta.get("trees"), str)
            )
            if not ok:
                raise ValueError("not a round checkpoint of this stage, as jaxzip writes them")
            trees = jz_train.load_params(contained_path(self.dir, meta["trees"], what=what), like)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{what}: unreadable ({e}); delete it to start over") from e
        return Rounds(meta["done"], trees, meta["records"], meta["metrics"])

    def save(self, rounds: Rounds) -> None:
        """Writes ``rounds`` (its records and metrics must be JSON-ready)."""
        if self.dir is None:
            return
        name = f"round-{rounds.done}.npz"
        jz_train.save_params(self.dir / name, rounds.trees)
        meta = {
            "format": _FORMAT,
            "total": self.total,
            "done": rounds.done,
            "trees": name,
            "records": rounds.records,
            "metrics": rounds.metrics,
        }
        atomic_write_json(self.dir / ROUNDS_FILE, meta)  # the commit point
        for old in self.dir.glob("round-*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)
