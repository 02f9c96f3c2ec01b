"""Per-layer sensitivity: accuracy when one layer alone is pruned or weight-shared."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxzip import prune as jz_prune
from jaxzip._types import Params, Where
from jaxzip.auto._common import (
    EvalFn,
    check_bits_list,
    check_fraction_list,
    check_score,
    decode,
    layer_mask,
    layer_paths,
    share_weights,
)

__all__ = ["Sensitivity", "plot_sensitivity", "probe", "sensitivity"]

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95)
DEFAULT_BITS = (8, 6, 5, 4, 3, 2, 1)


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """Accuracies of one-layer-at-a-time compression.

    Attributes:
      layers: the '/'-joined paths of the probed leaves.
      sparsities: the sparsities probed, increasing.
      bits: the bit widths probed, decreasing.
      baseline: ``eval_fn(params)`` of the untouched params.
      sparsity_accuracy: float array ``(len(layers), len(sparsities))``.
      bits_accuracy: float array ``(len(layers), len(bits))``.
    """

    layers: tuple[str, ...]
    sparsities: tuple[float, ...]
    bits: tuple[int, ...]
    baseline: float
    sparsity_accuracy: np.ndarray
    bits_accuracy: np.ndarray

    def __post_init__(self) -> None:
        for name, arr, n in (
            ("sparsity_accuracy", self.sparsity_accuracy, len(self.sparsities)),
            ("bits_accuracy", self.bits_accuracy, len(self.bits)),
        ):
            a = np.asarray(arr, np.float64)
            if a.shape != (len(self.layers), n):
                raise ValueError(
                    f"Sensitivity: {name} must have shape {(len(self.layers), n)}, got {a.shape}"
                )
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    def to_json(self) -> str:
        """The sensitivity as a JSON string (see :meth:`from_json`)."""
        return json.dumps(
            {
                "layers": list(self.layers),
                "sparsities": list(self.sparsities),
                "bits": list(self.bits),
                "baseline": self.baseline,
                "sparsity_accuracy": self.sparsity_accuracy.tolist(),
                "bits_accuracy": self.bits_accuracy.tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Sensitivity:
        """Reads what :meth:`to_json` wrote.

        Raises:
          ValueError: ``text`` is not such JSON (names the missing key).
        """
        try:
            d = json.loads(text)
            return cls(
                layers=tuple(d["layers"]),
                sparsities=tuple(d["sparsities"]),
                bits=tuple(d["bits"]),
                baseline=float(d["baseline"]),
                sparsity_accuracy=np.asarray(d["sparsity_accuracy"], np.float64),
                bits_accuracy=np.asarray(d["bits_accuracy"], np.float64),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"Sensitivity.from_json: not a sensitivity record ({e!r})") from None


def probe(
    params: Params, path: str, *, sparsity: float = 0.0, bits: int | None = None, iters: int = 20
) -> Params:
    """``params`` with only leaf ``path`` magnitude-pruned and/or k-means shared (decoded).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"w": jnp.array([0.1, -2.0, 0.5, 3.0])}
      >>> probe(p, "w", sparsity=0.5)["w"]
      Array([ 0., -2.,  0.,  3.], dtype=float32)
    """
    mask = layer_mask(params, {path: sparsity})
    if sparsity > 0:
        params = jz_prune.apply_mask(params, mask)
    if bits is not None:  # jaxzip.quant.kmeans_params on this one leaf, compiled once per shape
        params = decode(share_weights(params, {path: int(bits)}, mask, iters=iters))
    return params


def sensitivity(
    params: Params,
    eval_fn: EvalFn,
    *,
    where: Where,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    bits: Sequence[int] = DEFAULT_BITS,
    iters: int = 20,
) -> Sensitivity:
    """Accuracy as each selected leaf alone is pruned, or alone weight-shared.

    For each leaf ``where`` selects, ``eval_fn`` is called on the params with
    that leaf magnitude-pruned (:func:`jaxzip.prune.magnitude_mask`) to each
    sparsity, and with it k-means weight-shared
    (:func:`jaxzip.quant.kmeans_params`, decoded) at each bit width; every
    other leaf is untouched.

    Args:
      params: a parameter pytree.
      eval_fn: ``eval_fn(params) -> float``, e.g. validation accuracy.
      where: the leaves to probe (regex, predicate or sequence; must match).
      sparsities: distinct sparsities in ``[0, 1)``.
      bits: distinct bit widths in 1..8.
      iters: Lloyd iterations of the k-means.

    Returns:
      A :class:`Sensitivity`.

    Raises:
      ValueError: ``where`` selects nothing; bad ``sparsities``/``bits``;
        ``eval_fn`` returns NaN, a non-scalar or a non-number.

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"a": jnp.array([1.0, 2.0, 3.0, 4.0]), "b": jnp.ones(2)}
      >>> s = sensitivity(p, lambda q: float(q["a"].sum()), where="a",
      ...                 sparsities=(0.5,), bits=(1,))
      >>> s.baseline, s.sparsity_accuracy.tolist(), s.bits_accuracy.tolist()
      (10.0, [[7.0]], [[10.0]])
    """
    sparsities = check_fraction_list("sparsities", sparsities)
    bits = check_bits_list("bits", bits)
    layers = layer_paths(params, where)
    baseline = check_score(eval_fn(params))
    s_acc = np.zeros((len(layers), len(sparsities)))
    b_acc = np.zeros((len(layers), len(bits)))
    for i, path in enumerate(layers):
        for j, s in enumerate(sparsities):
            s_acc[i, j] = (
                baseline if s == 0 else check_score(eval_fn(probe(params, path, sparsity=s)))
            )
        for j, b in enumerate(bits):
            b_acc[i, j] = check_score(eval_fn(probe(params, path, bits=b, iters=iters)))
    return Sensitivity(
        layers=tuple(layers),
        sparsities=sparsities,
        bits=bits,
        baseline=baseline,
        sparsity_accuracy=s_acc,
        bits_accuracy=b_acc,
    )


def require_matplotlib() -> Any:
    """Imports matplotlib with the Agg backend, or raises ImportError saying how to get it."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            "jaxzip.auto plots need matplotlib: pip install 'jaxzip[experiments]' "
            f"(or 'jaxzip[test]', or matplotlib itself) ({e})"
        ) from None
    return plt


def plot_sensitivity(sens: Sensitivity) -> Any:
    """A matplotlib Figure: accuracy vs sparsity and vs bits, one curve per layer.

    Args:
      sens: a :class:`Sensitivity`.

    Returns:
      A ``matplotlib.figure.Figure`` with two panels.

    Raises:
      TypeError: ``sens`` is not a :class:`Sensitivity`.
      ImportError: matplotlib is not installed.

    Example:
      >>> s = Sensitivity(layers=("a",), sparsities=(0.5,), bits=(4,), baseline=1.0,
      ...                 sparsity_accuracy=[[0.9]], bits_accuracy=[[0.8]])
      >>> len(plot_sensitivity(s).axes)
      2
    """
    if not isinstance(sens, Sensitivity):
        raise TypeError(f"plot_sensitivity: sens must be a Sensitivity, got {type(sens)!r}")
    plt = require_matplotlib()
    from matplotlib.figure import Figure

    del plt
    fig = Figure(figsize=(10, 4))
    ax_s, ax_b = fig.subplots(1, 2)
    for i, layer in enumerate(sens.layers):
        ax_s.plot(sens.sparsities, sens.sparsity_accuracy[i], marker="o", label=layer)
        ax_b.plot(sens.bits, sens.bits_accuracy[i], marker="o", label=layer)
    for ax, xlabel in ((ax_s, "sparsity of the layer alone"), (ax_b, "k-means bits")):
        ax.axhline(sens.baseline, color="gray", linestyle="--", linewidth=1, label="baseline")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    ax_b.invert_xaxis()
    ax_s.legend(fontsize="small")
    fig.tight_layout()
    return fig
