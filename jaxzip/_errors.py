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


class CheckpointError(JaxzipError, ValueError):
    """A params file (``train.load_params``) is unreadable or does not match the
    expected params: a path missing or extra, or a shape or dtype that differs."""


class NonFiniteError(JaxzipError, ValueError):
    """Params, gradients or a loss hold NaN or Inf where finite numbers are required.

    A ``ValueError`` (not ``FloatingPointError``) because it is raised at a
    boundary, about values the caller passed in or a step produced from them,
    like every other bad-input error of jaxzip (``except ValueError`` keeps
    working where the quantizers raised a plain ``ValueError`` before).

    Attributes:
      paths: the ``/``-joined paths of every offending leaf (all of them, not only
        the few the message names).
      state: where a train loop stopped, the last finite state; otherwise None.
    """

    def __init__(self, message: str, *, paths: tuple[str, ...] = (), state: object = None):
        super().__init__(message)
        self.paths = tuple(paths)
        self.state = state


class DivergedError(NonFiniteError):
    """A training loss that stayed finite but exploded (see :func:`jaxzip.train.run_epochs`'s
    ``max_loss_growth``): a diverged run, refused like a non-finite one.

    Attributes:
      paths: empty (no leaf is NaN or Inf).
      state: the state after the epoch that diverged.
    """


class UnsafePathError(JaxzipError, ValueError):
    """A name read from a file would leave its directory, or pass through a symlink."""


class DirectoryLockedError(JaxzipError, RuntimeError):
    """Another jaxzip process holds the output directory's lock.

    Attributes:
      pid: the holder's process id as it wrote it in the lock file, or None if unreadable.
    """

    def __init__(self, message: str, *, pid: int | None = None):
        super().__init__(message)
        self.pid = pid
