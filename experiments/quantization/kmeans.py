"""Part 4: Deep Compression's weight sharing after pruning (Han et al. 2016).

The pruned model comes from ``--pruned-params`` (e.g. the ``params.npz`` written by
``jaxzip run experiments/lenet300100_prune.toml``; its mask is where the kernels are
nonzero) or is made here: magnitude pruning of the kernels with one global threshold
to ``--sparsity`` in ``--prune-rounds`` rounds, each followed by ``--prune-epochs`` of
retraining with the pruned weights held at zero (``keep_masked``). Then every kernel
gets its own k-means codebook (``--dense-bits`` for Dense, ``--conv-bits`` for Conv;
pruned weights take no part and decode to exactly 0), and the centroids (and biases)
are fine-tuned for ``--epochs`` with ``make_codebook_step`` (Adam, cosine decay).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxzip as jz
from quantization.common import (
    BATCH_SIZE,
    CONV_KERNELS,
    DENSE_KERNELS,
    KERNELS,
    Context,
    Mask,
    Params,
    finetune,
    log,
    make_row,
    sgd,
    test_error,
)


def kernel_mask_of(params: Params) -> Mask:
    """The keep-mask of a pruned tree: kernels' nonzeros; every other leaf all-True."""
    return jz.paths.map_with_paths(
        lambda path, p: p != 0 if jz.paths.matches(KERNELS, path, p) else jnp.ones(p.shape, bool),
        params,
    )


def prune(ctx: Context) -> tuple[Params, Mask]:
    """Iterative global magnitude pruning of the kernels with retraining (see module doc)."""
    args = ctx.args
    targets = (
        *jz.prune.iterative_rounds(args.sparsity, rounds=args.prune_rounds)[:-1],
        args.sparsity,
    )
    params = ctx.params
    mask = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
    for r, target in enumerate(targets, start=1):
        mask = jz.prune.magnitude_mask(
            jz.prune.apply_mask(params, mask),
            sparsity=target,
            where=KERNELS,
            allocation=jz.prune.Global(),
        )
        params = jz.prune.apply_mask(params, mask)
        log(f"  prune round {r}/{len(targets)}: kernel sparsity {target:.4f}")
        if args.prune_epochs > 0:
            # copy the mask: the train step donates its state, keep_masked's mask included
            tx = optax.chain(
                sgd(ctx, args.prune_lr, args.prune_epochs),
                jz.prune.keep_masked(jax.tree.map(jnp.copy, mask)),
            )
            params = finetune(ctx, params, tx, epochs=args.prune_epochs)
    return params, mask


def make_books(params: Params, mask: Mask, *, dense_bits: int, conv_bits: int) -> Params:
    """Per-kernel k-means codebooks: ``dense_bits`` for Dense kernels, ``conv_bits`` for Conv."""
    books = jz.quant.kmeans_params(params, bits=dense_bits, where=DENSE_KERNELS, mask=mask)
    if jz.paths.selected_paths(params, CONV_KERNELS, allow_empty=True):
        conv = jz.quant.kmeans_params(params, bits=conv_bits, where=CONV_KERNELS, mask=mask)
        books = jax.tree.map(
            lambda c, d: c if jz.quant.is_quantized(c) else d,
            conv,
            books,
            is_leaf=jz.quant.is_quantized,
        )
    return books


def finetune_codebooks(ctx: Context, books: Params) -> Params:
    """Trains the centroids and the float leaves for ``--epochs``; indices and masks stay fixed."""
    args = ctx.args
    total = max(1, args.epochs * (len(ctx.splits.train) // BATCH_SIZE))
    tx = optax.adam(optax.cosine_decay_schedule(args.kmeans_lr, decay_steps=total))
    augment, apply_fn = ctx.augment, ctx.apply_fn

    def loss_fn(params: Params, batch: dict[str, jax.Array]) -> jax.Array:
        x = batch["x"] if augment is None else augment(batch["x"], key=batch["key"])
        logits = apply_fn(params, x, train=True, key=None)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    codebook_step = jz.quant.make_codebook_step(loss_fn, tx)

    def step(state: Any, batch: dict[str, Any], key: jax.Array) -> tuple[Any, Any]:
        # step i draws its shifts from fold_in(key, i), as the train steps do
        return codebook_step(state, books, {**batch, "key": jax.random.fold_in(key, state.step)})

    def report(record: dict[str, Any], state: Any) -> None:
        loss, seconds = record["train_loss"], record["seconds"]
        log(f"    centroid epoch {record['epoch']}/{args.epochs}: loss {loss:.4f} ({seconds:.1f}s)")

    state, _ = jz.train.run_epochs(
        step,
        jz.quant.init_codebook_state(books, tx),
        ctx.splits.train,
        key=jax.random.key(args.seed),
        epochs=args.epochs,
        batch_size=BATCH_SIZE,
        callbacks=[report],
    )
    return jz.quant.replace_centroids(books, state.trainable)


def sharing_checks(books: Params, mask: Mask) -> dict[str, Any]:
    """Exact sparsity and weight sharing of the decoded kernels, per layer and overall."""
    decoded = jz.quant.dequantize_params(books)
    layers, leaked, exact = {}, 0, True
    masks = dict(jz.paths.leaves_with_paths(mask))
    for path, w in jz.paths.leaves_with_paths(decoded):
        if not jz.paths.matches(KERNELS, path, w):
            continue
        w, m = np.asarray(w), np.asarray(masks[path])
        leak = int(np.count_nonzero(w[~m]))
        layer_exact = leak == 0 and np.array_equal(w != 0, m)
        layers[path] = {
            "kept": int(m.sum()),
            "size": int(m.size),
            "sparsity": 1.0 - float(m.sum()) / m.size,
            "distinct_values": int(np.unique(w[m]).size),
            "pruned_but_nonzero": leak,
            "sparsity_exact": bool(layer_exact),
        }
        leaked, exact = leaked + leak, exact and layer_exact
    return {"layers": layers, "pruned_but_nonzero": leaked, "sparsity_exact": exact}


def codebook_bits(books: Params) -> dict[str, int]:
    """The index width of each codebook, by path."""
    flat = jax.tree_util.tree_flatten_with_path(books, is_leaf=jz.quant.is_quantized)[0]
    return {jz.paths.keystr(kp): int(b.bits) for kp, b in flat if jz.quant.is_quantized(b)}


def run_kmeans(ctx: Context) -> list[dict[str, Any]]:
    """Pruned float → k-means codebooks → centroid fine-tuning; three rows."""
    args = ctx.args
    start = time.perf_counter()
    if args.pruned_params is not None:
        pruned = jz.train.load_params(args.pruned_params, ctx.params)
        mask, source = kernel_mask_of(pruned), str(args.pruned_params)
        log(f"  pruned params from {source}")
    else:
        pruned, mask = prune(ctx)
        source = f"magnitude, global, {args.prune_rounds} round(s) x {args.prune_epochs} epoch(s)"
    kernels = jz.prune.mask_stats(mask, where=KERNELS)
    overall = jz.prune.mask_stats(jz.prune.nonzero_mask(pruned))
    sparsity = {
        "kernel_sparsity": kernels["sparsity"],
        "overall_sparsity": overall["sparsity"],
        "pruned_from": source,
    }
    err_pruned = test_error(ctx, pruned)
    log(
        f"  pruned: kernel sparsity {kernels['sparsity']:.4f}, all params "
        f"{overall['sparsity']:.4f}, test error {100 * err_pruned:.2f}%"
    )
    rows = [
        make_row(
            ctx,
            part="kmeans",
            method="pruned (float)",
            bits=32,
            granularity="-",
            calibration="-",
            error=err_pruned,
            seconds=round(time.perf_counter() - start, 2),
            **sparsity,
        )
    ]
    books = make_books(pruned, mask, dense_bits=args.dense_bits, conv_bits=args.conv_bits)
    widths = codebook_bits(books)
    has_conv = any(jz.paths.matches(CONV_KERNELS, path) for path in widths)
    label = f"{args.dense_bits}/{args.conv_bits}" if has_conv else str(args.dense_bits)
    for method, stage in (("pruned + k-means", None), ("+ centroid fine-tune", "ft")):
        start = time.perf_counter()
        if stage == "ft":
            books = finetune_codebooks(ctx, books)
        error = test_error(ctx, jz.quant.dequantize_params(books))
        checks = sharing_checks(books, mask)
        rows.append(
            make_row(
                ctx,
                part="kmeans",
                method=method,
                bits=label,
                granularity="per-layer codebook",
                calibration="k-means",
                error=error,
                codebook_bits=widths,
                epochs=args.epochs if stage else 0,
                seconds=round(time.perf_counter() - start, 2),
                **sparsity,
                **checks,
            )
        )
        log(
            f"  {method}: test error {100 * error:.2f}%, sparsity exactly kept: "
            f"{checks['sparsity_exact']}"
        )
    return rows
