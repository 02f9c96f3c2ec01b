"""The one error type the codec raises for a malformed compressed file."""

from __future__ import annotations

from jaxzip._errors import JaxzipError


class FormatError(JaxzipError, ValueError):
    """A compressed file is truncated, corrupt, too new, or declares impossible sizes.

    Example:
      >>> issubclass(FormatError, ValueError)
      True
    """
