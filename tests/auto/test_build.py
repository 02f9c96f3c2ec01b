"""Tests of how a candidate is built: ``prune_fn`` (pruning while training) and ``codebook_fn``
(centroid fine-tuning), the hooks of :func:`jaxzip.auto.search` (issue 18, a wider space)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxzip import quant as jz_quant
from jaxzip._errors import ConfigError
from jaxzip.auto import SearchSpace
from jaxzip.auto._build import Build, build_candidate
from jaxzip.paths import leaves_with_paths

SPACE = SearchSpace(sparsities=(0.0, 0.5, 0.8), bits=(4, 2), kmeans_iters=5, refine=False)
LAYERS = {"Dense_0/kernel": 0.8, "Dense_1/kernel": 0.5}
BITS = {"Dense_0/kernel": 2, "Dense_1/kernel": 4}


def _prune_smallest_by_row_order(params, sparsity, *, key, rounds):
    """A stand-in prune_fn that does not prune by magnitude: zeros the *first* k weights."""

    def prune(path, x):
        if path not in sparsity:
            return x
        flat = np.asarray(x).ravel().copy()
        flat[: int(np.floor(sparsity[path] * flat.size))] = 0
        return flat.reshape(np.shape(x))

    paths = [p for p, _ in leaves_with_paths(params)]
    flat, treedef = jax.tree.flatten(params)
    return jax.tree.unflatten(treedef, [prune(p, x) for p, x in zip(paths, flat, strict=True)])


def test_prune_fn_replaces_one_shot_pruning_and_its_zeros_are_the_mask(mlp):
    calls = []

    def prune_fn(params, sparsity, *, key, rounds):
        calls.append((sparsity, rounds))
        assert np.count_nonzero(params["Dense_0"]["kernel"]) == params["Dense_0"]["kernel"].size
        return _prune_smallest_by_row_order(params, sparsity, key=key, rounds=rounds)

    def finetune_fn(params, mask, *, key):
        raise AssertionError("finetune_fn runs only after one-shot pruning")

    books = build_candidate(
        mlp,
        LAYERS,
        BITS,
        key=jax.random.key(0),
        rounds=3,
        build=Build(prune_fn=prune_fn, finetune_fn=finetune_fn, iters=3),
    )
    assert calls == [(LAYERS, 3)]
    w = np.asarray(books["Dense_0"]["kernel"].decode()).ravel()
    k = int(0.8 * w.size)
    assert np.all(w[:k] == 0) and np.count_nonzero(w[k:]) == w.size - k  # its mask, not magnitude


def test_a_prune_fn_that_does_not_prune_is_an_error_naming_the_layer(mlp):
    def lazy(params, sparsity, *, key, rounds):
        return params

    with pytest.raises(
        ValueError,
        match=r"prune_fn: must prune Dense_0/kernel to sparsity 0.8 "
        r"\(614 of 768 weights zero\), got 0 zeros",
    ):
        build_candidate(mlp, LAYERS, BITS, key=jax.random.key(0), build=Build(prune_fn=lazy))


def test_codebook_fn_output_is_what_is_encoded_and_scored(mlp, make_eval, run_search, tmp_path):
    seen = []

    def scale_centroids(books, *, key):
        seen.append(np.asarray(jax.random.key_data(key)).tolist())
        return jax.tree.map(
            lambda b: (
                jz_quant.replace_centroids({"w": b}, {"w": b.centroids * 0})["w"]
                if jz_quant.is_quantized(b)
                else b
            ),
            books,
            is_leaf=jz_quant.is_quantized,
        )

    r = run_search(
        mlp, make_eval(), SPACE, max_drop=1.0, codebook_fn=scale_centroids, out_dir=tmp_path
    )
    assert seen and len({str(s) for s in seen}) == len(seen)  # each candidate its own key
    decoded = r.params
    assert float(jnp.abs(decoded["Dense_0"]["kernel"]).max()) == 0.0  # the zeroed centroids
    assert all(t["accuracy"] <= 0.5 for t in r.trials)  # scored after codebook_fn: all-zero kernels


def test_codebook_fn_must_keep_the_books_structure(mlp):
    def unshare(books, *, key):
        return jz_quant.dequantize_params(books)

    with pytest.raises(ValueError, match="codebook_fn: must return books of the input's structure"):
        build_candidate(mlp, LAYERS, BITS, key=jax.random.key(0), build=Build(codebook_fn=unshare))


def test_hooks_are_part_of_the_journal_config(mlp, make_eval, run_search, tmp_path):
    kw = {"max_drop": 1.0, "max_trials": 1, "out_dir": tmp_path}
    run_search(mlp, make_eval(), SPACE, **kw)
    with pytest.raises(ConfigError, match="journal"):
        run_search(mlp, make_eval(), SPACE, prune_fn=_prune_smallest_by_row_order, **kw)


@pytest.mark.parametrize("name", ["prune_fn", "codebook_fn", "finetune_fn"])
def test_a_hook_that_is_not_callable_is_a_type_error(mlp, make_eval, run_search, name):
    with pytest.raises(TypeError, match=f"{name}: expected a callable or None, got 3"):
        run_search(mlp, make_eval(), SPACE, max_drop=1.0, **{name: 3})


def test_fits_estimates_a_trial_from_the_seconds_per_round_so_far(mlp, make_eval):
    from jaxzip.auto._trials import Trials

    kw = {
        "eval_fn": make_eval(),
        "build": Build(),
        "layers": ("Dense_0/kernel",),
        "key": jax.random.key(0),
        "max_drop": 0.1,
        "journal": None,
        "out_dir": None,
        "max_trials": None,
    }
    assert Trials(mlp, time_budget_s=None, **kw).fits(1000, 1000)  # no deadline
    trials = Trials(mlp, time_budget_s=100.0, **kw)
    assert trials.fits(8, 4)  # nothing timed yet
    trials.candidates = [{"seconds": 2.0}, {"seconds": 8.0, "rounds": 2}, {"seconds": 100.0}]
    assert trials.fits(4, 4)  # the median is 4 s per round: 64 s of about 100 left
    assert not trials.fits(8, 4)  # 128 s


def test_unshared_biases_are_stored_quantized_and_counted_in_the_candidate(
    mlp, make_eval, run_search, tmp_path
):
    spec = jz_quant.QuantSpec(bits=8)
    rng = np.random.default_rng(1)
    mlp = {  # trained biases are not zero (a copy: the fixture is shared by the session)
        name: {**layer, "bias": rng.normal(size=layer["bias"].shape).astype(np.float32) / 10}
        for name, layer in mlp.items()
    }
    books = build_candidate(
        mlp, LAYERS, BITS, key=jax.random.key(0), build=Build(iters=3, unshared=spec)
    )
    kinds = {
        p: type(x).__name__
        for p, x in jax.tree_util.tree_flatten_with_path(books, is_leaf=jz_quant.is_quantized)[0]
    }
    assert {k: v for k, v in kinds.items() if "bias" in str(k)} and all(
        v == "QArray" for k, v in kinds.items() if "bias" in str(k)
    )
    kw = {"max_drop": 1.0, "max_trials": 2}
    plain = run_search(mlp, make_eval(), SPACE, out_dir=tmp_path / "plain", **kw)
    small = run_search(mlp, make_eval(), SPACE, out_dir=tmp_path / "int8", unshared=spec, **kw)
    by_key = {t["key"]: t for t in plain.trials}
    biases = [p for p in plain.trials[0]["layer_bytes"] if p.endswith("bias")]
    for t in small.trials:  # same candidates (same settings): biases smaller, kernels equal
        p = by_key[t["key"]]
        for leaf in biases:  # 4 bytes per float, 1 per int8 and the scale
            assert t["layer_bytes"][leaf] < p["layer_bytes"][leaf] / 2
        for leaf in ("Dense_0/kernel", "Dense_1/kernel"):
            assert t["layer_bytes"][leaf] == p["layer_bytes"][leaf]
    decoded = small.params  # the stored model is the scored one
    assert jz_quant.is_quantized(jz_quant.quantize_unshared(decoded, spec)["Dense_0"]["bias"])
    with pytest.raises(ConfigError, match="journal"):  # part of the journal's config
        run_search(mlp, make_eval(), SPACE, out_dir=tmp_path / "plain", unshared=spec, **kw)
    with pytest.raises(TypeError, match=r"unshared: expected a jaxzip\.quant\.QuantSpec or None"):
        run_search(mlp, make_eval(), SPACE, unshared=8, **kw)
