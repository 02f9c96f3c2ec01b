"""Tests for jaxzip/config/_schema.py: generic, hint-driven field validation."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from jaxzip import ConfigError
from jaxzip.config._schema import (
    FieldError,
    Section,
    at_least,
    below,
    between,
    coerce,
    describe_type,
    each,
    greater_than,
    matches,
    nonempty,
    rules,
    setting,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Demo(Section):
    count: int = dataclasses.field(default=1, metadata=rules(at_least(1)))
    rate: float = dataclasses.field(default=0.5, metadata=rules(between(0.0, 1.0, hi_open=True)))
    flag: bool = False
    kind: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = dataclasses.field(
        default=(2,), metadata=rules(nonempty(), each(at_least(1)))
    )
    label: str = dataclasses.field(default="x", metadata=rules(matches(r"[a-z]+", "lowercase")))

    def check(self) -> None:
        if self.count > 10 and self.flag:
            raise FieldError("flag", "false when count > 10", self.flag)


def test_defaults_and_conversions():
    d = Demo(rate=0, sizes=[3, 4])  # int -> float, list -> tuple
    assert d.rate == 0.0 and isinstance(d.rate, float)
    assert d.sizes == (3, 4)
    assert Demo() == Demo(count=1, rate=0.5, flag=False, kind="a", sizes=(2,), label="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.count = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Demo(1)  # type: ignore[misc]  # keyword-only


@pytest.mark.parametrize(
    ("kwargs", "key", "expected"),
    [
        ({"count": True}, "count", "expected an integer, got True (a boolean)"),
        ({"count": 1.0}, "count", "expected an integer, got 1.0"),
        ({"count": "3"}, "count", "expected an integer, got '3' (a string)"),
        ({"count": 0}, "count", "expected an integer >= 1, got 0"),
        ({"rate": 1.0}, "rate", "expected a number in [0.0, 1.0), got 1.0"),
        ({"rate": float("nan")}, "rate", "expected a finite number, got nan"),
        ({"rate": False}, "rate", "expected a number, got False (a boolean)"),
        ({"flag": 1}, "flag", "expected a boolean (true/false), got 1"),
        ({"kind": "c"}, "kind", "expected one of 'a', 'b', got 'c' (a string)"),
        ({"sizes": []}, "sizes", "expected a list of integers (non-empty), each >= 1, got []"),
        ({"sizes": [1, 0]}, "sizes", "each >= 1, got [1, 0] (a list)"),
        ({"sizes": [1.5]}, "sizes", "expected a list of integers, got [1.5] (a list)"),
        ({"sizes": 3}, "sizes", "expected a list of integers, got 3"),
        ({"label": "X"}, "label", "expected a string lowercase, got 'X' (a string)"),
        ({"count": 11, "flag": True}, "flag", "expected false when count > 10, got True"),
    ],
)
def test_bad_values_name_key_expected_and_given(kwargs, key, expected):
    with pytest.raises(FieldError) as info:
        Demo(**kwargs)
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert err.key == key
    assert str(err).startswith(f"{key}: ")
    assert expected in str(err)


def test_checks_by_hand():
    assert at_least(1).ok(1) and not at_least(1).ok(0)
    assert greater_than(0).ok(1e-9) and not greater_than(0).ok(0)
    assert below(2).ok(1.9) and not below(2).ok(2)
    closed, open_ = between(0, 1), between(0, 1, lo_open=True, hi_open=True)
    assert closed.ok(0) and closed.ok(1) and not open_.ok(0) and not open_.ok(1)
    assert closed.expected == "in [0, 1]" and open_.expected == "in (0, 1)"
    assert each(at_least(0)).ok(()) and not each(at_least(0)).ok((1, -1))
    assert not nonempty().ok(()) and nonempty().ok("a")


def test_coerce_and_describe():
    assert coerce(float, 3) == 3.0 and type(coerce(float, 3)) is float
    assert coerce(tuple[float, ...], [1, 2.5]) == (1.0, 2.5)
    assert coerce(int | None, None) is None
    with pytest.raises(TypeError):
        coerce(int, True)
    assert describe_type(tuple[int, ...]) == "a list of integers"
    assert describe_type(Literal["x"]) == "one of 'x'"
    with pytest.raises(TypeError, match="unsupported config type hint"):
        coerce(dict, {})


def test_setting_is_a_field_with_rules_metadata():
    bits, low = between(2, 8), at_least(3)
    f = setting(4, bits, low, doc="bits per weight")
    assert f.default == 4 and f.default_factory is dataclasses.MISSING
    assert dict(f.metadata) == rules(bits, low, doc="bits per weight")
    assert dict(setting("x").metadata) == {"checks": (), "doc": ""}
