"""Tests for jaxzip/data/_windows.py: token windows cut from byte-level text."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxzip import DataError
from jaxzip.data import eval_windows, sample_windows

TEXT = b"".join(f"line {i}: in the beginning\n".encode() for i in range(20))


def test_eval_windows_hand_worked_and_cover_the_text():
    w = eval_windows(b"abcdefghij", seq_len=4)
    assert w.x.tolist() == [list(b"abcd"), list(b"efgh")]
    assert w.y.tolist() == [list(b"bcde"), list(b"fghi")]
    text = np.frombuffer(TEXT, np.uint8)
    w = eval_windows(text, seq_len=7)
    assert len(w) == (len(text) - 1) // 7
    np.testing.assert_array_equal(w.y.ravel(), text[1 : 1 + w.y.size])  # each byte once, in order


def test_sample_windows_are_keyed_and_labelled_by_the_next_byte():
    text = np.frombuffer(TEXT, np.uint8)
    a = sample_windows(text, seq_len=16, num=50, key=jax.random.key(3))
    b = sample_windows(text, seq_len=16, num=50, key=jax.random.key(3))
    c = sample_windows(text, seq_len=16, num=50, key=jax.random.key(4))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    assert a.x.dtype == np.int32 and a.x.shape == (50, 16)
    np.testing.assert_array_equal(a.x[:, 1:], a.y[:, :-1])
    starts = [TEXT.find(bytes(row.astype(np.uint8))) for row in a.x]
    assert all(s >= 0 for s in starts)
    # The window ending at the text's last byte can be drawn; none runs past it.
    ends = sample_windows(b"abcde", seq_len=4, num=20, key=jax.random.key(0))
    assert ends.y.tolist() == [list(b"bcde")] * 20


@pytest.mark.parametrize("seq_len", [0, -1, 2.0, True])
def test_bad_seq_len(seq_len):
    with pytest.raises(ValueError, match="seq_len must be a positive int"):
        eval_windows(TEXT, seq_len=seq_len)


def test_bad_window_inputs():
    with pytest.raises(DataError, match=r"needs at least 11 bytes .* got 5"):
        eval_windows(b"short", seq_len=10)
    with pytest.raises(TypeError, match="uint8"):
        eval_windows(np.zeros(20, np.int32), seq_len=4)
    with pytest.raises(ValueError, match="num must be a positive int"):
        sample_windows(TEXT, seq_len=4, num=0, key=jax.random.key(0))
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        sample_windows(TEXT, seq_len=4, num=2, key=0)
