"""Selecting leaves of parameter pytrees by path: the ``where=`` of every jaxzip function.

Example:
  >>> import jaxzip as jz
  >>> params = {"Dense_0": {"kernel": 1.0, "bias": 0.0}}
  >>> jz.paths.select(params, r".*/kernel")
  {'Dense_0': {'bias': False, 'kernel': True}}
"""

from jaxzip.paths._paths import keystr, leaf_paths, leaves_with_paths, map_with_paths
from jaxzip.paths._select import (
    all_of,
    describe,
    is_float,
    matches,
    min_ndim,
    not_,
    raise_no_match,
    select,
    selected_paths,
)

__all__ = [
    "all_of",
    "describe",
    "is_float",
    "keystr",
    "leaf_paths",
    "leaves_with_paths",
    "map_with_paths",
    "matches",
    "min_ndim",
    "not_",
    "raise_no_match",
    "select",
    "selected_paths",
]
