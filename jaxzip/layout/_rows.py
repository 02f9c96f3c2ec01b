"""``MatmulCall``: one intercepted matmul or conv, its activation rows and how to recompute it."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._types import Array
from jaxzip.layout._layout import KernelLayout, to_matrix
from jaxzip.layout._prov import Prov, replay
from jaxzip.layout._walk import CONV, bind


def row_perm(prov: Prov, layout: KernelLayout, w_layout: KernelLayout, path: str) -> Any:
    """``perm[r]``: the row of ``to_matrix(leaf, layout)`` that consumed row ``r`` holds.

    None when the kernel is consumed as stored (the identity). Found by carrying
    an index array over the original leaf through the same layout ops.
    """
    if not prov.chain:
        return None
    rows = np.arange(layout.n_in, dtype=np.int64).reshape(layout.in_shape)
    rows = np.broadcast_to(np.expand_dims(rows, layout.out_axes), layout.shape)
    consumed = replay(prov, rows)
    m = np.transpose(consumed, w_layout.in_axes + w_layout.out_axes)
    m = m.reshape(w_layout.n_in, w_layout.n_out)
    perm = m[:, 0]
    if w_layout.n_in != layout.n_in or not (m == perm[:, None]).all():
        raise ValueError(
            f"{path!r}: the kernel is rearranged before its matmul in a way that mixes input "
            "rows and output columns; jaxzip cannot map its activation rows"
        )
    if (perm == np.arange(layout.n_in)).all():
        return None
    return perm


class MatmulCall:
    """The ``compute`` a hook of :func:`intercept_matmuls` receives.

    ``compute(x, w)`` evaluates the original equation (bit-identical to the model
    when given the original operands); ``compute(x_rows, w, rows=True)`` computes
    the same product from activation rows ``(rows, n_in)`` in :func:`to_matrix`
    row order (for a conv, im2col patches), e.g. after quantizing each row.
    :meth:`rows_of`, :meth:`x_from_rows` (dot_general only) and
    :meth:`y_from_rows` convert between the equation's shapes and rows.

    Attributes:
      op: ``"dot_general"`` or ``"conv"``.
      layout: the kernel leaf's :class:`KernelLayout` (as stored in params).
      w_layout: the layout of ``w`` as the equation consumes it (differs from
        ``layout`` only if the model reshapes or transposes the kernel first).
      x_shape: the activation operand's shape; ``y_shape``, ``y_dtype``: the result's.
      layer: for one layer of a layer stack hooked with ``layers=True``, its index
        along the stack's ``layer_axis``; None otherwise.
    """

    def __init__(
        self,
        *,
        eqn: Any,
        side: int,
        layout: KernelLayout,
        w_layout: KernelLayout,
        perm: Any,
        layer: int | None = None,
    ) -> None:
        self._eqn = eqn
        self._side = side
        self.op = layout.op
        self.layout = layout
        self.w_layout = w_layout
        self._perm = perm
        self._inv = None if perm is None else np.argsort(perm)
        self.layer = layer
        self.x_shape = tuple(eqn.invars[1 - side].aval.shape)
        self.y_shape = tuple(eqn.outvars[0].aval.shape)
        self.y_dtype = eqn.outvars[0].aval.dtype

    def __call__(self, x: Any, w: Any, *, rows: bool = False) -> Array:
        """The equation's result for activation ``x`` (or its rows) and kernel ``w``."""
        if tuple(np.shape(w)) != self.w_layout.shape:
            raise ValueError(
                f"compute: expected w of shape {self.w_layout.shape}, got {np.shape(w)}"
            )
        if rows:
            return self._from_rows(x, w)
        if tuple(np.shape(x)) != self.x_shape:
            raise ValueError(
                f"compute: expected x of shape {self.x_shape} (or rows=True with "
                f"({self.n_rows}, {self.layout.n_in})), got {np.shape(x)}"
            )
        operands = [x, w] if self._side == 1 else [w, x]
        return bind(self._eqn, operands)[0]

    @property
    def n_rows(self) -> int:
        """The number of activation rows (tokens, or conv output positions)."""
        if self._eqn.primitive.name == CONV:
            features = self.y_shape[self._eqn.params["dimension_numbers"].out_spec[1]]
            return int(np.prod(self.y_shape)) // features
        return int(np.prod(self.x_shape)) // self.layout.n_in

    def rows_of(self, x: Any) -> Array:
        """The activation as ``(rows, n_in)`` in :func:`to_matrix` row order."""
        xr = self._conv_rows(x) if self._eqn.primitive.name == CONV else self._dot_rows(x)
        return xr if self._inv is None else xr[:, self._inv]

    # --- dot_general ---------------------------------------------------------
    def _dot_dims(self) -> tuple[list[int], list[int]]:
        (lc, rc), _ = self._eqn.params["dimension_numbers"]
        kc, xc = ((lc, rc), (rc, lc))[self._side]
        order = np.argsort(kc)
        x_contract = [int(xc[i]) for i in order]
        free = [d for d in range(len(self.x_shape)) if d not in x_contract]
        return free, x_contract

    def _dot_rows(self, x: Any) -> Array:
        free, contract = self._dot_dims()
        return jnp.transpose(x, free + contract).reshape(-1, self.w_layout.n_in)

    def _from_rows(self, x_rows: Any, w: Any) -> Array:
        if tuple(np.shape(x_rows)) != (self.n_rows, self.layout.n_in):
            raise ValueError(
                f"compute(rows=True): expected x of shape ({self.n_rows}, {self.layout.n_in}), "
                f"got {np.shape(x_rows)}"
            )
        p = self._eqn.params
        y = jax.lax.dot_general(
            x_rows,
            self.w_matrix(w),
            (((1,), (0,)), ((), ())),
            precision=p.get("precision"),
            preferred_element_type=p.get("preferred_element_type"),
        )
        return self.y_from_rows(y).astype(self.y_dtype)

    def w_matrix(self, w: Any) -> Array:
        """``w`` (as consumed) as the ``(n_in, n_out)`` matrix that multiplies :meth:`rows_of`.

        Rows in the stored kernel's :func:`to_matrix` order (so for an
        unrearranged kernel this is ``to_matrix(w, layout)``), columns as
        ``to_matrix(w, w_layout)``'s. Invariant:
        ``compute(x, w) ≈ compute.y_from_rows(compute.rows_of(x) @ compute.w_matrix(w))``.
        """
        m = to_matrix(w, self.w_layout)
        return m if self._inv is None else m[self._inv]

    def y_from_rows(self, y_rows: Any) -> Array:
        """A ``(rows, n_out)`` product back to the equation's result shape.

        Rows as in :meth:`rows_of`; columns as those of :meth:`w_matrix`, so
        ``compute(x_rows, w, rows=True)`` is ``y_from_rows(x_rows @ w_matrix(w))``.
        The dtype is kept.
        """
        n_out = self.w_layout.n_out
        if tuple(np.shape(y_rows)) != (self.n_rows, n_out):
            raise ValueError(
                f"y_from_rows: expected shape ({self.n_rows}, {n_out}), got {np.shape(y_rows)}"
            )
        y = jnp.asarray(y_rows)
        if self._eqn.primitive.name == CONV:
            spec = self._eqn.params["dimension_numbers"].out_spec
            target = [spec[0], *spec[2:], spec[1]]
            y = y.reshape(tuple(self.y_shape[d] for d in target))
            return jnp.transpose(y, tuple(int(i) for i in np.argsort(target)))
        free, _ = self._dot_dims()
        x_free = tuple(self.x_shape[d] for d in free)
        y = y.reshape(x_free + self.w_layout.out_shape)
        if self._side == 0:  # the kernel is lhs: its free axes come first
            nx, nw = len(x_free), len(self.w_layout.out_axes)
            y = jnp.transpose(y, tuple(range(nx, nx + nw)) + tuple(range(nx)))
        return y

    def x_from_rows(self, x_rows: Any) -> Array:
        """The exact inverse of :meth:`rows_of` for a ``dot_general``: rows back to ``x``.

        Lets a hook change the rows (e.g. quantize each token) and then call the
        original equation, ``compute(compute.x_from_rows(x_rows), w)``. Convs
        have no inverse (patches overlap): use ``rows=True`` there.
        """
        if self._eqn.primitive.name == CONV:
            raise ValueError(
                "x_from_rows: conv patches overlap and have no inverse; use "
                "compute(x_rows, w, rows=True)"
            )
        if tuple(np.shape(x_rows)) != (self.n_rows, self.layout.n_in):
            raise ValueError(
                f"x_from_rows: expected shape ({self.n_rows}, {self.layout.n_in}), "
                f"got {np.shape(x_rows)}"
            )
        xr = jnp.asarray(x_rows)
        xr = xr if self._perm is None else xr[:, self._perm]
        free, contract = self._dot_dims()
        order = free + contract
        moved = xr.reshape(tuple(self.x_shape[d] for d in order))
        return jnp.transpose(moved, tuple(int(i) for i in np.argsort(order)))

    # --- conv ----------------------------------------------------------------
    def _conv_rows(self, x: Any) -> Array:
        p = self._eqn.params
        dn = p["dimension_numbers"]
        spatial = sorted(int(d) for d in dn.rhs_spec[2:])
        patches = jax.lax.conv_general_dilated_patches(
            x,
            filter_shape=[self.w_layout.shape[d] for d in spatial],
            window_strides=p["window_strides"],
            padding=p["padding"],
            lhs_dilation=p["lhs_dilation"],
            rhs_dilation=p["rhs_dilation"],
            dimension_numbers=dn,
            precision=jax.lax.Precision.HIGHEST,
        )
        out = dn.out_spec
        patches = jnp.transpose(patches, (out[0], *out[2:], out[1]))
        n_rows = int(np.prod(patches.shape[:-1]))
        feature_axes = [int(dn.rhs_spec[1]), *spatial]  # the kernel axis of each feature dim
        feats = patches.reshape(n_rows, *(self.w_layout.shape[a] for a in feature_axes))
        order = np.argsort(feature_axes)
        feats = jnp.transpose(feats, (0, *(int(i) + 1 for i in order)))
        return feats.reshape(n_rows, self.w_layout.n_in)
