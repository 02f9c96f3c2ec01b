"""Tests for jaxzip/pipeline/_state.py: the typed run state the stages read and write."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jaxzip.config._plan import STAGE_SPECS
from jaxzip.pipeline import RunState
from jaxzip.pipeline._stages import named_stage
from jaxzip.pipeline._state import OUTPUTS


def test_updated_sets_fields_and_leaves_the_original():
    s = RunState(out_dir=Path("o"), progress=False)
    t = s.updated({"params": {"w": 1}, "mask": {"w": True}})
    assert (t.params, t.mask, t.progress, t.out_dir) == ({"w": 1}, {"w": True}, False, Path("o"))
    assert s.params is None and s.mask is None and s.reports == {} == t.reports
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.params = None  # type: ignore[misc]


@pytest.mark.parametrize("name", ["b_report", "out_dir", "progress", "results"])
def test_only_stage_fields_can_be_set(name):
    with pytest.raises(ValueError, match=f"{name!r} is not a field a stage can set"):
        RunState(out_dir=Path("o")).updated({name: 1})


def test_every_named_stage_reads_and_writes_run_state_fields():
    for name, spec in STAGE_SPECS.items():
        assert set(spec.needs) | set(spec.provides) <= OUTPUTS, name
        stage = named_stage(name)
        assert (stage.needs, stage.provides) == (spec.needs, spec.provides)


def test_config_names_live_in_jaxzip_config_only():
    import jaxzip as jz

    assert jz.config.load_config is not None
    with pytest.raises(AttributeError, match="load_config"):
        jz.pipeline.load_config  # noqa: B018 - no alias kept for the old name (STYLE 6)
