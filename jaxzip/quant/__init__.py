"""Quantization: ``QArray``, calibration, PTQ, QAT, integer inference, weight sharing.

A quantized array is a pytree with a stated invariant (``QArray``:
``x ≈ (values - zero_point) * scale``); quantization is calibrate → scale →
round, each step available on its own. Options are frozen specs
(``QuantSpec(bits=4, axes=(-1,))``); selection of leaves is by ordered
``(where, spec)`` rules.

Example:
  >>> import jax.numpy as jnp
  >>> import jaxzip as jz
  >>> params = {"Dense_0": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}}
  >>> spec = jz.quant.QuantSpec(bits=4, axes=(-1,))
  >>> qparams = jz.quant.quantize_params(params, [(r".*/kernel", spec)])
  >>> jz.quant.dequantize_params(qparams)["Dense_0"]["kernel"].sum()
  Array(12., dtype=float32)
"""

from jaxzip.quant._apply import make_quantized_apply
from jaxzip.quant._awq import AWQResult, awq, awq_scales
from jaxzip.quant._binary import binarize, ternarize
from jaxzip.quant._calibrate import calibrate, compute_scale
from jaxzip.quant._collect import RangeCollector, RangeState, make_range_collector
from jaxzip.quant._fake import fake_quant, lsq_fake_quant, lsq_init_step
from jaxzip.quant._finetune import (
    CodebookState,
    finetune_codebooks,
    init_codebook_state,
    make_codebook_step,
)
from jaxzip.quant._gptq import check_obs_options, gptq_quantize_matrix
from jaxzip.quant._gptq_tree import gptq
from jaxzip.quant._intops import int_conv, int_dense
from jaxzip.quant._kernel import kernel_qarray, kernel_spec, layout_spec, stack_layers
from jaxzip.quant._kmeans import (
    KMeansArray,
    centroid_grads,
    codebook_centroids,
    kmeans,
    kmeans_params,
    replace_centroids,
)
from jaxzip.quant._obs_prune import obs_prune
from jaxzip.quant._params import (
    dequantize_params,
    fake_quant_params,
    init_lsq_steps,
    is_quantized,
    quantization_report,
    quantize_params,
    quantize_unshared,
)
from jaxzip.quant._qarray import QArray, dequantize
from jaxzip.quant._quantize import quantize
from jaxzip.quant._smoothquant import Smoothed, smooth_quant, smooth_scales
from jaxzip.quant._spec import MinMax, MSEClip, Percentile, QuantSpec
from jaxzip.quant._w8a8 import make_scaled_apply, w8a8

__all__ = [
    "AWQResult",
    "CodebookState",
    "KMeansArray",
    "MSEClip",
    "MinMax",
    "Percentile",
    "QArray",
    "QuantSpec",
    "RangeCollector",
    "RangeState",
    "Smoothed",
    "awq",
    "awq_scales",
    "binarize",
    "calibrate",
    "centroid_grads",
    "check_obs_options",
    "codebook_centroids",
    "compute_scale",
    "dequantize",
    "dequantize_params",
    "fake_quant",
    "fake_quant_params",
    "finetune_codebooks",
    "gptq",
    "gptq_quantize_matrix",
    "init_codebook_state",
    "init_lsq_steps",
    "int_conv",
    "int_dense",
    "is_quantized",
    "kernel_qarray",
    "kernel_spec",
    "kmeans",
    "kmeans_params",
    "layout_spec",
    "lsq_fake_quant",
    "lsq_init_step",
    "make_codebook_step",
    "make_quantized_apply",
    "make_range_collector",
    "make_scaled_apply",
    "obs_prune",
    "quantization_report",
    "quantize",
    "quantize_params",
    "quantize_unshared",
    "replace_centroids",
    "smooth_quant",
    "smooth_scales",
    "stack_layers",
    "ternarize",
    "w8a8",
]
