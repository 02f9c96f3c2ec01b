"""Deep Compression's weight sharing (``[kmeans]``) and the compressed file (``[codec]``).

``kmeans_stage`` replaces the selected weights by per-layer k-means codebooks
(pruned weights, i.e. the ``[prune]`` mask or exact zeros of loaded params,
excluded and kept exactly zero), fine-tunes the centroids, and puts the decoded
params in the run state, so ``evaluate`` reports the compressed model.
``encode_stage`` writes the codebooks with :func:`jaxzip.codec.save`, loads the
file back and checks it decodes to exactly the evaluated params.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxzip import codec as jz_codec
from jaxzip import distill as jz_distill
from jaxzip import models as jz_models
from jaxzip import prune as jz_prune
from jaxzip import quant as jz_quant
from jaxzip import train as jz_train
from jaxzip._errors import ConfigError
from jaxzip._types import Mask, Params
from jaxzip.config import CodecConfig, ExperimentConfig, KMeansConfig, augment_of, run_key
from jaxzip.paths import (
    all_of,
    keystr,
    leaves_with_paths,
    min_ndim,
    not_,
    select,
    selected_paths,
)
from jaxzip.pipeline._core_stages import checkpoint_in
from jaxzip.pipeline._stage_utils import (
    MAX_LOSS_GROWTH,
    describe_val,
    divergence_hint,
    jsonable,
    leaked,
    log,
    val_figures,
    with_hint,
)
from jaxzip.pipeline._state import RunState

__all__ = ["codec_of", "encode_stage", "kmeans_stage"]


def codec_of(cfg: ExperimentConfig) -> CodecConfig | None:
    """The ``[codec]`` settings in effect: the section, or its defaults with ``[kmeans]`` or
    ``[quantize]``.

    Example:
      >>> from jaxzip.config import KMeansConfig
      >>> codec_of(ExperimentConfig()) is None, codec_of(ExperimentConfig(kmeans=KMeansConfig()))
      (True, CodecConfig(file='model.jz', write=True))
    """
    if cfg.codec is not None:
        return cfg.codec
    return CodecConfig() if cfg.kmeans is not None or cfg.quantize is not None else None


def _keep_mask(params: Params, state: RunState) -> Mask:
    """The ``[prune]`` mask if there is one, else where the params are nonzero."""
    if state.mask is not None:
        return state.mask
    return jz_prune.nonzero_mask(params)


def _make_books(params: Params, mask: Mask, cfg: ExperimentConfig) -> Params:
    k = cfg.kmeans
    try:
        select(params, k.where)
    except ValueError as e:
        raise ConfigError(f"kmeans.where: {e}") from None
    books = params
    for where, bits in (
        (all_of(k.where, min_ndim(4)), k.conv_bits),
        (all_of(k.where, not_(min_ndim(4))), k.dense_bits),
    ):
        if selected_paths(params, where, allow_empty=True):
            shared = jz_quant.kmeans_params(
                params, bits=bits, where=where, mask=mask, iters=k.iters
            )
            books = jax.tree.map(
                lambda s, b: s if jz_quant.is_quantized(s) else b,
                shared,
                books,
                is_leaf=jz_quant.is_quantized,
            )
    return books


def finetune_codebooks(
    cfg: ExperimentConfig,
    state: RunState,
    books: Params,
    mask: Mask,
    *,
    kmeans: KMeansConfig,
    key: jax.Array | None = None,
    teacher: Params | None = None,
) -> Params:
    """Trains the centroids and the float leaves (pruned float weights held at zero).

    :func:`jaxzip.quant.finetune_codebooks` with Adam at ``kmeans.learning_rate`` (cosine
    decay) for ``kmeans.finetune_epochs`` epochs over ``state.splits.train`` with
    ``[train]``'s batch size and augmentation; ``key`` defaults to the run's ``"kmeans"``
    key. The loss is cross-entropy on the labels, or with ``kmeans.distill_alpha > 0``
    :func:`jaxzip.distill.kd_loss` against ``teacher`` (default ``state.params``: the model
    before weight sharing). Used by the ``kmeans`` stage (which checkpoints it in its
    scratch directory, so a killed fine-tuning resumes) and by ``jaxzip auto`` (each
    candidate's ``codebook_fn``).
    """
    k, t, splits = kmeans, cfg.train, state.splits
    total = max(1, k.finetune_epochs * (len(splits.train) // t.batch_size))
    # unshared leaves keep their [prune] zeros; centroid arrays are all trainable
    trainable_mask = jax.tree.map(
        lambda b, m: jnp.ones(b.centroids.shape, bool) if jz_quant.is_quantized(b) else m,
        books,
        mask,
        is_leaf=jz_quant.is_quantized,
    )
    tx = optax.chain(
        optax.adam(optax.cosine_decay_schedule(k.learning_rate, decay_steps=total)),
        jz_prune.keep_masked(trainable_mask),
    )
    kd = None
    if k.distill_alpha > 0:
        kd = jz_distill.kd_loss(temperature=k.distill_temperature, alpha=k.distill_alpha)
    with with_hint(divergence_hint("kmeans.learning_rate", k.learning_rate)):
        return jz_quant.finetune_codebooks(
            state.apply_fn,
            books,
            splits.train,
            tx,
            epochs=k.finetune_epochs,
            batch_size=t.batch_size,
            key=run_key(cfg, "kmeans") if key is None else key,
            augment=augment_of(t),
            loss=kd,
            teacher_params=None if kd is None else (state.params if teacher is None else teacher),
            progress=bool(state.progress),
            max_loss_growth=MAX_LOSS_GROWTH,
            desc="kmeans fine-tune",
            checkpoint=checkpoint_in(state, "kmeans"),
        )


def kmeans_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: per-layer k-means codebooks, then centroid fine-tuning.

    Reads ``splits``, ``apply_fn``, ``params`` (and ``mask`` after ``[prune]``)
    from ``state``; returns ``books`` (the tree with
    :class:`~jaxzip.quant.KMeansArray` leaves), ``params`` (decoded from them),
    the ``mask`` and the report ``kmeans``.

    Raises:
      ConfigError: ``kmeans.where`` selects no weight of the model.
      RuntimeError: a pruned weight is nonzero after fine-tuning (a bug).
    """
    k, t, splits = cfg.kmeans, cfg.train, state.splits
    if k is None:
        raise ValueError("kmeans_stage: the config has no [kmeans] section")
    params = state.params
    mask = _keep_mask(params, state)
    books = _make_books(params, mask, cfg)
    decoded = jz_quant.dequantize_params(books)
    before = jz_train.evaluate(state.apply_fn, decoded, splits.val, batch_size=t.eval_batch_size)
    log(f"kmeans: {describe_val(val_figures(before))} before fine-tuning")
    if k.finetune_epochs > 0:
        books = finetune_codebooks(cfg, state, books, mask, kmeans=k)
    if k.unshared_bits:
        books = jz_quant.quantize_unshared(books, jz_quant.QuantSpec(bits=k.unshared_bits))
    decoded = jz_quant.dequantize_params(books)
    leaked_count = leaked(decoded, mask)
    if leaked_count:
        raise RuntimeError(
            f"kmeans_stage: {leaked_count} pruned weights are nonzero after fine-tuning"
        )
    after = jz_train.evaluate(state.apply_fn, decoded, splits.val, batch_size=t.eval_batch_size)
    layers: dict[str, Any] = {}
    masks = dict(leaves_with_paths(mask))
    flat = jax.tree_util.tree_flatten_with_path(books, is_leaf=jz_quant.is_quantized)[0]
    for kp, b in flat:
        if not isinstance(b, jz_quant.KMeansArray):
            continue
        path = keystr(kp)
        w, m = np.asarray(b.decode()), np.asarray(masks[path])
        layers[path] = {
            "bits": int(b.bits),
            "size": int(m.size),
            "kept": int(m.sum()),
            "distinct_values": int(np.unique(w[m]).size),
        }
    metrics: dict[str, Any] = {
        **{f"kmeans_{k}_before_finetune": v for k, v in val_figures(before).items()},
        **{f"kmeans_{k}": v for k, v in val_figures(after).items()},
        "kmeans_finetune_epochs": k.finetune_epochs,
        "kmeans_layers": len(layers),
        "kmeans_unshared_bits": k.unshared_bits,
    }
    for path, layer in layers.items():
        metrics[f"bits[{path}]"] = layer["bits"]
    report = {"layers": layers, **metrics}
    updates = {
        "books": books,
        "params": decoded,
        "mask": mask,
        "reports": {"kmeans": jsonable(report)},
    }
    return updates, metrics


def _same_tree(a: Params, b: Params) -> str | None:
    """None if ``a`` and ``b`` hold bit-identical arrays at the same paths, else what differs."""
    la, lb = dict(leaves_with_paths(a)), dict(leaves_with_paths(b))
    if la.keys() != lb.keys():
        return f"paths differ: {sorted(la.keys() ^ lb.keys())}"
    for path, x in la.items():
        x, y = np.asarray(x), np.asarray(lb[path])
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            return f"{path}: {y.dtype}{list(y.shape)} differs from the evaluated {x.dtype}{list(x.shape)}"
    return None


def encode_stage(cfg: ExperimentConfig, state: RunState) -> tuple[dict, dict]:
    """Stage: writes ``out_dir/<codec.file>`` and checks it decodes to the evaluated params.

    Encodes ``books`` from ``state`` (the codebooks of ``[kmeans]``, the ``QArray`` kernels
    of ``[quantize]``) or else
    ``params``; reports the file's bytes, ``compression_ratio = 4 *
    param_count / file_bytes`` and the per-leaf size report under
    the report ``codec``; prints the size table to stderr.

    Raises:
      RuntimeError: the file read back does not decode to exactly the evaluated params.
    """
    c = codec_of(cfg)
    if c is None:
        raise ValueError("encode_stage: the config has neither [codec] nor [kmeans]")
    path = Path(state.out_dir) / c.file
    params = state.params
    jz_codec.save(path, params if state.books is None else state.books)
    data = path.read_bytes()
    problem = _same_tree(params, jz_quant.dequantize_params(jz_codec.load(path)))
    if problem is not None:
        raise RuntimeError(
            f"encode_stage: {str(path)!r} does not decode to the evaluated params: {problem}"
        )
    report = jz_codec.size_report(data)
    log(jz_codec.format_size_report(report))
    n = jz_models.param_count(params)
    ratio = 4 * n / len(data)
    metrics = {"file_bytes": len(data), "compression_ratio": ratio}
    out = {
        "file": c.file,
        "file_bytes": len(data),
        "param_count": n,
        "compression_ratio": ratio,
        "size_report": report.to_dict(),
    }
    return {"reports": {"codec": jsonable(out)}}, metrics
