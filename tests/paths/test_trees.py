"""Tests for jaxzip/paths/_trees.py: naming where two trees differ."""

from __future__ import annotations

import numpy as np

from jaxzip.paths._trees import first_structure_difference

NAMES = ("the model", "the file")


def test_first_structure_difference_names_the_trees_when_asked():
    model = {"a": np.zeros((2, 3)), "b": np.zeros(3)}
    assert first_structure_difference(model, model, NAMES) is None
    shape = {"a": np.zeros((2, 4)), "b": np.zeros(3)}
    assert first_structure_difference(model, shape, NAMES) == (
        "at path 'a': shape (2, 3) in the model, (2, 4) in the file"
    )
    assert first_structure_difference(model, shape) == "at path 'a': shape (2, 3) vs (2, 4)"
    short = {"a": np.zeros((2, 3))}
    assert first_structure_difference(model, short, NAMES) == ("path 'b' exists only in the model")
    assert first_structure_difference(short, model, NAMES) == "path 'b' exists only in the file"
    assert first_structure_difference(short, model) == "path 'b' exists in only one tree"
    other = {"c": np.zeros((2, 3)), "b": np.zeros(3)}
    assert first_structure_difference(model, other, NAMES) == (
        "path 'a' in the model faces path 'b' in the file"
    )
