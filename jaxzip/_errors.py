"""The exceptions jaxzip raises for bad input.

Every user-facing error is a :class:`JaxzipError`; most also derive from the
built-in type a Python user would expect (``ValueError``), so either can be
caught. The CLI turns any of them into one line on stderr and exit status 2.
"""

from __future__ import annotations


class JaxzipError(Exception):
    """Base class of jaxzip's own errors."""


class ConfigError(JaxzipError, ValueError):
    """An experiment config is missing, malformed, or holds a bad value."""


class DataError(JaxzipError, ValueError):
    """A dataset file is missing, corrupt, or fails its checksum."""
