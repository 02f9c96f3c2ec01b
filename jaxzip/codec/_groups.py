"""Sparse positions coded by groups: each run of ``m`` elements along one axis as one symbol.

N:M sparsity (2:4: at most 2 nonzeros in every group of 4 inputs) leaves few of the
``2**m`` patterns a group can take, so coding each group's pattern as one symbol of an
entropy-coded stream costs about ``log2(C(4, 2)) = 2.58`` bits per group of a 2:4 mask,
where a bitmask costs 4 and the gap and row/column coders, which see no groups, about as
much. The groups run along the array's last axis (``stride`` 1) or its first axis
(``stride`` = the product of the other axes: a Dense kernel's input axis, where
:func:`jaxzip.prune.sparsegpt` and :class:`jaxzip.prune.NByM` put them).

Element ``(g * m + t) * stride + r`` of the flat array is bit ``t`` of symbol
``g * stride + r``; the encoder picks the smallest of ``m`` in (4, 8) and both axes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jaxzip.codec._errors import FormatError

__all__ = ["GROUP_SIZES", "decode_groups", "group_layouts", "group_symbols"]

GROUP_SIZES = (4, 8)
"""The group lengths the encoder tries (a symbol holds ``m`` bits, at most 8)."""


def group_layouts(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(m, stride)`` pairs whose groups tile an array of ``shape``: along its last axis
    (stride 1) and, for two or more axes, along its first.

    Example:
      >>> group_layouts((8, 3)), group_layouts((8, 4))
      ([(4, 3), (8, 3)], [(4, 1), (4, 4), (8, 4)])
    """
    if len(shape) == 0 or 0 in shape:
        return []
    n = int(np.prod(shape))
    axes = [(shape[-1], 1)] + ([(shape[0], n // shape[0])] if len(shape) >= 2 else [])
    return [
        (m, stride)
        for m in GROUP_SIZES
        for length, stride in dict.fromkeys(axes)  # (n, 1) twice for a (n, 1) array
        if length % m == 0
    ]


def group_symbols(mask: np.ndarray, m: int, stride: int) -> np.ndarray:
    """The ``uint8`` pattern of each group of ``m`` elements ``stride`` apart (flat ``mask``).

    Example:
      >>> group_symbols(np.array([1, 1, 0, 0, 0, 1, 1, 0], bool), 4, 1).tolist()
      [3, 6]
      >>> group_symbols(np.array([[1, 0], [0, 0], [1, 1], [0, 0]], bool).reshape(-1), 4, 2).tolist()
      [5, 4]
    """
    g = mask.reshape(-1, m, stride)
    out = np.zeros((g.shape[0], stride), np.uint8)
    for t in range(m):
        out |= g[:, t, :].astype(np.uint8) << np.uint8(t)
    return out.reshape(-1)


def decode_groups(
    spec: dict[str, Any],
    data: bytes,
    n: int,
    nnz: int,
    decode_symbols: Callable[[dict[str, Any], bytes, int], tuple[np.ndarray, int]],
) -> np.ndarray:
    """The bool mask of ``n`` elements that a ``{"enc": "groups"}`` position spec describes.

    Holds the mask, the ``n / m`` symbols and one ``n / m``-byte bit plane.

    Raises:
      FormatError: ``m`` not in :data:`GROUP_SIZES`, ``stride`` not a positive int,
        ``m * stride`` not dividing ``n``, a symbol outside ``0 .. 2**m - 1``, or a
        count of ones other than ``nnz``.
    """
    m, stride, coder = spec.get("m"), spec.get("stride"), spec.get("coder")
    if isinstance(m, bool) or m not in GROUP_SIZES:
        raise FormatError(f"group positions: bad m {m!r}; expected one of {GROUP_SIZES}")
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= max(n, 1):
        raise FormatError(f"group positions: bad stride {stride!r} for {n} elements")
    if n % (m * stride):
        raise FormatError(f"group positions: m * stride = {m * stride} does not divide {n}")
    if not isinstance(coder, dict):
        raise FormatError(f"group positions: bad coder {coder!r}")
    s, offset = decode_symbols(coder, data, n // m)
    if s.size and (int(s.min()) + offset < 0 or int(s.max()) + offset >= 1 << m):
        raise FormatError(f"group positions: symbols outside 0..{(1 << m) - 1}")
    s += np.uint8(offset % 256)  # in range: adding modulo 256 gives the symbols exactly
    mask = np.zeros(n, np.bool_)
    cells = mask.reshape(-1, m, stride)
    groups = s.reshape(-1, stride)
    plane = np.empty_like(groups)  # one bit plane, reused: no temporaries per bit
    for t in range(m):
        np.right_shift(groups, np.uint8(t), out=plane)
        np.bitwise_and(plane, np.uint8(1), out=plane)
        cells[:, t, :] = plane
    if int(np.count_nonzero(mask)) != nnz:
        raise FormatError(
            f"group positions: {int(np.count_nonzero(mask))} positions, expected {nnz}"
        )
    return mask
