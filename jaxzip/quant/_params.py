"""Quantizing whole parameter trees with ordered ``(where, spec)`` rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip._finite import check_finite
from jaxzip._types import Params, Where
from jaxzip.paths import describe, keystr, matches
from jaxzip.quant._fake import fake_quant, lsq_fake_quant, lsq_init_step
from jaxzip.quant._kmeans import KMeansArray
from jaxzip.quant._qarray import QArray, dequantize
from jaxzip.quant._quantize import quantize_array
from jaxzip.quant._spec import MINMAX, Calibration, QuantSpec

Rules = Sequence[tuple[Where, QuantSpec | None]]
"""Ordered ``(where, spec_or_None)`` pairs; the first rule matching a leaf wins; None = keep float."""


def is_quantized(x: Any) -> bool:
    """Whether ``x`` is a quantized leaf (a ``QArray`` or a ``KMeansArray``)."""
    return isinstance(x, (QArray, KMeansArray))


def _check_rules(rules: Any) -> list[tuple[Where, QuantSpec | None]]:
    if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence) or not rules:
        raise TypeError(
            f"rules: expected a non-empty sequence of (where, spec) pairs, got {rules!r}"
        )
    out = []
    for i, rule in enumerate(rules):
        if not isinstance(rule, (tuple, list)) or len(rule) != 2:
            raise TypeError(f"rules[{i}]: expected a (where, spec_or_None) pair, got {rule!r}")
        where, spec = rule
        if spec is not None and not isinstance(spec, QuantSpec):
            raise TypeError(f"rules[{i}]: spec must be a QuantSpec or None, got {spec!r}")
        out.append((where, spec))
    return out


def resolve_rules(params: Params, rules: Rules) -> list[tuple[str, QuantSpec | None]]:
    """For each leaf of ``params`` (flattening order), its path and winning spec (or None).

    Raises:
      ValueError: a rule matches no leaf (named by index and pattern).
      TypeError: malformed rules, or a spec matching a non-float leaf.
    """
    checked = _check_rules(rules)
    flat = jax.tree_util.tree_leaves_with_path(params)
    used = [False] * len(checked)
    out = []
    for kp, leaf in flat:
        path, chosen = keystr(kp), None
        for i, (where, spec) in enumerate(checked):
            if matches(where, path, leaf):
                if chosen is None:
                    chosen = (spec,)
                used[i] = True
        spec = chosen[0] if chosen else None
        if spec is not None and not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"{path}: a QuantSpec rule matches a leaf of dtype {jnp.result_type(leaf)}; "
                "only floating-point leaves can be quantized"
            )
        out.append((path, spec))
    for i, ok in enumerate(used):
        if not ok:
            paths = [keystr(kp) for kp, _ in flat][:8]
            raise ValueError(
                f"rules[{i}]: where={describe(checked[i][0])} matches no leaf; "
                f"existing paths: {paths}"
            )
    return out


def _leaf_keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


def quantize_params(
    params: Params,
    rules: Rules,
    *,
    calibration: Calibration = MINMAX,
    key: jax.Array | None = None,
) -> Params:
    """Quantizes the leaves that ``rules`` select; the rest are returned unchanged.

    Args:
      params: a parameter pytree.
      rules: ordered ``(where, spec_or_None)`` pairs; the first rule whose where
        matches a leaf decides it (None keeps it float). Every rule must match
        at least one leaf.
      calibration: weight calibration for every quantized leaf.
      key: PRNG key, split per leaf; needed if a spec rounds stochastically.

    Returns:
      ``params``' structure with :class:`QArray` in place of quantized leaves.

    Raises:
      ValueError: a rule matches nothing; a spec does not fit a leaf's shape
        (named by path).
      NonFiniteError: a quantized leaf holds NaN or Inf (a ``ValueError`` naming
        every such path with its counts; skipped for traced leaves).
      TypeError: malformed rules or a non-float leaf selected.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
      >>> q = quantize_params(params, [(r".*/kernel", QuantSpec(bits=8, axes=(-1,)))])
      >>> type(q["Dense_0"]["kernel"]).__name__, q["Dense_0"]["bias"].dtype
      ('QArray', dtype('float32'))
    """
    specs = resolve_rules(params, rules)
    leaves, treedef = jax.tree.flatten(params)
    chosen = [
        leaf if spec is not None else None for (_, spec), leaf in zip(specs, leaves, strict=True)
    ]
    check_finite(jax.tree.unflatten(treedef, chosen), where="quantize_params")  # None: not checked
    keys = _leaf_keys(key, len(leaves))
    out = []
    for (path, spec), leaf, k in zip(specs, leaves, keys, strict=True):
        if spec is None:
            out.append(leaf)
            continue
        out.append(
            quantize_array(
                leaf,
                spec,
                what=path,
                where="quantize_params",
                calibration=calibration,
                key=k,
                check_values=False,  # checked above, every leaf at once
            )
        )
    return jax.tree.unflatten(treedef, out)


def dequantize_params(qparams: Params) -> Params:
    """Replaces every ``QArray``/``KMeansArray`` by its float array; other leaves unchanged.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.array([0.75, -1.0]), "b": jnp.zeros(1)}
      >>> dequantize_params(quantize_params(params, [("w", QuantSpec(bits=2))]))["w"]
      Array([ 1., -1.], dtype=float32)
    """
    return jax.tree.map(
        lambda x: dequantize(x) if is_quantized(x) else x, qparams, is_leaf=is_quantized
    )


def quantize_unshared(params: Params, spec: QuantSpec) -> Params:
    """Quantizes every float leaf that is not already quantized (biases, norms) with ``spec``.

    After weight sharing, the leaves left as float32 (biases, norm scales) can
    dominate a small file: LeNet-300-100's 410 biases are 1,640 bytes, 6% of a
    40x file. This stores them as :class:`QArray` leaves (at 8 bits per-tensor, 410
    bytes); ``QArray``/``KMeansArray`` leaves, scalars and integer leaves are
    kept as they are.

    Args:
      params: a tree, possibly holding ``QArray``/``KMeansArray`` leaves.
      spec: how to quantize each remaining float leaf (e.g. ``QuantSpec(bits=8)``,
        one scale per leaf).

    Returns:
      ``params``' structure with :class:`QArray` in place of its unquantized float arrays.

    Raises:
      TypeError: ``spec`` is not a :class:`QuantSpec`.
      ValueError: ``spec`` does not fit a leaf's shape (named by path).
      NonFiniteError: a leaf to quantize holds NaN or Inf.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxzip.quant import kmeans
      >>> q = quantize_unshared({"w": kmeans(jnp.arange(4.0), bits=1), "b": jnp.ones(3)},
      ...                       QuantSpec(bits=8))
      >>> type(q["w"]).__name__, type(q["b"]).__name__, q["b"].values.dtype
      ('KMeansArray', 'QArray', dtype('int8'))
    """
    if not isinstance(spec, QuantSpec):
        raise TypeError(f"spec: expected a QuantSpec, got {spec!r}")

    def chosen(leaf: Any) -> bool:
        return (
            not is_quantized(leaf)
            and jnp.ndim(leaf) > 0
            and jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        )

    flat, treedef = jax.tree_util.tree_flatten_with_path(params, is_leaf=is_quantized)
    picked = {keystr(kp): leaf for kp, leaf in flat if chosen(leaf)}
    check_finite(picked, where="quantize_unshared")
    out = [
        quantize_array(leaf, spec, what=path, where="quantize_unshared", check_values=False)
        if path in picked
        else leaf
        for path, leaf in ((keystr(kp), leaf) for kp, leaf in flat)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def fake_quant_params(
    params: Params,
    rules: Rules,
    *,
    steps: dict[str, jax.Array] | None = None,
    calibration: Calibration = MINMAX,
    key: jax.Array | None = None,
) -> Params:
    """Fake-quantizes the selected leaves (a student param transform for QAT).

    Leaves whose path is a key of ``steps`` use :func:`lsq_fake_quant` with that
    learned step; the others use :func:`fake_quant` (straight-through gradient).

    Args:
      params: a parameter pytree (may be traced, e.g. inside a train step).
      rules: ordered ``(where, spec_or_None)`` pairs, as in :func:`quantize_params`.
      steps: optional LSQ step sizes keyed by path (see :func:`init_lsq_steps`).
      calibration: range calibration for the non-LSQ leaves.
      key: PRNG key, split per leaf; needed if a spec rounds stochastically.

    Returns:
      ``params``' structure, float leaves.

    Raises:
      ValueError: a rule matches nothing; a key of ``steps`` is not a quantized path.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"w": jnp.array([0.3, -1.0]), "b": jnp.array([0.3])}
      >>> fake_quant_params(p, [("w", QuantSpec(bits=2))])
      {'b': Array([0.3], dtype=float32), 'w': Array([ 0., -1.], dtype=float32)}
    """
    specs = resolve_rules(params, rules)
    steps = {} if steps is None else steps
    quantized = {path for path, spec in specs if spec is not None}
    extra = sorted(set(steps) - quantized)
    if extra:
        raise ValueError(f"steps: paths {extra} are not quantized by any rule")
    leaves, treedef = jax.tree.flatten(params)
    keys = _leaf_keys(key, len(leaves))
    out = []
    for (path, spec), leaf, k in zip(specs, leaves, keys, strict=True):
        if spec is None:
            out.append(leaf)
        elif path in steps:
            out.append(lsq_fake_quant(leaf, steps[path], spec))
        else:
            out.append(fake_quant(leaf, spec, calibration=calibration, key=k))
    return jax.tree.unflatten(treedef, out)


def init_lsq_steps(params: Params, rules: Rules) -> dict[str, jax.Array]:
    """Initial LSQ step sizes for every leaf a rule quantizes, keyed by path.

    Example:
      >>> import jax.numpy as jnp
      >>> init_lsq_steps({"w": jnp.ones((2, 2))}, [("w", QuantSpec(bits=3, axes=(-1,)))])
      {'w': Array([[1.1547005, 1.1547005]], dtype=float32)}
    """
    leaves = jax.tree.leaves(params)
    return {
        path: lsq_init_step(leaf, spec)
        for (path, spec), leaf in zip(resolve_rules(params, rules), leaves, strict=True)
        if spec is not None
    }


def _bits(q: Any) -> int:
    return int(q.bits)


def quantization_report(params: Params, qparams: Params) -> dict[str, dict[str, float]]:
    """Per-layer quantization error of ``qparams`` against the float ``params``.

    Args:
      params: the float parameter tree.
      qparams: the same tree with some leaves quantized (``QArray`` or
        ``KMeansArray``), e.g. from :func:`quantize_params`.

    Returns:
      ``{path: {"bits", "mse", "max_abs_error", "sqnr_db", "relative_error"}}`` for
      every quantized leaf, as Python numbers (``sqnr_db`` is ``inf`` for an exact
      match; ``relative_error`` is ``||err|| / ||x||``).

    Raises:
      ValueError: the trees do not match.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"w": jnp.array([0.5, -1.0])}
      >>> r = quantization_report(p, quantize_params(p, [("w", QuantSpec(bits=2))]))
      >>> r["w"]["bits"], r["w"]["max_abs_error"]
      (2, 0.5)
    """
    try:
        pairs = jax.tree.leaves(
            jax.tree_util.tree_map_with_path(
                lambda kp, x, q: (keystr(kp), x, q), params, qparams, is_leaf=is_quantized
            ),
            is_leaf=lambda t: isinstance(t, tuple) and len(t) == 3,
        )
    except ValueError as e:
        raise ValueError(f"quantization_report: qparams does not match params: {e}") from None
    report = {}
    for path, x, q in pairs:
        if not is_quantized(q):
            continue
        x = np.asarray(x, np.float64)
        xh = np.asarray(dequantize(q), np.float64)
        if x.shape != xh.shape:
            raise ValueError(f"{path}: params shape {x.shape} != quantized shape {xh.shape}")
        err = xh - x
        se, sx = float(np.sum(err**2)), float(np.sum(x**2))
        report[path] = {
            "bits": _bits(q),
            "mse": se / x.size,
            "max_abs_error": float(np.max(np.abs(err))),
            "sqnr_db": float("inf") if se == 0 else 10.0 * float(np.log10(sx / se)) if sx else 0.0,
            "relative_error": float(np.sqrt(se / sx)) if sx else float(np.sqrt(se)),
        }
    return report
