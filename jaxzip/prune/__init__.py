"""Pruning: scores → allocation → masks for a structure → apply, schedules, Optax transforms.

Masks are bool trees with the params' structure (False = pruned, all-True on
untouched leaves). Sparsity is exact (``round(s * n)`` pruned) with ties broken
by position, and works under ``jit`` and ``vmap`` (several sparsities at once).
Training keeps pruned weights exactly zero through :func:`keep_masked` or
:func:`gradual_pruning` at the end of an ``optax.chain``; :func:`compact`
physically removes pruned channels.

Example:
  >>> import jax.numpy as jnp
  >>> import jaxzip as jz
  >>> params = {"Dense_0": {"kernel": jnp.arange(1.0, 9.0).reshape(4, 2), "bias": jnp.zeros(2)}}
  >>> mask = jz.prune.magnitude_mask(params, sparsity=0.5, where=r".*/kernel")
  >>> jz.prune.apply_mask(params, mask)["Dense_0"]["kernel"]
  Array([[0., 0.],
         [0., 0.],
         [5., 6.],
         [7., 8.]], dtype=float32)
"""

from jaxzip.prune._allocation import ERK, Explicit, Global, Uniform, erk_sparsities
from jaxzip.prune._compact import compact, mask_channel_biases
from jaxzip.prune._masks import apply_mask, magnitude_mask, make_mask, mask_and, mask_or
from jaxzip.prune._optax import (
    GradualPruningState,
    KeepMaskedState,
    gradual_pruning,
    keep_masked,
)
from jaxzip.prune._schedules import (
    OneShotSparsity,
    PolynomialSparsity,
    iterative_rounds,
    one_shot_sparsity,
    polynomial_sparsity,
    rewind,
)
from jaxzip.prune._scores import (
    accumulate_movement,
    init_movement,
    magnitude_scores,
    random_scores,
    saliency_scores,
)
from jaxzip.prune._sparsegpt import sparsegpt, sparsegpt_prune_matrix
from jaxzip.prune._stats import flops, mask_stats, nonzero_mask
from jaxzip.prune._structures import Block, Channel, NByM, Unstructured
from jaxzip.prune._topk import topk_mask
from jaxzip.prune._wanda import wanda, wanda_mask_matrix

__all__ = [
    "ERK",
    "Block",
    "Channel",
    "Explicit",
    "Global",
    "GradualPruningState",
    "KeepMaskedState",
    "NByM",
    "OneShotSparsity",
    "PolynomialSparsity",
    "Uniform",
    "Unstructured",
    "accumulate_movement",
    "apply_mask",
    "compact",
    "erk_sparsities",
    "flops",
    "gradual_pruning",
    "init_movement",
    "iterative_rounds",
    "keep_masked",
    "magnitude_mask",
    "magnitude_scores",
    "make_mask",
    "mask_and",
    "mask_channel_biases",
    "mask_or",
    "mask_stats",
    "nonzero_mask",
    "one_shot_sparsity",
    "polynomial_sparsity",
    "random_scores",
    "rewind",
    "saliency_scores",
    "sparsegpt",
    "sparsegpt_prune_matrix",
    "topk_mask",
    "wanda",
    "wanda_mask_matrix",
]
