"""k-means weight sharing (Deep Compression): codebooks, assignments, centroid fine-tuning."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.typing import ArrayLike

from jaxzip._finite import check_finite
from jaxzip._types import Mask, Params, Where
from jaxzip.paths import keystr, select
from jaxzip.quant._calibrate import check_input


@struct.dataclass
class KMeansArray:
    """A weight-shared array: per-element codebook indices and a float codebook.

    Invariant: ``x ≈ where(mask, centroids[indices], 0)``. Masked-out (pruned)
    positions take no part in clustering and decode to exactly 0.0, whatever the
    centroids are. ``centroids`` is the trainable leaf (see
    :func:`codebook_centroids`); ``indices`` (uint8) and ``mask`` (bool) are fixed.

    Attributes:
      indices: uint8 codebook indices, the array's shape.
      centroids: float32 ``(2**bits,)`` sorted codebook.
      mask: bool, the array's shape; False where the weight is pruned.
      bits: static, the index width.
      dtype: static, the float dtype to decode to.

    Example:
      >>> import jax.numpy as jnp
      >>> k = KMeansArray(indices=jnp.array([1, 0, 1], jnp.uint8),
      ...                 centroids=jnp.array([-1.0, 2.0]),
      ...                 mask=jnp.array([True, True, False]), bits=1)
      >>> k.decode()
      Array([ 2., -1.,  0.], dtype=float32)
    """

    indices: jax.Array
    centroids: jax.Array
    mask: jax.Array
    bits: int = struct.field(pytree_node=False)
    dtype: Any = struct.field(pytree_node=False, default=np.dtype(np.float32))

    @property
    def shape(self) -> tuple[int, ...]:
        """The decoded array's shape."""
        return tuple(self.indices.shape)

    def decode(self) -> jax.Array:
        """Returns ``where(mask, centroids[indices], 0)`` in ``dtype``."""
        vals = jnp.take(self.centroids, self.indices.astype(jnp.int32), axis=0)
        return jnp.where(self.mask, vals, 0.0).astype(self.dtype)


def _assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Index of the nearest centroid; centroids must be sorted (1-D search on midpoints)."""
    mid = (centroids[1:] + centroids[:-1]) / 2
    return jnp.searchsorted(mid, x, side="left").astype(jnp.int32)


def _check_bits(bits: Any) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits: expected an int in 1..8, got {bits!r}")


def _check_iters(iters: Any) -> None:
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 0:
        raise ValueError(f"iters: expected a non-negative int, got {iters!r}")


def kmeans(
    x: ArrayLike, *, bits: int, mask: ArrayLike | None = None, iters: int = 20
) -> KMeansArray:
    """Clusters the (unmasked) entries of ``x`` into ``2**bits`` shared values.

    Centroids start evenly spaced over ``[min, max]`` of the unmasked weights
    (linear initialization, Han et al.), then ``iters`` Lloyd iterations run
    (``lax.fori_loop``, jittable with ``bits``/``iters`` static). A centroid that
    loses all members keeps its value.

    Args:
      x: a float array.
      bits: index width, 1 to 8.
      mask: optional bool array of ``x``'s shape; False entries (pruned weights)
        are excluded and decode to exactly 0.0. If None, every entry is clustered.
      iters: the number of Lloyd iterations (>= 0).

    Returns:
      A :class:`KMeansArray`.

    Raises:
      TypeError: ``x`` is not float.
      ValueError: bad ``bits``/``iters``, mask shape mismatch, empty ``x``.
      NonFiniteError: ``x`` is concrete and holds NaN or Inf (a ``ValueError``).

    Example:
      >>> import jax.numpy as jnp
      >>> k = kmeans(jnp.array([0.0, 0.1, 0.9, 1.0]), bits=1, iters=3)
      >>> k.centroids
      Array([0.05, 0.95], dtype=float32)
    """
    _check_bits(bits)
    _check_iters(iters)
    return _cluster(check_input(x, "x", where="kmeans"), bits, mask, iters)


def _cluster(x: jax.Array, bits: int, mask: ArrayLike | None, iters: int) -> KMeansArray:
    """:func:`kmeans` of a checked float array."""
    if mask is None:
        m = jnp.ones(x.shape, bool)
    else:
        m = jnp.asarray(mask)
        if m.shape != x.shape or m.dtype != jnp.bool_:
            raise ValueError(f"mask: expected bool of shape {x.shape}, got {m.dtype} {m.shape}")
    k = 2**bits
    xf = x.astype(jnp.float32).reshape(-1)
    mf = m.reshape(-1)
    big = jnp.finfo(jnp.float32).max
    lo = jnp.min(jnp.where(mf, xf, big))
    hi = jnp.max(jnp.where(mf, xf, -big))
    lo, hi = jnp.where(lo <= hi, lo, 0.0), jnp.where(lo <= hi, hi, 0.0)  # all masked
    c0 = jnp.linspace(0.0, 1.0, k, dtype=jnp.float32) * (hi - lo) + lo
    w = mf.astype(jnp.float32)

    def step(_: Any, c: jax.Array) -> jax.Array:
        idx = _assign(xf, c)
        total = jax.ops.segment_sum(xf * w, idx, num_segments=k)
        count = jax.ops.segment_sum(w, idx, num_segments=k)
        return jnp.sort(jnp.where(count > 0, total / jnp.maximum(count, 1.0), c))

    c = jax.lax.fori_loop(0, int(iters), step, c0)
    idx = jnp.where(mf, _assign(xf, c), 0).astype(jnp.uint8).reshape(x.shape)
    return KMeansArray(indices=idx, centroids=c, mask=m, bits=int(bits), dtype=np.dtype(x.dtype))


def kmeans_params(
    params: Params,
    *,
    bits: int,
    where: Where,
    mask: Mask | None = None,
    iters: int = 20,
) -> Params:
    """Replaces the selected leaves by per-layer codebooks (:class:`KMeansArray`).

    Args:
      params: a parameter pytree.
      bits: index width per weight, 1 to 8 (``2**bits`` centroids per layer).
      where: which leaves to cluster (regex, predicate or sequence; must match).
      mask: optional bool tree with ``params``' structure; pruned weights
        (False) stay exactly zero.
      iters: Lloyd iterations.

    Returns:
      ``params``' structure with :class:`KMeansArray` for selected leaves.

    Raises:
      ValueError: ``where`` selects nothing; mask structure differs; bad values
        (named by path).
      NonFiniteError: a selected leaf holds NaN or Inf (a ``ValueError`` naming
        every such path with its counts; skipped for traced leaves).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"kernel": jnp.array([0.0, 0.1, 0.9, 1.0]), "bias": jnp.zeros(1)}
      >>> books = kmeans_params(p, bits=1, where="kernel")
      >>> books["kernel"].decode()
      Array([0.05, 0.05, 0.95, 0.95], dtype=float32)
    """
    _check_bits(bits)
    _check_iters(iters)
    picked = select(params, where)
    if mask is None:
        mleaves = [None] * len(jax.tree.leaves(params))
    else:
        if jax.tree.structure(mask) != jax.tree.structure(params):
            raise ValueError(
                f"mask: structure {jax.tree.structure(mask)} differs from params' "
                f"{jax.tree.structure(params)}"
            )
        mleaves = jax.tree.leaves(mask)
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    sels = jax.tree.leaves(picked)
    chosen = [leaf if sel else None for (_, leaf), sel in zip(flat, sels, strict=True)]
    check_finite(jax.tree.unflatten(treedef, chosen), where="kmeans_params")
    out = []
    for (kp, leaf), sel, m in zip(flat, jax.tree.leaves(picked), mleaves, strict=True):
        if not sel:
            out.append(leaf)
            continue
        path = keystr(kp)
        if m is not None and jnp.ndim(m) == 0:
            m = jnp.broadcast_to(jnp.asarray(m, bool), jnp.shape(leaf))
        leaf = check_input(leaf, path, where="kmeans_params", check_values=False)
        try:
            out.append(_cluster(leaf, bits, m, int(iters)))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return jax.tree.unflatten(treedef, out)


def _is_book(x: Any) -> bool:
    return isinstance(x, KMeansArray)


def codebook_centroids(books: Params) -> Params:
    """The trainable view: each :class:`KMeansArray` replaced by its centroids array.

    Train this tree (with optax) and put it back with :func:`replace_centroids`;
    the gradient of a centroid is then the sum of its members' gradients.

    Example:
      >>> import jax.numpy as jnp
      >>> books = kmeans_params({"w": jnp.array([0.0, 1.0])}, bits=1, where="w")
      >>> codebook_centroids(books)
      {'w': Array([0., 1.], dtype=float32)}
    """
    return jax.tree.map(lambda b: b.centroids if _is_book(b) else b, books, is_leaf=_is_book)


def replace_centroids(books: Params, trainable: Params) -> Params:
    """Puts trained centroids (and other trained leaves) back into ``books``.

    Example:
      >>> import jax.numpy as jnp
      >>> books = kmeans_params({"w": jnp.array([0.0, 1.0])}, bits=1, where="w")
      >>> replace_centroids(books, {"w": jnp.array([5.0, 6.0])})["w"].decode()
      Array([5., 6.], dtype=float32)
    """
    return jax.tree.map(
        lambda b, t: b.replace(centroids=t) if _is_book(b) else t,
        books,
        trainable,
        is_leaf=_is_book,
    )


def centroid_grads(books: Params, grads: Params) -> Params:
    """Centroid gradients from dense weight gradients (Deep Compression fine-tuning).

    For each :class:`KMeansArray`, the gradient of centroid ``k`` is the sum of
    the gradients of its (unmasked) members, via ``jax.ops.segment_sum``; other
    leaves pass through.

    Args:
      books: the tree with codebooks.
      grads: gradients w.r.t. the decoded params (``params``' structure).

    Returns:
      Gradients with the structure of :func:`codebook_centroids` ``(books)``.

    Example:
      >>> import jax.numpy as jnp
      >>> books = kmeans_params({"w": jnp.array([0.0, 0.1, 1.0])}, bits=1, where="w")
      >>> centroid_grads(books, {"w": jnp.array([1.0, 2.0, 4.0])})
      {'w': Array([3., 4.], dtype=float32)}
    """

    def one(b: Any, g: jax.Array) -> jax.Array:
        if not _is_book(b):
            return g
        gm = jnp.where(b.mask, g, 0.0).astype(jnp.float32).reshape(-1)
        idx = b.indices.astype(jnp.int32).reshape(-1)
        return jax.ops.segment_sum(gm, idx, num_segments=b.centroids.shape[0])

    return jax.tree.map(one, books, grads, is_leaf=_is_book)
