"""Reading, overriding and writing experiment configs (TOML <-> dataclasses)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
import sys
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from jaxzip._errors import ConfigError
from jaxzip._io import atomic_write_text
from jaxzip.config._experiment import ExperimentConfig
from jaxzip.config._schema import FieldError, Section, _optional_arg, describe_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_override",
    "save_config",
]

DEFAULT_CONFIG_NAME = "default.toml"
"""The config packaged with jaxzip (``jaxzip/config/default.toml``), used when none is given."""

S = TypeVar("S", bound=Section)


def _section_type(hint: Any) -> type[Section] | None:
    """The Section class a hint names (directly or as ``X | None``), else ``None``."""
    inner = _optional_arg(hint)
    target = hint if inner is None else inner
    if isinstance(target, type) and issubclass(target, Section):
        return target
    return None


def _unknown_key_message(key: str, prefix: str, cls: type[Section]) -> str:
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    if not prefix:  # top level: the keys are section names
        what, known = f"unknown section [{key}]", ", ".join(f"[{n}]" for n in names)
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        for n in names:
            sub = _section_type(hints[n])
            if not hint and sub and key in {f.name for f in dataclasses.fields(sub)}:
                hint = f"; did you mean {key!r} under [{n}]?"
        return f"{what} (known sections: {known}){hint}"
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {prefix}{close[0]!s}?" if close else ""
    return f"unknown key (known keys of [{prefix[:-1]}]: {', '.join(names)}){hint}"


def config_from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "config",
    cls: type[S] = ExperimentConfig,  # type: ignore[assignment]
    locate: Callable[[str], str] | None = None,
    _prefix: str = "",
) -> S:
    """Builds and validates a config dataclass from nested mappings (a parsed TOML file).

    Args:
      data: ``{"section": {"key": value}}``; absent keys take their defaults.
      source: where ``data`` came from (a file name), named in error messages.
      cls: the dataclass to build; sections nest by their type hints.
      locate: maps a dotted key (``"train.epochs"``) to how errors name it;
        default ``"<source>: <key>"``.

    Returns:
      The validated config.

    Raises:
      ConfigError: for data that is not a mapping, an unknown section or key
        (with a suggestion), a value of the wrong type, or one out of range; the
        message names the source, the key, what was expected and what was given.

    Example:
      >>> config_from_dict({"train": {"epochs": 2}}).train.epochs
      2
      >>> config_from_dict({"train": {"epoch": 2}}, source="x.toml")
      Traceback (most recent call last):
      ...
      jaxzip._errors.ConfigError: x.toml: train.epoch: unknown key (known keys of [train]: epochs, batch_size, optimizer, learning_rate, schedule, warmup_epochs, weight_decay, momentum, eval_batch_size, augment_shift, clip_norm); did you mean train.epochs?
    """
    where = locate or (lambda key: f"{source}: {key}")
    if not isinstance(data, Mapping):
        what = f"[{_prefix[:-1]}]" if _prefix else "{section: {key: value}}"
        raise ConfigError(
            f"{source}: expected a table (a mapping such as {what}), "
            f"got {type(data).__name__} {describe_value(data)}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{_prefix}{key}"
        if key not in names:
            raise ConfigError(f"{where(full)}: {_unknown_key_message(key, _prefix, cls)}")
        sub = _section_type(hints[key])
        if sub is None:
            kwargs[key] = value
        elif isinstance(value, Mapping):
            kwargs[key] = config_from_dict(
                value, source=source, cls=sub, locate=where, _prefix=f"{full}."
            )
        else:
            raise ConfigError(
                f"{where(full)}: expected a table [{full}], got {describe_value(value)}"
            )
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(f"{where(_prefix + e.key)}: {e.detail}") from None


MAX_CONFIG_BYTES = 1 << 20
"""The largest config file :func:`load_config` reads (1 MiB; real configs are a few KB)."""


def load_config(path: str | os.PathLike[str] | None = None) -> ExperimentConfig:
    """Reads and validates an experiment config TOML file.

    Args:
      path: the TOML file; ``None`` loads the default packaged with jaxzip
        (``jaxzip/config/default.toml``).

    Returns:
      The validated :class:`ExperimentConfig`; keys the file omits keep their defaults.

    Raises:
      ConfigError: the file is missing, not a regular file, larger than
        :data:`MAX_CONFIG_BYTES`, unreadable, not valid TOML (nesting too deep
        included), or holds an unknown key or a bad value (the message names
        the file and key).

    Example:
      >>> load_config().data.name
      'digits'
    """
    if path is None:
        resource = importlib.resources.files("jaxzip.config") / DEFAULT_CONFIG_NAME
        source, raw = f"<packaged {DEFAULT_CONFIG_NAME}>", resource.read_bytes()
    else:
        source = os.fspath(path)
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{source}: config file not found")
        if p.is_dir():
            raise ConfigError(f"{source}: expected a TOML config file, got a directory")
        if not p.is_file():
            raise ConfigError(
                f"{source}: expected a regular TOML config file, got a device, pipe or socket"
            )
        try:
            with p.open("rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"{source}: cannot read config file: {e.strerror or e}") from None
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{source}: a config file is at most {MAX_CONFIG_BYTES:,} bytes; this one is larger"
            )
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid TOML: tables or arrays nested too deeply") from None
    return config_from_dict(data, source=source)


def parse_override(text: str) -> tuple[str, Any]:
    """Splits ``"section.key=value"`` into the dotted key and the value parsed as TOML.

    The value is read as a TOML value (``3``, ``1e-3``, ``true``, ``[64, 32]``,
    ``"x"``); anything that is not valid TOML is taken as a bare string.

    Args:
      text: one ``--set`` argument.

    Returns:
      ``(dotted_key, value)``.

    Raises:
      ConfigError: ``text`` is not of the form ``SECTION.KEY=VALUE``.
      TypeError: ``text`` is not a string.

    Example:
      >>> parse_override("model.widths=[64, 32]")
      ('model.widths', [64, 32])
      >>> parse_override("data.name=mnist")
      ('data.name', 'mnist')
    """
    if not isinstance(text, str):
        raise TypeError(
            f"--set: expected a string SECTION.KEY=VALUE (e.g. 'train.epochs=3'), "
            f"got {type(text).__name__} {text!r}"
        )
    key, sep, value = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or len(parts) < 2 or not all(p.strip() for p in parts):
        raise ConfigError(
            f"--set {text!r}: expected SECTION.KEY=VALUE (e.g. train.epochs=3), got {text!r}"
        )
    try:
        parsed = tomllib.loads(f"v = {value}")
    except tomllib.TOMLDecodeError:
        return key, value
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deeply") from None
    if set(parsed) != {"v"}:  # e.g. a value with a newline smuggling in another key
        return key, value
    return key, parsed["v"]


def apply_overrides(cfg: ExperimentConfig, overrides: Iterable[str]) -> ExperimentConfig:
    """Returns ``cfg`` with ``"section.key=value"`` overrides applied and validated.

    Args:
      cfg: the config to start from.
      overrides: ``--set`` arguments, applied in order (a later one wins).

    Returns:
      A new validated config.

    Raises:
      ConfigError: a malformed override, an unknown section or key, or a bad
        value; the message names ``--set section.key``.
      TypeError: ``cfg`` is not an :class:`ExperimentConfig`, or ``overrides`` is
        a single string rather than a list of them.

    Example:
      >>> cfg = apply_overrides(load_config(), ["train.epochs=3", "model.name=mlp"])
      >>> cfg.train.epochs, cfg.model.name
      (3, 'mlp')
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(
            f"apply_overrides: cfg must be an ExperimentConfig, got {type(cfg).__name__}"
        )
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, Iterable):
        raise TypeError(
            "apply_overrides: overrides must be a list of 'SECTION.KEY=VALUE' strings "
            f"(e.g. ['train.epochs=3']), got {type(overrides).__name__} {overrides!r}"
        )
    data = config_to_dict(cfg)
    origin: set[str] = set()
    for text in overrides:
        key, value = parse_override(text)
        *parents, leaf = key.split(".")
        node = data
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                inner = ".".join(parents[: i + 1])
                raise ConfigError(f"--set {key}: {inner} is a value, not a section")
            node = child
        node[leaf] = value
        origin.add(key)

    def locate(key: str) -> str:
        for o in origin:  # the override that set this key or made this (unknown) section
            if o == key or o.startswith(key + "."):
                return f"--set {o}"
        return f"{key} (after --set overrides)"

    return config_from_dict(data, source="--set", locate=locate)


def config_to_dict(cfg: Section) -> dict[str, Any]:
    """The config as nested plain dicts (tuples as lists; absent optional sections omitted).

    Example:
      >>> config_to_dict(load_config())["train"]["optimizer"]
      'adam'
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        if value is None:
            continue
        if isinstance(value, Section):
            value = config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def dump_config(cfg: ExperimentConfig) -> str:
    """The config as TOML text; :func:`load_config` of it gives an equal config.

    Example:
      >>> print(dump_config(load_config()).splitlines()[2])
      [experiment]
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"dump_config: cfg must be an ExperimentConfig, got {type(cfg).__name__}")
    header = "# Resolved jaxzip experiment config (every setting, defaults included).\n\n"
    return header + tomli_w.dumps(config_to_dict(cfg))


def save_config(path: str | os.PathLike[str], cfg: ExperimentConfig) -> None:
    """Writes :func:`dump_config` of ``cfg`` to ``path`` atomically.

    Raises:
      TypeError: ``cfg`` is not an :class:`ExperimentConfig`.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError(f"save_config: cfg must be an ExperimentConfig, got {type(cfg).__name__}")
    atomic_write_text(path, dump_config(cfg))
