"""An append-only, atomically rewritten JSON-lines journal of finished trials."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxzip._errors import ConfigError
from jaxzip._io import atomic_write_text

__all__ = ["Journal", "SearchClock", "canonical_json", "config_hash"]

_FORMAT = 1


def canonical_json(obj: Any) -> str:
    """Sorted-key, compact JSON of ``obj``, NaN and Inf refused: the text jaxzip hashes.

    Example:
      >>> canonical_json({"b": (1, 2), "a": 0.5})
      '{"a":0.5,"b":[1,2]}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: Any) -> str:
    """sha256 hex digest of ``config``'s :func:`canonical_json`: jaxzip's one content hash.

    It keys journals, search trials (:func:`jaxzip.auto._common.settings_key`)
    and the stages of ``jaxzip run`` (:func:`jaxzip.pipeline._cache.stage_key`).

    Example:
      >>> config_hash({"b": 1, "a": [2]}) == config_hash({"a": [2], "b": 1})
      True
    """
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


class Journal:
    """Finished trials on disk: a header line, then one JSON object per trial.

    Line 1 is ``{"jaxzip_journal": 1, "config_hash": ..., "config": ...}``;
    every later line is a record with a string ``"key"``. Every
    :meth:`append` rewrites the whole file atomically
    (:func:`jaxzip._io.atomic_write_text`), so the file on disk always holds
    whole records. Create one with :meth:`open`.

    Example:
      >>> import tempfile, os
      >>> path = os.path.join(tempfile.mkdtemp(), "j.jsonl")
      >>> j = Journal.open(path, config={"lr": 0.1})
      >>> j.append({"key": "t1", "acc": 0.9})
      >>> Journal.open(path, config={"lr": 0.1}).get("t1")["acc"]
      0.9
    """

    def __init__(self, path: Path, config: Mapping[str, Any], records: list[dict[str, Any]]):
        self._path = path
        self._config = dict(config)
        self._hash = config_hash(config)
        self._records = records
        self._index = {r["key"]: r for r in records}

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._path

    @property
    def config_hash(self) -> str:
        """The sha256 of the config this journal belongs to."""
        return self._hash

    @property
    def records(self) -> tuple[dict[str, Any], ...]:
        """The finished trials, in the order they were appended."""
        return tuple(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def get(self, key: str) -> dict[str, Any] | None:
        """The record with ``key``, or None."""
        return self._index.get(key)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, config: Mapping[str, Any]) -> Journal:
        """Opens the journal at ``path`` for ``config``, creating it if missing.

        A torn or corrupt last line (a write cut short) is dropped with a
        warning; a corrupt line anywhere else raises.

        Args:
          path: the ``.jsonl`` file.
          config: JSON-able settings the trials depend on; its hash must match
            the existing file's.

        Raises:
          TypeError: ``config`` is not a mapping or not JSON-able.
          ConfigError: the file belongs to another config (both hashes and the
            path are named), or is not a journal, or is corrupt before its last line.
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"Journal.open: config must be a mapping, got {type(config)!r}")
        try:
            canonical_json(config)
        except (TypeError, ValueError) as e:
            raise TypeError(f"Journal.open: config must be JSON-able ({e})") from None
        p = Path(path)
        want = config_hash(config)
        if not p.exists():
            journal = cls(p, config, [])
            journal._write()
            return journal
        lines = p.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        parsed: list[Any] = []
        for i, line in enumerate(lines):
            try:
                obj = json.loads(line)
                if i > 0 and not (isinstance(obj, dict) and isinstance(obj.get("key"), str)):
                    raise ValueError("not a record with a string 'key'")
            except ValueError as e:
                if i == len(lines) - 1 and i > 0:
                    warnings.warn(f"{p}: dropped a torn last line {i + 1} ({e})", stacklevel=2)
                    break
                if i == 0:
                    raise ConfigError(f"{p}: not a jaxzip journal (line 1: {e})") from None
                raise ConfigError(f"{p}: line {i + 1} is corrupt ({e}); not resuming") from None
            parsed.append(obj)
        head = parsed[0] if parsed else None
        if not isinstance(head, dict) or head.get("jaxzip_journal") != _FORMAT:
            raise ConfigError(f"{p}: not a jaxzip journal (line 1 is not its header)")
        if head.get("config_hash") != want:
            raise ConfigError(
                f"{p}: journal belongs to another config (its config_hash "
                f"{head.get('config_hash')}, this run's {want}); use another path or remove it"
            )
        journal = cls(p, config, parsed[1:])
        if len(parsed) != len(lines):
            journal._write()  # drop the torn line on disk too
        return journal

    def append(self, record: Mapping[str, Any]) -> None:
        """Adds a finished trial and rewrites the file atomically.

        Raises:
          ValueError: ``record`` has no string ``"key"``, its key is already
            there, or it is not JSON-able (NaN included).
        """
        if not isinstance(record, Mapping) or not isinstance(record.get("key"), str):
            raise ValueError(
                f"Journal.append: record must be a mapping with a string 'key', got {record!r}"
            )
        if record["key"] in self._index:
            raise ValueError(f"Journal.append: key {record['key']!r} is already in {self._path}")
        rec = json.loads(canonical_json(dict(record)))  # a JSON-clean copy (raises on NaN)
        self._records.append(rec)
        self._index[rec["key"]] = rec
        self._write()

    def _write(self) -> None:
        head = {"jaxzip_journal": _FORMAT, "config_hash": self._hash, "config": self._config}
        lines = [canonical_json(head)] + [canonical_json(r) for r in self._records]
        atomic_write_text(self._path, "\n".join(lines) + "\n")


class SearchClock:
    """Search seconds, on the journal's clock while its records are replayed.

    A search spends its time budget on this clock. It runs with this process,
    and a record read back from the journal (:meth:`replayed`) sets it to the
    time that record was first measured at (its ``elapsed_s``; never back), so
    a resumed search makes its time-based decisions as the run it continues
    made them and has what that run left of the budget (only the time lost in
    a trial that was killed is not counted).

    Example:
      >>> clock = SearchClock()
      >>> clock.replayed({"key": "a", "elapsed_s": 500.0})
      >>> 500.0 <= clock.elapsed() < 510.0
      True
      >>> clock.replayed({"key": "b", "elapsed_s": 20.0})  # never back
      >>> clock.elapsed() >= 500.0
      True
    """

    def __init__(self) -> None:
        self._clock, self._since = 0.0, time.monotonic()

    def elapsed(self) -> float:
        """The time of the latest replayed record, plus this process's time since."""
        return self._clock + time.monotonic() - self._since

    def replayed(self, record: Mapping[str, Any]) -> None:
        """Moves the clock to ``record["elapsed_s"]`` if that is later (anything else: ignored)."""
        t = record.get("elapsed_s")
        if isinstance(t, int | float) and not isinstance(t, bool) and t > self.elapsed():
            self._clock, self._since = float(t), time.monotonic()
