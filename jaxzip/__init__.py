"""jaxzip: make neural networks small and keep them accurate, in JAX.

Subpackages (import ``jaxzip as jz`` and use ``jz.<name>``):

* ``jz.auto``: sensitivity analysis, accuracy-bounded compression search, student construction.
* ``jz.calib``: calibration statistics per matmul kernel (XᵀX, channel norms, absmax), streamed.
* ``jz.config``: TOML experiment configs, validated; the one table where config names become objects.
* ``jz.codec``: the compressed file: bit packing, sparse positions, ANS/Huffman coding, size reports.
* ``jz.paths``: ``where=`` selection of leaves by path.
* ``jz.data``: MNIST-family IDX datasets and scikit-learn's digits.
* ``jz.deploy``: export a compressed model with ``jax.export`` and run it without its Python source.
* ``jz.io``: atomic file writes (the one write path for every file jaxzip produces).
* ``jz.layout``: kernel layouts traced from the model (which axes a matmul contracts), matmul hooks.
* ``jz.distill``: distillation losses (KD, DKD, hints, attention) and one jitted, vmappable, shardable step.
* ``jz.models``: reference models (LeNet-300-100, LeNet-5, MLPs, a small CNN).
* ``jz.prune``: pruning scores, structures, allocation, masks, schedules and Optax transforms.
* ``jz.quant``: QArray, PTQ, QAT (straight-through, LSQ), k-means weight sharing, integer inference.
* ``jz.train``: a jitted train step, evaluation and a fit loop.
* ``jz.pipeline``: the run of a config's steps behind ``jaxzip run`` and ``jaxzip auto``, with its cache.
"""

from jaxzip import (
    auto,
    calib,
    codec,
    config,
    data,
    deploy,
    distill,
    io,
    layout,
    models,
    paths,
    pipeline,
    prune,
    quant,
    train,
)
from jaxzip._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DirectoryLockedError,
    DivergedError,
    JaxzipError,
    NonFiniteError,
    UnsafePathError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DirectoryLockedError",
    "DivergedError",
    "JaxzipError",
    "NonFiniteError",
    "UnsafePathError",
    "__version__",
    "auto",
    "calib",
    "codec",
    "config",
    "data",
    "deploy",
    "distill",
    "io",
    "layout",
    "models",
    "paths",
    "pipeline",
    "prune",
    "quant",
    "train",
]
