"""Token windows: a language model's examples, cut from byte-level text.

A window of ``T`` tokens is labelled with the ``T`` bytes that follow each of
its positions (next-token prediction). :func:`eval_windows` tiles held-out
text deterministically; :func:`sample_windows` draws training or calibration
windows at random offsets from a key.
"""

from __future__ import annotations

import dataclasses
import operator

import jax
import numpy as np

from jaxzip._errors import DataError
from jaxzip._keys import check_key
from jaxzip.data._dataset import freeze

__all__ = ["BYTE_VOCAB", "TokenWindows", "eval_windows", "sample_windows"]

BYTE_VOCAB = 256
"""The vocabulary of byte-level text: one token per byte value."""


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class TokenWindows:
    """Sequence examples: ``x`` tokens ``(N, T)`` and next-token labels ``y`` ``(N, T)``.

    Both are int32 in ``[0, vocab_size)`` and stored as read-only views.
    :func:`jaxzip.train.evaluate` takes these as it takes a :class:`Dataset`.

    Raises:
      TypeError: ``x`` or ``y`` is not a numpy int32 array.
      DataError: the shapes differ, are not ``(N, T)`` with ``T >= 1``, or a
        token lies outside the vocabulary.

    Example:
      >>> w = TokenWindows(x=np.array([[1, 2]], np.int32), y=np.array([[2, 3]], np.int32),
      ...                  vocab_size=4, name="toy")
      >>> len(w), w
      (1, TokenWindows(name='toy', n=1, seq_len=2, vocab_size=4))
    """

    x: np.ndarray
    y: np.ndarray
    vocab_size: int
    name: str

    def __post_init__(self) -> None:
        where = f"TokenWindows {self.name!r}"
        for field in ("x", "y"):
            value = getattr(self, field)
            if not isinstance(value, np.ndarray) or value.dtype != np.int32:
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise TypeError(f"{where}: {field} must be a numpy int32 array, got {got}")
        if self.x.ndim != 2 or self.x.shape[1] < 1 or self.y.shape != self.x.shape:
            raise DataError(
                f"{where}: x and y must both have shape (N, T) with T >= 1, got x "
                f"{self.x.shape} and y {self.y.shape}"
            )
        v = self.vocab_size
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TypeError(f"{where}: vocab_size must be a positive int, got {v!r}")
        for field in ("x", "y"):
            value = getattr(self, field)
            if value.size and (int(value.min()) < 0 or int(value.max()) >= v):
                raise DataError(
                    f"{where}: {field} must lie in [0, {v}), got values in "
                    f"[{int(value.min())}, {int(value.max())}]"
                )
        freeze(self, "x", "y")

    @property
    def seq_len(self) -> int:
        """``T``, the tokens per window."""
        return int(self.x.shape[1])

    @property
    def num_classes(self) -> int:
        """The logits per prediction: ``vocab_size`` (as a :class:`Dataset`'s ``num_classes``)."""
        return self.vocab_size

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        return (
            f"TokenWindows(name={self.name!r}, n={len(self)}, seq_len={self.seq_len}, "
            f"vocab_size={self.vocab_size})"
        )


def _check_text(where: str, text: object, seq_len: object) -> tuple[np.ndarray, int]:
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"{where}: seq_len must be a positive int, got {seq_len!r}")
    if isinstance(text, (bytes, bytearray)):
        text = np.frombuffer(bytes(text), np.uint8)
    if not isinstance(text, np.ndarray) or text.dtype != np.uint8 or text.ndim != 1:
        raise TypeError(
            f"{where}: text must be bytes or a 1-D numpy uint8 array, got "
            f"{getattr(text, 'dtype', type(text).__name__)}"
        )
    seq_len = operator.index(seq_len)
    if len(text) < seq_len + 1:
        raise DataError(
            f"{where}: a window of seq_len={seq_len} needs at least {seq_len + 1} bytes "
            f"of text (its tokens and the byte after them), got {len(text)}"
        )
    return text, seq_len


def _windows(text: np.ndarray, starts: np.ndarray, seq_len: int, name: str) -> TokenWindows:
    idx = starts[:, None] + np.arange(seq_len + 1)
    w = text[idx].astype(np.int32)
    return TokenWindows(x=w[:, :-1], y=w[:, 1:], vocab_size=BYTE_VOCAB, name=name)


def eval_windows(text: np.ndarray | bytes, *, seq_len: int, name: str = "text") -> TokenWindows:
    """Non-overlapping windows over ``text``, in order: deterministic evaluation examples.

    Window ``i`` holds bytes ``[i T, (i+1) T)`` and is labelled with bytes
    ``[i T + 1, (i+1) T + 1)``, for ``i < (len(text) - 1) // T``; every byte but
    the first and a tail shorter than a window is predicted exactly once.

    Raises:
      ValueError: ``seq_len`` is not a positive int.
      DataError: the text is shorter than ``seq_len + 1`` bytes.

    Example:
      >>> w = eval_windows(b"abcdefg", seq_len=3)
      >>> w.x.tolist(), w.y.tolist()
      ([[97, 98, 99], [100, 101, 102]], [[98, 99, 100], [101, 102, 103]])
    """
    text, seq_len = _check_text("eval_windows", text, seq_len)
    starts = np.arange((len(text) - 1) // seq_len) * seq_len
    return _windows(text, starts, seq_len, name)


def sample_windows(
    text: np.ndarray | bytes, *, seq_len: int, num: int, key: jax.Array, name: str = "text"
) -> TokenWindows:
    """``num`` windows at random offsets of ``text``: training batches or a calibration sample.

    The offsets are drawn uniformly (with replacement) from ``key``, so the same
    key gives the same windows. Draw calibration samples from the training part
    (``splits.train``), never from the held-out text.

    Raises:
      ValueError: ``seq_len`` or ``num`` is not a positive int.
      TypeError: ``key`` is not a PRNG key.
      DataError: the text is shorter than ``seq_len + 1`` bytes.

    Example:
      >>> import jax
      >>> w = sample_windows(b"abcdefgh", seq_len=4, num=3, key=jax.random.key(0))
      >>> w.x.shape, bool((w.y[:, :-1] == w.x[:, 1:]).all())
      ((3, 4), True)
    """
    text, seq_len = _check_text("sample_windows", text, seq_len)
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"sample_windows: num must be a positive int, got {num!r}")
    check_key("sample_windows", key)
    high = len(text) - seq_len  # starts in [0, len - T - 1] keep the last label in range
    starts = np.asarray(jax.random.randint(key, (int(num),), 0, high), np.int64)
    return _windows(text, starts, seq_len, name)
