"""How a candidate is built from the baseline: prune, share weights, fine-tune, store."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxzip import prune as jz_prune
from jaxzip import quant as jz_quant
from jaxzip._keys import named_key
from jaxzip._types import Mask, Params
from jaxzip.auto._common import layer_mask, share_weights
from jaxzip.paths import leaves_with_paths

__all__ = [
    "Build",
    "CodebookFn",
    "FinetuneFn",
    "PruneFn",
    "build_candidate",
    "takes_distill",
    "takes_rounds",
]

FinetuneFn = Callable[..., Params]
"""``finetune_fn(params, mask, *, key[, rounds][, distill]) -> params``: short training that
keeps the mask; with a ``rounds`` keyword it is asked for ``rounds`` times its usual length."""

PruneFn = Callable[..., Params]
"""``prune_fn(params, sparsity, *, key, rounds[, distill]) -> params``: training from the
baseline that prunes as it goes (e.g. gradual magnitude pruning) to ``sparsity[path]`` per
searched layer; the zeros of each layer it returns are that layer's mask."""

CodebookFn = Callable[..., Params]
"""``codebook_fn(books, *, key[, distill]) -> books``: fine-tunes the centroids (and float
leaves) of the shared weights, indices fixed (e.g. :func:`jaxzip.quant.make_codebook_step`).

A hook that takes a ``distill`` keyword distills from the dense model when it is True (its
default) and trains on the labels when it is False: the search may choose (see
:func:`takes_distill`)."""


@dataclasses.dataclass(frozen=True)
class Build:
    """How :func:`build_candidate` makes a candidate from the baseline: its training hooks.

    Attributes:
      finetune_fn: training after one-shot magnitude pruning that keeps the mask.
      prune_fn: training that prunes as it goes; replaces one-shot pruning and ``finetune_fn``.
      codebook_fn: fine-tuning of the k-means centroids after weight sharing.
      iters: Lloyd iterations of each codebook.
      unshared: how the float leaves left out of the search (biases) are stored, last
        (:func:`jaxzip.quant.quantize_unshared`); None keeps them float32.
    """

    finetune_fn: FinetuneFn | None = None
    prune_fn: PruneFn | None = None
    codebook_fn: CodebookFn | None = None
    iters: int = 20
    unshared: jz_quant.QuantSpec | None = None

    def describe(self) -> dict[str, Any]:
        """Which hooks are set, ``unshared`` if set, and ``distill_kw`` if the search may
        choose to train without distillation (part of a journal's config: they change every
        result)."""
        out: dict[str, Any] = {
            "finetune": self.finetune_fn is not None,
            "prune_fn": self.prune_fn is not None,
            "codebook_fn": self.codebook_fn is not None,
        }
        if self.unshared is not None:
            out["unshared"] = dataclasses.asdict(self.unshared)
        if takes_distill(self):
            out["distill_kw"] = True
        return out

    def hooks(self) -> tuple[Callable[..., Any], ...]:
        """The training hooks that are set."""
        return tuple(h for h in (self.finetune_fn, self.prune_fn, self.codebook_fn) if h)


def _takes(fn: Callable[..., Any], name: str) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    p = sig.parameters.get(name)
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


def takes_rounds(finetune_fn: Callable[..., Any]) -> bool:
    """Whether ``finetune_fn`` accepts a ``rounds`` keyword (one longer fine-tuning)."""
    return _takes(finetune_fn, "rounds")


def takes_distill(build: Build) -> bool:
    """Whether the search may build candidates without distillation: some hook of ``build``
    takes a ``distill`` keyword (those that do are called with ``distill=False`` then)."""
    return any(_takes(h, "distill") for h in build.hooks())


def _call(hook: Callable[..., Params], *args: Any, distill: bool, **kwargs: Any) -> Params:
    """``hook(*args, **kwargs)``, with ``distill=False`` when asked and the hook takes it."""
    extra = {} if distill or not _takes(hook, "distill") else {"distill": False}
    return hook(*args, **kwargs, **extra)


def _same_structure(what: str, got: Params, want: Params) -> None:
    if jax.tree.structure(got) != jax.tree.structure(want):
        raise ValueError(
            f"{what}: must return params of the input's structure "
            f"{jax.tree.structure(want)}, got {jax.tree.structure(got)}"
        )


def _pruned_by(params: Params, sparsity: Mapping[str, float]) -> Mask:
    """The mask ``prune_fn``'s result carries (its nonzeros), checked against the targets."""
    mask = jax.tree.map(lambda x: jnp.asarray(x) != 0, params)
    for path, m in leaves_with_paths(mask):
        if path in sparsity:
            n = int(np.size(m))
            zeros = n - int(jnp.count_nonzero(m))
            want = int(np.floor(float(sparsity[path]) * n))
            if zeros < want - max(1, n // 1000):
                raise ValueError(
                    f"prune_fn: must prune {path} to sparsity {sparsity[path]:g} "
                    f"({want} of {n} weights zero), got {zeros} zeros"
                )
    return mask


def _kinds(books: Params) -> tuple[Any, list[bool]]:
    leaves, treedef = jax.tree.flatten(books, is_leaf=jz_quant.is_quantized)
    return treedef, [jz_quant.is_quantized(x) for x in leaves]


def build_candidate(
    params: Params,
    sparsity: Mapping[str, float],
    bits: Mapping[str, int],
    *,
    build: Build,
    key: jax.Array,
    rounds: int = 1,
    distill: bool = True,
) -> Params:
    """prune (one-shot + ``finetune_fn``, or ``prune_fn``) → k-means per layer → ``codebook_fn``
    → ``build.unshared`` quantization of the other float leaves.

    With ``distill=False`` each hook that takes a ``distill`` keyword is called
    with ``distill=False`` (training on the labels instead of distilling).

    One-shot: each layer is pruned by magnitude, then ``finetune_fn`` trains
    with the mask kept. Longer fine-tuning (``rounds > 1``): a ``finetune_fn``
    that takes a ``rounds`` keyword is called once with it (e.g. to run one
    schedule ``rounds`` times as long); any other is applied ``rounds`` times
    in a row, round 0 with ``key`` and round ``i`` with ``named_key(key, f"round{i}")``.
    With ``build.prune_fn``, it is called once with the baseline, the sparsities
    and ``rounds`` instead, and each layer's zeros in its result are the mask.
    ``build.codebook_fn`` then fine-tunes the codebooks with ``named_key(key, "codebook")``.

    Returns the params with :class:`jaxzip.quant.KMeansArray` leaves for the layers
    (and :class:`jaxzip.quant.QArray` ones for the other float leaves with ``build.unshared``).
    """
    if build.prune_fn is not None:
        pruned = _call(
            build.prune_fn, params, dict(sparsity), key=key, rounds=rounds, distill=distill
        )
        _same_structure("prune_fn", pruned, params)
        mask = _pruned_by(pruned, sparsity)
    else:
        mask = layer_mask(params, sparsity)
        pruned = jz_prune.apply_mask(params, mask)
    if build.prune_fn is None and build.finetune_fn is not None:
        once = rounds > 1 and takes_rounds(build.finetune_fn)
        extra = {"rounds": rounds} if once else {}
        for i in range(1 if once else rounds):
            k = key if i == 0 else named_key(key, f"round{i}")
            tuned = _call(build.finetune_fn, pruned, mask, key=k, distill=distill, **extra)
            _same_structure("finetune_fn", tuned, params)
            pruned = jz_prune.apply_mask(tuned, mask)
    books = share_weights(pruned, bits, mask, iters=build.iters)
    if build.codebook_fn is not None:
        tuned = _call(build.codebook_fn, books, key=named_key(key, "codebook"), distill=distill)
        if _kinds(tuned) != _kinds(books):
            raise ValueError(
                "codebook_fn: must return books of the input's structure (a "
                "KMeansArray wherever the input has one)"
            )
        books = tuned
    if build.unshared is not None:
        books = jz_quant.quantize_unshared(books, build.unshared)
    return books
