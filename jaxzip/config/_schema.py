"""Generic validation of config dataclasses from their fields and type hints.

A config section is a frozen, keyword-only dataclass deriving from
:class:`Section`. Each field's type hint says what a value must be (``int``,
``float``, ``bool``, ``str``, ``Literal[...]``, ``tuple[T, ...]``); range
checks sit next to the field, declared with :func:`setting` (or :func:`rules` in the field's
metadata). Nothing here knows any particular section, so a new section is just a new dataclass.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from jaxzip._errors import ConfigError

__all__ = [
    "Check",
    "FieldError",
    "Section",
    "at_least",
    "below",
    "between",
    "each",
    "greater_than",
    "matches",
    "nonempty",
    "rules",
    "setting",
]


class FieldError(ConfigError):
    """A config field holds a bad value; knows the field's ``key``, ``expected`` and ``given``."""

    def __init__(self, key: str, expected: str, given: Any) -> None:
        self.key = key
        self.expected = expected
        self.given = given
        super().__init__(f"{key}: {self.detail}")

    @property
    def detail(self) -> str:
        """``"expected X, got Y"`` without the key."""
        return f"expected {self.expected}, got {describe_value(self.given)}"


class HintedFieldError(FieldError):
    """A :class:`FieldError` whose message ends with a hint in parentheses."""

    def __init__(self, key: str, expected: str, given: Any, hint: str) -> None:
        self.hint = hint
        super().__init__(key, expected, given)

    @property
    def detail(self) -> str:
        return f"{super().detail} ({self.hint})"


class SectionError(FieldError):
    """A section the rest of the config rules out; the message is ``<section>: <why>``."""

    def __init__(self, key: str, why: str) -> None:
        self.why = why
        super().__init__(key, why, None)

    @property
    def detail(self) -> str:
        return self.why


@dataclasses.dataclass(frozen=True)
class Check:
    """A range check on a field's value: ``ok(value)`` and what it expects, in words."""

    expected: str
    ok: Callable[[Any], bool]


def at_least(lo: float) -> Check:
    """Value ``>= lo``."""
    return Check(f">= {lo}", lambda v: v >= lo)


def greater_than(lo: float) -> Check:
    """Value ``> lo``."""
    return Check(f"> {lo}", lambda v: v > lo)


def below(hi: float) -> Check:
    """Value ``< hi``."""
    return Check(f"< {hi}", lambda v: v < hi)


def between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Check:
    """Value in the interval from ``lo`` to ``hi`` (closed unless ``*_open``)."""
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")

    def ok(v: Any) -> bool:
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Check(f"in {left}{lo}, {hi}{right}", ok)


def nonempty() -> Check:
    """A non-empty string or tuple."""
    return Check("(non-empty)", lambda v: len(v) > 0)


def matches(pattern: str, words: str) -> Check:
    """A string full-matching the regex ``pattern``, described as ``words``."""
    compiled = re.compile(pattern)
    return Check(words, lambda v: compiled.fullmatch(v) is not None)


def each(check: Check) -> Check:
    """Every element of a tuple passes ``check``."""
    return Check(f"each {check.expected}", lambda v: all(check.ok(x) for x in v))


def rules(*checks: Check, doc: str = "") -> dict[str, Any]:
    """Field metadata declaring a config field's range checks and meaning.

    Use as ``dataclasses.field(default=..., metadata=rules(...))`` on a
    :class:`Section` field (:func:`setting` says that in one call); the type comes
    from the field's type hint.

    Args:
      *checks: range checks the (type-checked) value must pass.
      doc: what the field means, in a few words.

    Returns:
      The metadata mapping ``{"checks": checks, "doc": doc}``.

    Example:
      >>> import dataclasses
      >>> @dataclasses.dataclass(frozen=True, kw_only=True)
      ... class Demo(Section):
      ...     epochs: int = dataclasses.field(default=3, metadata=rules(at_least(1)))
      >>> Demo(epochs=0)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: epochs: expected an integer >= 1, got 0
    """
    return {"checks": checks, "doc": doc}


def setting(default: Any, *checks: Check, doc: str = "") -> Any:
    """A config field with its default, range checks and meaning, on one line.

    Shorthand for ``dataclasses.field(default=default, metadata=rules(*checks, doc=doc))``
    on a :class:`Section` field; the type comes from the field's type hint. A field
    that needs ``default_factory`` (or any other ``dataclasses.field`` argument) uses
    ``dataclasses.field`` with :func:`rules` instead.

    Args:
      default: the field's value when a config does not set it.
      *checks: range checks the (type-checked) value must pass.
      doc: what the field means, in a few words.

    Returns:
      A ``dataclasses.Field`` holding ``default`` and the metadata of :func:`rules`.

    Example:
      >>> import dataclasses
      >>> @dataclasses.dataclass(frozen=True, kw_only=True)
      ... class Demo(Section):
      ...     bits: int = setting(4, between(2, 8), doc="bits per weight")
      >>> Demo().bits
      4
      >>> Demo(bits=9)
      Traceback (most recent call last):
      ...
      jaxzip.config._schema.FieldError: bits: expected an integer in [2, 8], got 9
    """
    return dataclasses.field(default=default, metadata=rules(*checks, doc=doc))


def describe_value(value: Any) -> str:
    """``repr`` of a value plus its TOML-ish kind when that helps (``'3' (a string)``)."""
    kind = {bool: "a boolean", str: "a string", list: "a list", tuple: "a list", dict: "a table"}
    for t, words in kind.items():
        if type(value) is t:
            return f"{value!r} ({words})"
    return repr(value)


def describe_type(hint: Any) -> str:
    """Words for what a type hint accepts (``"an integer"``, ``"one of 'a', 'b'"``)."""
    origin = typing.get_origin(hint)
    if hint is bool:
        return "a boolean (true/false)"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_plural(describe_type(typing.get_args(hint)[0]))}"
    if _optional_arg(hint) is not None:
        return describe_type(_optional_arg(hint))
    if isinstance(hint, type) and issubclass(hint, Section):
        return f"a table of {hint.__name__} settings"
    raise TypeError(f"unsupported config type hint {hint!r}")


def _plural(words: str) -> str:
    for article in ("an ", "a "):
        if words.startswith(article):
            head, _, tail = words[len(article) :].partition(" ")
            return f"{head}s {tail}".rstrip()
    return words


def _optional_arg(hint: Any) -> Any:
    """``T`` for a hint ``T | None``, else ``None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def coerce(hint: Any, value: Any) -> Any:
    """Returns ``value`` converted to the type ``hint`` describes, or raises ``TypeError``.

    Conversions are only the lossless ones a TOML file needs: an ``int`` where
    a ``float`` is expected, a ``list`` where a tuple is expected. ``bool`` is
    never accepted as a number.
    """
    origin = typing.get_origin(hint)
    if hint is bool:
        if type(value) is bool:
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
    elif origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported config type hint {hint!r}; use tuple[T, ...]")
        if isinstance(value, list | tuple):
            return tuple(coerce(args[0], v) for v in value)
    elif _optional_arg(hint) is not None:
        return None if value is None else coerce(_optional_arg(hint), value)
    elif isinstance(hint, type) and issubclass(hint, Section):
        if isinstance(value, hint):
            return value
    else:
        raise TypeError(f"unsupported config type hint {hint!r}")
    raise TypeError(describe_type(hint))


class Section:
    """Base of config sections: validates every field on construction.

    Subclasses are ``@dataclasses.dataclass(frozen=True, kw_only=True)``. Each
    value is converted and type-checked against its hint (:func:`coerce`), then
    run through the field's checks (:func:`setting`, :func:`rules`); then :meth:`check` runs
    for rules that involve several fields.

    Raises:
      FieldError: (a ``ConfigError``) naming the field, what was expected and
        what was given.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            hint = hints[f.name]
            raw = getattr(self, f.name)
            try:
                value = coerce(hint, raw)
            except TypeError:
                expected = describe_type(hint)
                if isinstance(raw, float) and not math.isfinite(raw):
                    expected = "a finite number"
                raise FieldError(f.name, expected, raw) from None
            checks: tuple[Check, ...] = f.metadata.get("checks", ())
            for c in checks:
                if value is not None and not c.ok(value):
                    expected = describe_type(hint) + " " + ", ".join(x.expected for x in checks)
                    raise FieldError(f.name, expected, raw)
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field rules; override and raise :class:`FieldError`. The default does nothing."""
