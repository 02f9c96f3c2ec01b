"""Field factories and checks that more than one config section declares.

A section field is ``setting(default, *checks, doc=...)``; where
several sections hold a field of the same meaning (an output file, a ``where``
regex, calibration sizes, the description of a network), it is made here once, so
its rules (and, where the sections agree, its default and doc) live in one place.
``[model]`` and the ``[distill]`` student describe a network alike: their widths,
dropout rates and transformer sizes come from :func:`widths_field`,
:func:`dropout_field` and :func:`transformer_fields`, checked together by
:func:`check_model_fields`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from jaxzip.config._schema import (
    Check,
    FieldError,
    at_least,
    between,
    each,
    greater_than,
    matches,
    nonempty,
    setting,
)

__all__ = [
    "TRANSFORMER_FIELDS",
    "calibration_fields",
    "check_model_fields",
    "distill_alpha_field",
    "distill_temperature_field",
    "dropout_field",
    "output_file",
    "regex_field",
    "transformer_fields",
    "where_field",
    "widths_field",
    "zero_or_bits",
]


def file_name() -> Check:
    """A plain file name in the output directory: letters, digits, '.', '_', '-'."""
    return matches(r"[A-Za-z0-9][A-Za-z0-9._-]*", "(a file name of letters, digits, '.', '_', '-')")


def output_file(default: str) -> Any:
    """The ``file`` field of a section that writes one file into the output directory."""
    return setting(default, file_name(), doc="file name in the output directory")


def _is_regex(value: Any) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _valid_regex() -> Check:
    return Check("(a valid regular expression)", _is_regex)


def regex_field(default: str, doc: str) -> Any:
    """A field holding a valid, nonempty regex (of param paths)."""
    return setting(default, nonempty(), _valid_regex(), doc=doc)


def where_field(verb: str) -> Any:
    """The ``where`` field of a section: a valid, nonempty regex of the weights to ``verb``."""
    return regex_field(
        ".*/kernel", f'weights to {verb}: regex full-matching paths like "Dense_0/kernel"'
    )


def distill_alpha_field(step: str, training: str) -> Any:
    """The ``distill_alpha`` field of a section whose ``training`` may distill from the model
    before its ``step`` (the weight of :func:`jaxzip.distill.kd_loss`'s soft term)."""
    return setting(
        0.0,
        between(0.0, 1.0),
        doc=f"weight of distillation from the model before {step} in the {training} loss "
        "(0: labels only)",
    )


def distill_temperature_field() -> Any:
    """The ``distill_temperature`` field beside :func:`distill_alpha_field`."""
    return setting(4.0, greater_than(0.0), doc="softmax temperature of that distillation term")


def zero_or_bits() -> Check:
    """0 (the leaves stay float32) or a bit width in [2, 8]."""
    return Check("0 or in [2, 8]", lambda v: v == 0 or 2 <= v <= 8)


def calibration_fields(method: str) -> tuple[Any, Any]:
    """The ``calibration_examples`` and ``calibration_batch_size`` fields of a section whose
    ``method`` (in words) reads training examples for its calibration statistics."""
    return (
        setting(128, at_least(1), doc=f"training examples {method} calibrates on"),
        setting(16, at_least(1), doc=f"examples per calibration batch ({method})"),
    )


def widths_field(default: tuple[int, ...], doc: str) -> Any:
    """The ``widths`` field of a section describing a network: its ``"mlp"`` hidden widths."""
    return setting(default, nonempty(), each(at_least(1)), doc=doc)


def dropout_field(doc: str) -> Any:
    """A dropout rate field of a section describing a network: in [0, 1), 0 by default."""
    return setting(0.0, between(0.0, 1.0, hi_open=True), doc=doc)


TRANSFORMER_FIELDS = ("num_layers", "d_model", "num_heads", "mlp_ratio")
"""The fields only a ``"transformer"`` takes (``[model]``, the ``[distill]`` student)."""


def transformer_fields() -> tuple[Any, Any, Any, Any]:
    """The :data:`TRANSFORMER_FIELDS` of a section that may describe a transformer, in
    that order, with their defaults (the reference model's) and rules."""
    return (
        setting(4, between(1, 256), doc='decoder blocks ("transformer")'),
        setting(192, between(1, 65536), doc='residual width ("transformer")'),
        setting(4, at_least(1), doc='attention heads, dividing d_model ("transformer")'),
        setting(4, between(1, 64), doc='MLP width / d_model ("transformer")'),
    )


def check_model_fields(section: Any, model: str, what: str) -> None:
    """Raises ``FieldError`` where a field of ``section`` (``[model]`` or the ``[distill]``
    student, called ``what`` in messages) does not fit its network ``model``: a dropout rate
    it does not have (:func:`check_dropout`), a transformer size set for another model or
    ``num_heads`` not dividing ``d_model`` (:func:`check_transformer_fields`)."""
    check_dropout(model, section.dropout_rate, what)
    check_dropout(model, section.input_dropout_rate, what, "input_dropout_rate")
    check_transformer_fields(section, model, what)


def check_dropout(model: str, rate: float, what: str, name: str = "dropout_rate") -> None:
    """Raises ``FieldError`` for a nonzero dropout rate (field ``name``) on a model
    without dropout (``"mlp"`` has both rates, ``"transformer"`` ``dropout_rate``)."""
    has = ("mlp", "transformer") if name == "dropout_rate" else ("mlp",)
    if model not in has and rate != 0.0:
        only = " and ".join(f'"{m}"' for m in has) + (" have" if len(has) > 1 else " has")
        raise FieldError(name, f"0.0 for {what} {model!r} (only {only} dropout)", rate)


def check_transformer_fields(section: Any, model: str, what: str) -> None:
    """Raises ``FieldError`` for a transformer field of ``section`` set while its ``model``
    is another one, or for ``num_heads`` not dividing ``d_model``."""
    if model == "transformer":
        if section.d_model % section.num_heads:
            raise FieldError(
                "num_heads", f"a divisor of d_model = {section.d_model}", section.num_heads
            )
        return
    for f in dataclasses.fields(section):
        if f.name in TRANSFORMER_FIELDS and getattr(section, f.name) != f.default:
            raise FieldError(
                f.name,
                f'{f.default} for {what} {model!r} (only "transformer" takes it)',
                getattr(section, f.name),
            )
