"""The bad-input catalogue: invalid calls across the public API and the CLI, one table.

Each :class:`Case` is a call (Python source, evaluated in a small namespace of
tiny params, datasets and files written by :func:`_build_env`), the exception
it must raise, and fragments its message must contain: the argument or path,
what was expected and what was given. CLI cases run ``jaxzip.cli.main``
in-process and must exit with status 2, printing one error line (argparse usage
errors: the usage, then one line) and no traceback. Each ``cfg({...})`` config
case is also written as a TOML file and given to ``jaxzip run``
(:func:`test_config_case_through_the_cli`); :func:`cli_case_count` counts the
cases run through the command line (issue 19's target: at least 100).

``docs/errors.md`` is rendered from the same table by :func:`render_markdown`;
regenerate it with ``python tests/test_bad_input_catalogue.py --write``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import shlex
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import pytest

import jaxzip as jz
from jaxzip._io import atomic_write_text, directory_lock
from jaxzip.cli import main as cli_main
from jaxzip.config._load import MAX_CONFIG_BYTES

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
REGENERATE = "python tests/test_bad_input_catalogue.py --write"


class CliError(Exception):
    """Raised by the ``cli`` helper after ``jaxzip`` exits with status 2; holds its stderr."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One invalid call: ``call`` must raise ``exc_type`` with every ``must_contain`` fragment."""

    id: str
    call: str
    exc_type: type[BaseException]
    must_contain: tuple[str, ...]
    area: str = ""


def _area(area: str, *cases: tuple[str, str, type[BaseException], tuple[str, ...]]) -> list[Case]:
    return [
        Case(id=f"{area}-{i}", call=c, exc_type=e, must_contain=m, area=area)
        for i, c, e, m in cases
    ]


FE, DE, CE, VE, TE = jz.codec.FormatError, jz.DataError, jz.ConfigError, ValueError, TypeError
KE = jz.CheckpointError
NOFILE = FileNotFoundError
KD = "jz.distill.kd_loss(temperature=2.0, alpha=0.5)"
R = ["run", "--no-progress", "--out", "out", "--set"]  # prefix of the `jaxzip run --set` cases
EXPORT = ["export", "--out", "o.jzx", "--weights", "w.jz", "--model", "lenet_300_100"]
MLP8 = ["model.name=mlp", "--set", "model.widths=[8]"]  # after R's --set: a 618-param MLP
MLP32 = ["model.name=mlp", "--set", "model.widths=[32]", "--set", "train.epochs=1"]
DEEP = "[" * 100_000  # a value nested 100,000 deep
SHOWN = {"R": R, "EXPORT": EXPORT, "MLP8": MLP8, "MLP32": MLP32, "DEEP": "[[[...(100,000 [)"}

# fmt: off
CASES: list[Case] = [
    *_area(
        "paths",
        ("bad-regex", 'jz.paths.select(P, "(kernel")', VE, ("where", "invalid regex", "'(kernel'")),
        ("not-a-where", "jz.paths.select(P, 3)", TE, ("where", "a predicate", "got int 3")),
        ("bytes-where", 'jz.paths.matches(b"k", "a")', TE, ("where", "regex string", "got bytes")),
        ("empty-sequence", "jz.paths.select(P, [])", VE, ("where", "non-empty sequence", "got []")),
        ("no-match", 'jz.paths.select(P, ".*/kernal")', VE,
         ("where='.*/kernal'", "selects no leaf", "existing paths: 'Dense_0/bias'")),
        ("not-full-match", 'jz.paths.selected_paths(P, "kernel")', VE,
         ("where='kernel'", "full-matched", "'Dense_0/kernel'")),
        ("min-ndim", "jz.paths.min_ndim(-1)", VE, ("min_ndim: n", "non-negative int", "got -1")),
        ("all-of-empty", "jz.paths.all_of()", VE, ("all_of", "at least one where", "got none")),
        ("not-bad", "jz.paths.not_(3.5)", TE, ("where", "a predicate", "got float 3.5")),
    ),
    *_area(
        "data",
        ("idx-missing", 'jz.data.read_idx("missing.idx")', DE, ("missing.idx", "does not exist")),
        ("idx-bad-magic", 'jz.data.read_idx("bad_magic.idx")', DE,
         ("bad_magic.idx", "expected it to start with 0000", "bad magic number 01020802")),
        ("idx-truncated", 'jz.data.read_idx("truncated.idx")', DE,
         ("truncated.idx", "header declares shape (2, 3) of uint8, 6 bytes", "has 4 bytes")),
        ("idx-short-header", 'jz.data.read_idx("short_header.idx")', DE,
         ("short_header.idx", "truncated", "ends inside the dimensions")),
        ("idx-zero-dims", 'jz.data.read_idx("zero_dims.idx")', DE,
         ("zero_dims.idx", "expected at least 1", "declares 0 dimensions")),
        ("idx-bad-type", 'jz.data.read_idx("bad_type.idx")', DE,
         ("bad_type.idx", "expected one of 0x08", "unknown type code 0x07")),
        ("idx-bad-gzip", 'jz.data.read_idx("corrupt.idx.gz")', DE,
         ("corrupt.idx.gz", "corrupt or unreadable")),
        ("idx-md5-format", 'jz.data.read_idx("ok.idx", md5="xyz")', VE,
         ("md5", "32 lowercase hex digits", "'xyz'")),
        ("idx-md5-mismatch", 'jz.data.read_idx("ok.idx", md5="0" * 32)', DE,
         ("ok.idx", "fails its checksum", "expected 0000")),
        ("write-idx-dtype", 'jz.data.write_idx("x.idx", np.zeros(2, np.complex64))', TE,
         ("write_idx: array dtype", "one of uint8", "got complex64")),
        ("write-idx-scalar", 'jz.data.write_idx("x.idx", np.array(1, np.uint8))', VE,
         ("write_idx: array", "1 to 255 dimensions", "got 0")),
        ("dataset-x-range", "dataset(x=np.full((2, 2, 2, 1), 3.0, np.float32))", DE,
         ("Dataset 't'", "x must lie in [0, 1]", "[3.0, 3.0]")),
        ("dataset-x-ndim", "dataset(x=np.zeros((2, 4), np.float32))", DE,
         ("Dataset 't'", "x must have 4 dimensions", "got shape (2, 4)")),
        ("dataset-lengths", "dataset(y=np.zeros(3, np.int32))", DE,
         ("x and y", "same length", "got 2 and 3")),
        ("dataset-y-dtype", "dataset(y=np.zeros(2, np.float32))", TE,
         ("y must be a numpy int32 array", "got float32")),
        ("dataset-labels", "dataset(y=np.full(2, 5, np.int32))", DE,
         ("labels must lie in [0, 2)", "[5, 5]")),
        ("batches-size", "jz.data.batches(ds, 0, seed=0)", VE,
         ("batches: batch_size", "at least 1", "got 0")),
        ("batches-seed", 'jz.data.batches(ds, 2, seed="0")', TE,
         ("batches: seed", "must be an int", "got '0'")),
        ("split-fraction", "jz.data.train_val_split(ds, val_fraction=1.5, seed=0)", VE,
         ("val_fraction", "lie in (0, 1)", "got 1.5")),
        ("digits-split", 'jz.data.load_digits(split="dev", seed=0)', VE,
         ("load_digits: split", "'train' or 'test'", "got 'dev'")),
        ("mnist-split", 'jz.data.load_mnist("no_such_dir", split="dev", download=False)', VE,
         ("mnist: split", "'train' or 'test'", "got 'dev'")),
        ("mnist-missing-dir", 'jz.data.load_mnist("no_such_dir", download=False, progress=False)',
         DE, ("no_such_dir", "lacks train-images-idx3-ubyte")),
        ("splits-name", 'jz.data.load_splits("cifar", val_fraction=0.1, seed=0)', VE,
         ("load_splits: name", "'digits', 'mnist'", "got 'cifar'")),
        ("idx-needs-dir", 'jz.data.load_splits("idx", val_fraction=0.1, seed=0)', VE,
         ("load_splits: 'idx' needs data_dir", "directory of your IDX files")),
        ("idx-missing-dir", 'jz.data.load_idx_dir("no_such_dir", split="test")', DE,
         ("idx test split", "no_such_dir", "lacks t10k-images-idx3-ubyte")),
    ),
    *_area(
        "models",
        ("mlp-widths", "jz.models.init_params(jz.models.MLP(widths=(-1,)), key, x4)", VE,
         ("MLP: widths", "tuple of positive ints", "(-1,)")),
        ("mlp-dropout", "jz.models.init_params(jz.models.MLP((3,), dropout_rate=1.5), key, x4)",
         VE, ("MLP: dropout_rate", "in [0, 1)", "got 1.5")),
        ("mlp-input-dropout",
         "jz.models.init_params(jz.models.MLP((3,), input_dropout_rate=-0.2), key, x4)",
         VE, ("MLP: input_dropout_rate", "in [0, 1)", "got -0.2")),
        ("init-key", "jz.models.init_params(jz.models.MLP(widths=(3,)), 0, x4)", TE,
         ("init_params: key", "PRNG key", "got int 0")),
        ("init-module", 'jz.models.init_params("mlp", key, x4)', TE,
         ("init_params: module", "flax.linen Module", "str")),
        ("lenet5-shape", "jz.models.init_params(jz.models.LeNet5(), key, np.zeros((1, 28, 28)))",
         VE, ("LeNet5: x", "(N, H, W, C)", "got shape (1, 28, 28)")),
        ("lenet5-small-images",
         "jz.models.init_params(jz.models.LeNet5(), key, np.zeros((1, 8, 8, 1)))",
         VE, ("LeNet5: x", "at least 16x16 pixels", "got 8x8")),
        ("apply-fn-module", "jz.models.linen_apply_fn(len)", TE,
         ("linen_apply_fn: module", "flax.linen Module", "function")),
        ("param-count-leaf", 'jz.models.param_count({"a": "x"})', TE,
         ("params leaf 'a'", "an array, a number", "got str 'x'")),
        ("scan-params", 'jz.models.scan_params({"embed": 1})', VE,
         ("scan_params", "the params of a loop-built Transformer", "got the keys ['embed']")),
        ("transformer-scan-layers", "jz.models.Transformer(scan_layers=1)", VE,
         ("Transformer: scan_layers", "must be a bool", "got 1")),
    ),
    *_area(
        "train",
        ("random-shift", "jz.train.RandomShift(pixels=-1)", VE,
         ("RandomShift: pixels", "int >= 1", "got -1")),
        ("params-missing", 'jz.train.load_params("missing.npz", P)', NOFILE,
         ("load_params", "no params file", "missing.npz")),
        ("params-structure", 'jz.train.load_params("other.npz", P)', KE,
         ("other.npz", "missing paths ['Dense_0/bias', 'Dense_0/kernel']",
          "unexpected paths ['a']")),
        ("params-shape", 'jz.train.load_params("narrow.npz", P)', KE,
         ("'Dense_0/kernel' expected shape (4, 3)", "file has shape (4, 2)")),
        ("step-batch-keys", 'jz.train.make_train_step(linear, tx)(state(), {"x": x22}, key)', VE,
         ("batch is missing key(s) ['y']", "expected keys 'x'", "got keys ['x']")),
        ("evaluate-per-example",
         "jz.train.evaluate(linear, np.zeros((4, 2)), ds, per_example='yes')", TypeError,
         ("per_example", "must be a bool", "got 'yes'")),
        ("evaluate-batch", "jz.train.evaluate(linear, np.zeros((4, 2)), ds, batch_size=0)", VE,
         ("evaluate: batch_size", "at least 1", "got 0")),
        ("fit-epochs", "jz.train.fit(linear, P, tx, ds, epochs=0, batch_size=2, key=key)", VE,
         ("fit: epochs", "at least 1", "got 0")),
        ("fit-key", "jz.train.fit(linear, P, tx, ds, epochs=1, batch_size=2, key=0)", TE,
         ("fit: key", "a PRNG key such as jax.random.key(0)", "got int 0")),
        ("checkpoint-every", 'jz.train.Checkpoint("ckpt", every_seconds=-1)', VE,
         ("Checkpoint: every_seconds", "a number >= 0", "got -1")),
        ("checkpoint-directory", 'jz.train.Checkpoint("")', TE,
         ("Checkpoint: directory", "a non-empty path", "got ''")),
        ("fit-checkpoint",
         'jz.train.fit(linear, P, tx, ds, epochs=1, batch_size=2, key=key, checkpoint="ckpt")',
         TE, ("checkpoint", "a Checkpoint or None", "got 'ckpt'")),
    ),
    *_area(
        "prune",
        ("sparsity-range", "jz.prune.magnitude_mask(P, sparsity=1.5)", VE,
         ("sparsity", "a value in [0, 1)", "got 1.5")),
        ("random-key", "jz.prune.random_scores(P, key=0)", TypeError,
         ("random_scores: key", "PRNG key", "got int 0")),
        ("where-no-match", 'jz.prune.magnitude_mask(P, sparsity=0.5, where="nope")', VE,
         ("where='nope'", "selects no leaf", "'Dense_0/kernel'")),
        ("nbym-order", "jz.prune.NByM(3, 2)", VE, ("NByM", "1 <= n < m", "n=3, m=2")),
        ("nbym-divide", 'jz.prune.make_mask(K35, sparsity=0.5, where="k", structure=NBYM)', VE,
         ("NByM: m=4", "must divide", "axis -1 of leaf 'k' (shape (3, 5))")),
        ("block-shape", "jz.prune.Block((0, 2))", VE,
         ("Block: shape", "tuple of ints >= 1", "got (0, 2)")),
        ("block-divide", 'jz.prune.make_mask(K35, sparsity=0.5, where="k", structure=BLOCK)', VE,
         ("Block: block shape (2, 2)", "does not divide", "leaf 'k' of shape (3, 5)")),
        ("erk-power", "jz.prune.ERK(power=-1.0)", VE, ("ERK: power", "[0, 10]", "got -1.0")),
        ("explicit-rule", 'jz.prune.Explicit(rules=((".*", 1.5),))', VE,
         ("rules[0] sparsity", "[0, 1)", "got 1.5")),
        ("channel-ord", "jz.prune.Channel(ord=3)", VE, ("Channel: ord", "1 or 2", "got 3")),
        ("layer-axes-unselected",
         'jz.prune.magnitude_mask(P, sparsity=0.5, layer_axes={"Dense_0/bias": 0})', VE,
         ("layer_axes['Dense_0/bias']", "one of the selected leaves", "where= does not select")),
        ("layer-axes-axis",
         'jz.prune.magnitude_mask(P, sparsity=0.5, layer_axes={"Dense_0/kernel": 2})', VE,
         ("layer_axes['Dense_0/kernel']", "an axis of the leaf's 2", "got 2")),
        ("mask-structure", 'jz.prune.apply_mask(P, {"Dense_0": {"kernel": MASK_K}})', VE,
         ("mask", "the params' structure", "path 'Dense_0/bias'")),
        ("mask-shape", "jz.prune.apply_mask(P, NARROW_MASK)", VE,
         ("at path 'Dense_0/kernel'", "params' structure and shapes", "(4, 3) vs (4, 2)")),
        ("mask-dtype", "jz.prune.apply_mask(P, jax.tree.map(np.ones_like, P))", VE,
         ("mask", "expected bool leaves", "got dtype float32 at path 'Dense_0/bias'")),
        ("keep-masked-tree", "jz.prune.keep_masked([True, False]).init(P)", VE,
         ("mask", "params' structure", "faces path '0'")),
        ("mask-and-trees", 'jz.prune.mask_and(MASK, {"b": MASK_K})', VE,
         ("mask_and: masks[1]", "params' structure", "path 'b'")),
        ("schedule-steps", "jz.prune.polynomial_sparsity(0.9, begin_step=10, end_step=5)", VE,
         ("end_step", "an int >= 11", "got 5")),
        ("rounds", "jz.prune.iterative_rounds(0.9, rounds=0)", VE,
         ("rounds", "an int >= 1", "got 0")),
        ("compact-layer", 'jz.prune.compact(P, MASK, layers=["Nope"])', VE,
         ("layers", "no layer 'Nope'", "in params")),
        ("gradual-every", "jz.prune.gradual_pruning(SCHEDULE, update_every=0)", VE,
         ("update_every", "an int >= 1", "got 0")),
    ),
    *_area(
        "quant",
        ("spec-bits", "jz.quant.QuantSpec(bits=0)", VE, ("QuantSpec: bits", "in 1..8", "got 0")),
        ("spec-bits-type", 'jz.quant.QuantSpec(bits="8")', TE,
         ("QuantSpec: bits", "must be an int", "got '8'")),
        ("spec-rounding", 'jz.quant.QuantSpec(rounding="floor")', VE,
         ("QuantSpec: rounding", "('nearest', 'stochastic')", "got 'floor'")),
        ("spec-group", "jz.quant.QuantSpec(group_size=0)", VE,
         ("QuantSpec: group_size", "positive int or None", "got 0")),
        ("spec-axes", "jz.quant.QuantSpec(axes=-1)", TE,
         ("QuantSpec: axes", "tuple of ints", "got -1")),
        ("axes-range", "jz.quant.quantize(x23, jz.quant.QuantSpec(axes=(5,)))", VE,
         ("x: spec.axes=5", "out of range", "shape (2, 3)")),
        ("int-input", "jz.quant.quantize(x23.astype(np.int32), jz.quant.QuantSpec())", TE,
         ("x", "floating-point array", "got dtype int32")),
        ("group-divide", "jz.quant.quantize(x23, jz.quant.QuantSpec(group_size=2, group_axis=1))",
         VE, ("spec.group_size=2", "does not divide axis 1 of size 3", "(shape (2, 3))")),
        ("stochastic-key", 'jz.quant.quantize(x23, jz.quant.QuantSpec(rounding="stochastic"))',
         VE, ("x: spec.rounding='stochastic'", "explicit key=", "got None")),
        ("rules-type", "jz.quant.quantize_params(P, jz.quant.QuantSpec())", TE,
         ("rules", "sequence of (where, spec) pairs", "got QuantSpec(bits=8")),
        ("rule-no-match", 'jz.quant.quantize_params(P, [("nope", jz.quant.QuantSpec())])', VE,
         ("rules[0]: where='nope'", "matches no leaf", "existing paths")),
        ("calibrate-spec", "jz.quant.calibrate(x23, 8)", TE,
         ("spec", "expected a QuantSpec", "got int 8")),
        ("percentile", "jz.quant.Percentile(percentile=150.0)", VE,
         ("Percentile: percentile", "(0, 100]", "got 150.0")),
        ("mse-clip", "jz.quant.MSEClip(num_ratios=0)", VE,
         ("MSEClip: num_ratios", "positive int", "got 0")),
        ("kmeans-bits", "jz.quant.kmeans(np.ones(8), bits=0)", VE,
         ("bits", "an int in 1..8", "got 0")),
        ("stack-layers",
         "jz.quant.stack_layers([jz.quant.quantize(x23, jz.quant.QuantSpec(bits=4)), "
         "jz.quant.quantize(x23, jz.quant.QuantSpec())], 0)",
         VE, ("stack_layers", "differ in bits, axes, groups or dtype", "(4, ")),
        ("in-scales-shape",
         'jz.quant.make_scaled_apply(lambda p, x: x @ p["w"], layouts={"w": '
         "jz.layout.KernelLayout(shape=(3, 2), in_axes=(0,), out_axes=(1,))}, "
         'in_scales={"w": [1.0, 2.0]})',
         VE, ("in_scales['w']", "positive finite values of shape (3,)", "got [1.0, 2.0]")),
        ("kmeans-mask", "jz.quant.kmeans(np.ones(8), bits=2, mask=np.ones(7, bool))", VE,
         ("mask", "bool of shape (8,)", "got bool (7,)")),
        ("kmeans-mask-tree", 'jz.quant.kmeans_params(P, bits=2, where=".*/kernel", mask=MASK_K)',
         VE, ("mask", "differs from params'", "PyTreeDef")),
        ("ternary-threshold", "jz.quant.ternarize(np.ones(4), threshold=-1.0)", VE,
         ("threshold", "a number >= 0", "got -1.0")),
        ("dequantize-type", "jz.quant.dequantize(np.ones(3))", TE,
         ("dequantize", "a QArray or KMeansArray", "got ndarray")),
        ("int-dense-type", "jz.quant.int_dense(x23, x23)", TE,
         ("x_q", "expected a QArray", "got ndarray")),
        ("int-dense-shapes", "jz.quant.int_dense(Q23, Q23)", VE,
         ("int_dense", "x (..., K) and w (K, N)", "got (2, 3) and (2, 3)")),
        ("clip-ratio", "jz.quant.fake_quant(x23, jz.quant.QuantSpec(), clip_ratio=0.0)", VE,
         ("clip_ratio", "positive finite", "got 0.0")),
    ),
    *_area(
        "distill",
        ("temperature-zero", "jz.distill.kd_loss(temperature=0.0, alpha=0.5)", VE,
         ("kd_loss: temperature", "in (0.0, inf]", "got 0.0")),
        ("temperature-negative", "jz.distill.kl_divergence(z23, z23, temperature=-1.0)", VE,
         ("kl_divergence: temperature", "in (0.0, inf]", "got -1.0")),
        ("alpha-range", "jz.distill.kd_loss(temperature=2.0, alpha=1.5)", VE,
         ("kd_loss: alpha", "in [0.0, 1.0]", "got 1.5")),
        ("alpha-string", "jz.distill.kd_loss(temperature=2.0, alpha='0.5')", VE,
         ("kd_loss: alpha", "real scalar", "got '0.5'")),
        ("dkd-beta", "jz.distill.dkd_loss(temperature=2.0, beta=-1.0)", VE,
         ("dkd_loss: beta", "in [0.0, inf]", "got -1.0")),
        ("logits-shapes", f"{KD}(z23, z24, y2)", VE,
         ("kd_loss: student and teacher logits", "same shape", "student (2, 3) and teacher (2, 4)")),
        ("labels-shape", f"{KD}(z23, z23, np.zeros(3, np.int32))", VE,
         ("kd_loss: labels", "shape (2,)", "got (3,)")),
        ("logits-rank", f"{KD}(np.zeros(3), np.zeros(3), y2)", VE,
         ("kd_loss: student logits", "shape (N, C)", "got (3,)")),
        ("kl-shapes", "jz.distill.kl_divergence(z23, np.zeros((3, 3)))", VE,
         ("kl_divergence", "same shape", "teacher (3, 3)")),
        ("dkd-classes", "jz.distill.dkd_loss(temperature=2.0)(z21, z21, y2)", VE,
         ("dkd_loss", "at least 2 classes", "shape (2, 1)")),
        ("hint-missing", 'jz.distill.hint_loss(student_key="h")({"logits": z23}, HINT4, y2)', VE,
         ("hint_loss", "a mapping with key 'h'", "got ['logits']")),
        ("hint-shape", 'jz.distill.hint_loss()({"logits": z23, "hint": z25}, HINT4, y2)', VE,
         ("student feature 'hint'", "the teacher's 'hint' has shape (2, 4)", "shape (2, 5)")),
        ("combine-empty", "jz.distill.combine_losses({})", VE,
         ("combine_losses: losses", "non-empty mapping", "got {}")),
        ("combine-weights", f'jz.distill.combine_losses({{"kd": {KD}}}, weights={{"b": 1.0}})', VE,
         ("combine_losses: weights", "not in losses ['kd']", "['b']")),
        ("masked-mean", "jz.distill.masked_mean(np.ones(3), np.ones(2, bool))", VE,
         ("masked_mean: mask", "shape of values (3,)", "got (2,)")),
        ("step-loss", "jz.distill.make_train_step(linear, linear, tx, loss=3)", TE,
         ("make_train_step: loss", "a loss function", "got 3")),
        ("step-tx", f'jz.distill.make_train_step(linear, linear, "sgd", loss={KD})', TE,
         ("make_train_step: tx", "optax GradientTransformation", "got 'sgd'")),
        ("batch-no-labels", 'step(state(), T, {"x": x22}, key)', VE,
         ("batch is missing key(s) ['y']", "expected keys 'x'", "got keys ['x']")),
        ("batch-not-mapping", "step(state(), T, [x22, y2], key)", TE,
         ("distill train step: batch", "a mapping with keys 'x' and 'y'", "got list")),
        ("batch-float-labels", 'step(state(), T, {"x": x22, "y": np.zeros(2, np.float32)}, key)', VE,
         ("batch['y']", "integer labels", "got dtype float32")),
        ("batch-mask", 'step(state(), T, {**batch, "mask": np.ones(3, np.float32)}, key)', VE,
         ("batch['mask']", "boolean array of shape (2,)", "got shape (3,) and dtype float32")),
        ("step-key", "step(state(), T, batch, 0)", TE,
         ("distill train step: key", "a PRNG key", "got int")),
        ("step-state", "step(np.zeros((2, 2)), T, batch, key)", TE,
         ("distill train step: state", "a jaxzip.train.TrainState", "got ndarray")),
        ("teacher-shape", "step(state(), np.zeros((2, 3)), batch, key)", VE,
         ("kd_loss: student and teacher logits", "same shape", "teacher (2, 3)")),
        ("transform-tree", 'distill_step(lambda p: {"w": p})(state(), T, batch, key)', VE,
         ("student_transform", "same tree structure", "got PyTreeDef({'w': *})")),
        ("transform-shape", "distill_step(lambda p: p[:1])(state(), T, batch, key)", VE,
         ("student_transform changed params leaf", "float32[2, 2]", "to float32[1, 2]")),
        ("attention-p", "jz.distill.attention_map(np.ones((1, 2, 2, 3)), p=0.0)", VE,
         ("attention_map: p", "in (0.0, inf]", "got 0.0")),
        ("regressor-size", "jz.distill.init_regressor(key, 0, 3)", VE,
         ("init_regressor: in_features", "positive int", "got 0")),
    ),
    *_area(
        "codec",
        ("garbage", 'jz.codec.decode(b"garbage, not a jaxzip file")', FE,
         ("not a jaxzip compressed file", "magic b'garbage,'")),
        ("empty", 'jz.codec.decode(b"")', FE, ("truncated", "0 bytes", "fixed prefix")),
        ("not-bytes", 'jz.codec.decode("abc")', TE, ("data", "expected bytes", "got str")),
        ("truncated", 'jz.codec.load("truncated.jz")', FE,
         ("truncated.jz", "checksum mismatch", "truncated or corrupt")),
        ("future-version", 'jz.codec.load("future.jz")', FE,
         ("future.jz", "reads 1..2", "format version 99 is not supported")),
        ("missing", 'jz.codec.load("missing.jz")', NOFILE, ("missing.jz", "No such file")),
        ("directory", 'jz.codec.load(".")', FE, (".", "is a directory", "not a jaxzip")),
        ("garbage-file", 'jz.codec.load("garbage.jz")', FE,
         ("garbage.jz", "not a jaxzip compressed file", "magic")),
        ("leaf-dtype", 'jz.codec.encode({"a": np.zeros(2, np.complex64)})', TE,
         ("a: unsupported dtype complex64", "expected one of ['bfloat16'")),
        ("leaf-type", 'jz.codec.encode({"a": "hello"})', TE,
         ("a: unsupported leaf type str", "expected arrays, Python scalars")),
        ("dict-key", "jz.codec.encode({1: np.zeros(2)})", TE, ("<root>", "dict key 1 is not a str")),
        ("encoding-type", 'jz.codec.encode({"a": np.zeros(2)}, encoding="ans")', TE,
         ("encoding", "an Encoding or None", "got str")),
        ("encoding-symbols", 'jz.codec.Encoding(symbols="zip")', VE,
         ("symbols", "one of ('pack', 'ans', 'huffman')", "got 'zip'")),
        ("encoding-gap-bits", "jz.codec.Encoding(gap_bits=0)", VE,
         ("gap_bits", "an int in 1..8", "got 0")),
        ("pack-values", "jz.codec.pack_bits(np.array([5]), 2)", VE,
         ("values", "integers in [0, 4)", "got 5..5")),
        ("pack-bits", "jz.codec.pack_bits(np.array([5]), 9)", VE, ("bits", "0..8", "got 9")),
        ("unpack-short", 'jz.codec.unpack_bits(b"x", 8, 5)', FE,
         ("packed stream", "expected 5 bytes", "got 1")),
    ),
    *_area(
        "deploy",
        ("apply-fn", 'jz.deploy.export(3, P, x4, "e.jzx")', TE,
         ("apply_fn", "a callable", "got int")),
        ("scalar-input", 'jz.deploy.export(linear, P, np.ones(()), "e.jzx")', VE,
         ("example_input", "a batch dimension", "got a scalar")),
        ("polymorphic-flag", 'jz.deploy.export(linear, P, x4, "e.jzx", polymorphic_batch="yes")',
         TE, ("polymorphic_batch", "a bool", "got 'yes'")),
        ("two-outputs", 'jz.deploy.export(lambda p, x, **_: (x, x), P, x4, "e.jzx")', TE,
         ("apply_fn", "one output array", "got 2")),
        ("load-garbage", 'jz.deploy.load_exported("garbage.jz")', FE,
         ("garbage.jz", "exported model is truncated", "fixed prefix")),
        ("load-codec-file", 'jz.deploy.load_exported("w.jz")', FE,
         ("w.jz", "not a jaxzip exported model", "magic")),
        ("load-truncated", 'jz.deploy.load_exported("truncated.jzx")', FE,
         ("truncated.jzx", "do not match the file", "bytes")),
        ("input-shape", "exported(np.ones((1, 3)))", VE,
         ("x", "expected shape [1, 2] and dtype float32", "got [1, 3] float32")),
        ("input-dtype", "exported(np.ones((1, 2), np.int32))", VE,
         ("x", "dtype float32", "got [1, 2] int32")),
        ("info-type", 'jz.deploy.parse_info("abc")', TE, ("data", "expected bytes", "got str")),
    ),
    *_area(
        "config",
        ("unknown-model", 'jz.config.make_model("resnet")', CE,
         ("make_model: name", "one of ['mlp'", "got 'resnet'")),
        ("model-argument", 'jz.config.make_model("mlp", widthz=(3,))', CE,
         ("['widthz']", "it accepts ['widths'")),
        ("missing-widths", 'jz.config.make_model("mlp")', CE, ("'mlp'", "needs widths=(...)")),
        ("unknown-strategy", 'jz.config.lookup("strategy", "sa", where="strategy")', CE,
         ("strategy", "one of ['greedy', 'optuna']", "got 'sa'")),
        ("optimizer-name", 'optimizer(name="adamx")', CE,
         ("make_optimizer: name", "one of ['sgd', 'adam', 'adamw']", "got 'adamx'")),
        ("optimizer-lr", "optimizer(learning_rate=-1.0)", CE,
         ("make_optimizer: learning_rate", "> 0", "got -1.0")),
        ("optimizer-schedule", 'optimizer(schedule="linear")', CE,
         ("make_optimizer: schedule", "one of ['constant'", "got 'linear'")),
        ("optimizer-decay", "optimizer(weight_decay=-1.0)", CE,
         ("make_optimizer: weight_decay", ">= 0", "got -1.0")),
        ("unknown-section", 'cfg({"trian": {}})', CE,
         ("config: trian", "unknown section [trian]", "did you mean [train]?")),
        ("unknown-key", 'cfg({"train": {"epocs": 3}})', CE,
         ("config: train.epocs", "unknown key", "did you mean train.epochs?")),
        ("string-for-int", 'cfg({"train": {"epochs": "3"}})', CE,
         ("train.epochs", "expected an integer", "got '3' (a string)")),
        ("bool-for-int", 'cfg({"train": {"epochs": True}})', CE,
         ("train.epochs", "expected an integer", "got True (a boolean)")),
        ("epochs-range", 'cfg({"train": {"epochs": 0}})', CE,
         ("train.epochs", "an integer >= 1", "got 0")),
        ("learning-rate", 'cfg({"train": {"learning_rate": -1.0}})', CE,
         ("train.learning_rate", "a number > 0.0", "got -1.0")),
        ("optimizer", 'cfg({"train": {"optimizer": "adamx"}})', CE,
         ("train.optimizer", "one of 'sgd', 'adam', 'adamw'", "got 'adamx'")),
        ("model-name", 'cfg({"model": {"name": "resnet"}})', CE,
         ("model.name", "one of 'mlp'", "got 'resnet'")),
        ("text-needs-token-model", 'cfg({"data": {"name": "kjv"}})', CE,
         ("model.name", "expected a model of tokens ['transformer'] for data.name = 'kjv'",
          "got 'small_cnn'")),
        ("d-model-on-mlp", 'cfg({"model": {"name": "mlp", "widths": [8], "d_model": 64}})', CE,
         ("model.d_model", "only \"transformer\" takes it", "got 64")),
        ("num-heads-divisor", 'cfg({"data": {"name": "kjv"}, "model": {"name": "transformer", '
         '"d_model": 64, "num_heads": 5}})', CE,
         ("model.num_heads", "a divisor of d_model = 64", "got 5")),
        ("idx-data-dir", 'cfg({"data": {"name": "idx"}})', CE,
         ("data.data_dir", 'the directory of your IDX files for data.name "idx"', "got ''")),
        ("windows-on-images", 'cfg({"data": {"name": "digits", "train_windows": 100}})', CE,
         ("data.train_windows", "only text datasets ['kjv'] are cut into windows", "got 100")),
        ("seq-len-range", 'cfg({"data": {"name": "kjv", "seq_len": 100000}, '
         '"model": {"name": "transformer"}})', CE,
         ("data.seq_len", "an integer in [1, 8192]", "got 100000")),
        ("distill-text", 'cfg({"data": {"name": "kjv"}, "model": {"name": "transformer"}, '
         '"distill": {}})', CE,
         ("distill.model", "a model of tokens ['transformer'] for data.name = 'kjv'",
          "got 'mlp'")),
        ("distill-student-on-images", 'cfg({"distill": {"model": "transformer"}})', CE,
         ("distill.model", "an image model, not one of ['transformer']", "got 'transformer'")),
        ("distill-num-heads", 'cfg({"data": {"name": "kjv"}, "model": {"name": "transformer"}, '
         '"distill": {"model": "transformer", "d_model": 64, "num_heads": 5}})', CE,
         ("distill.num_heads", "a divisor of d_model = 64", "got 5")),
        ("distill-d-model-on-mlp", 'cfg({"distill": {"widths": [8], "d_model": 64}})', CE,
         ("distill.d_model", 'only "transformer" takes it', "got 64")),
        ("widths-values", 'cfg({"model": {"widths": [0, 3]}})', CE,
         ("model.widths", "each >= 1", "got [0, 3]")),
        ("widths-type", 'cfg({"model": {"widths": 3}})', CE,
         ("model.widths", "a list of integers", "got 3")),
        ("dropout", 'cfg({"model": {"dropout_rate": 1.0}})', CE,
         ("model.dropout_rate", "in [0.0, 1.0)", "got 1.0")),
        ("input-dropout", 'cfg({"model": {"name": "lenet5", "input_dropout_rate": 0.2}})', CE,
         ("model.input_dropout_rate", 'only "mlp" has dropout', "got 0.2")),
        ("section-type", 'cfg({"train": 3})', CE, ("config: train", "a table [train]", "got 3")),
        ("not-a-mapping", "cfg([1, 2])", CE, ("config", "expected a table", "got list [1, 2]")),
        ("dataset-name", 'cfg({"data": {"name": "cifar"}})', CE,
         ("data.name", "one of 'digits', 'mnist'", "got 'cifar'")),
        ("val-fraction", 'cfg({"data": {"val_fraction": 1.0}})', CE,
         ("data.val_fraction", "in (0.0, 1.0)", "got 1.0")),
        ("prune-sparsity", 'cfg({"prune": {"sparsity": 1.0}})', CE,
         ("prune.sparsity", "in [0.0, 1.0)", "got 1.0")),
        ("prune-where", 'cfg({"prune": {"where": "(kernel"}})', CE,
         ("prune.where", "a valid regular expression", "got '(kernel'")),
        ("prune-allocation", 'cfg({"prune": {"allocation": "best"}})', CE,
         ("prune.allocation", "one of 'global', 'uniform', 'erk'", "got 'best'")),
        ("prune-rounds", 'cfg({"prune": {"rounds": 0}})', CE,
         ("prune.rounds", "an integer >= 1", "got 0")),
        ("kmeans-bits", 'cfg({"kmeans": {"dense_bits": 9}})', CE,
         ("kmeans.dense_bits", "an integer in [1, 8]", "got 9")),
        ("prune-structure-magnitude", 'cfg({"prune": {"structure": "2:4"}})', CE,
         ("prune.structure", 'expected "" with prune.method = "magnitude"', "got '2:4'")),
        ("prune-oneshot-allocation", 'cfg({"prune": {"method": "sparsegpt"}})', CE,
         ("prune.allocation", "expected 'uniform' with prune.method = 'sparsegpt'",
          "got 'global'")),
        ("prune-structure-sparsity", 'cfg({"prune": {"method": "wanda", "allocation": '
         '"uniform", "structure": "2:4"}})', CE,
         ("prune.sparsity", "expected 0.5 with prune.structure = '2:4'", "got 0.9")),
        ("quantize-bits", 'cfg({"quantize": {"bits": 1}})', CE,
         ("quantize.bits", "an integer in [2, 8]", "got 1")),
        ("quantize-method", 'cfg({"quantize": {"method": "awq"}})', CE,
         ("quantize.method", "one of 'gptq', 'rtn'", "got 'awq'")),
        ("quantize-table-bits", 'cfg({"quantize": {"table_bits": 1}})', CE,
         ("quantize.table_bits", "0 or in [2, 8]", "got 1")),
        ("quantize-with-kmeans", 'cfg({"quantize": {}, "kmeans": {}})', CE,
         ("quantize: [quantize] and [kmeans] cannot be combined", "remove one of them")),
        ("codec-file", 'cfg({"codec": {"file": "a/b.jz"}})', CE,
         ("codec.file", "a file name of letters", "got 'a/b.jz'")),
        ("experiment-name", 'cfg({"experiment": {"name": "a b/c"}})', CE,
         ("experiment.name", "letters, digits", "got 'a b/c'")),
        ("seed-float", 'cfg({"experiment": {"seed": 1.5}})', CE,
         ("experiment.seed", "an integer", "got 1.5")),
        ("direct-field", 'jz.config.TrainConfig(batch_size="64")', CE,
         ("batch_size", "expected an integer", "got '64' (a string)")),
        ("file-missing", 'jz.config.load_config("missing.toml")', CE,
         ("missing.toml", "config file not found")),
        ("file-directory", 'jz.config.load_config(".")', CE,
         (".:", "expected a TOML config file", "got a directory")),
        ("file-not-toml", 'jz.config.load_config("bad.toml")', CE,
         ("bad.toml", "invalid TOML", "line 1, column 7")),
        ("file-not-utf8", 'jz.config.load_config("not_utf8.toml")', CE,
         ("not_utf8.toml", "not UTF-8 text", "at byte 0")),
        ("file-bad-value", 'jz.config.load_config("bad_value.toml")', CE,
         ("bad_value.toml: train.epochs", "expected an integer", "got 'x'")),
        ("override-format", 'jz.config.parse_override("epochs")', CE,
         ("--set 'epochs'", "SECTION.KEY=VALUE", "got 'epochs'")),
        ("override-key", 'jz.config.apply_overrides(CFG, ["train.epocs=3"])', CE,
         ("--set train.epocs", "unknown key", "did you mean train.epochs?")),
        ("overrides-string", 'jz.config.apply_overrides(CFG, "train.epochs=3")', TE,
         ("apply_overrides: overrides", "a list of 'SECTION.KEY=VALUE'", "got str")),
        ("save-config-type", 'jz.config.save_config("c.toml", {"train": {}})', TE,
         ("save_config: cfg", "an ExperimentConfig", "got dict")),
    ),
    *_area(
        "pipeline",
        ("run-state-field", 'jz.pipeline.RunState(out_dir="o").updated({"masks": 1})', VE,
         ("run state: 'masks'", "not a field a stage can set", "'mask'")),
        ("run-config-type", 'jz.pipeline.run_experiment({"train": {}}, "out")', TE,
         ("run_experiment: cfg", "an ExperimentConfig", "dict")),
    ),
    *_area(
        "auto",
        ("max-drop-negative", "jz.auto.search(P, eval_fn=EV, max_drop=-0.1, where=K, key=key)", VE,
         ("max_drop", "finite number >= 0", "got -0.1")),
        ("max-trials-zero", "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, max_trials=0)",
         VE, ("max_trials", "int >= 1", "got 0")),
        ("time-budget-zero",
         "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, time_budget_s=0)", VE,
         ("time_budget_s", "finite number > 0", "got 0")),
        ("eval-nan", 'jz.auto.search(P, eval_fn=lambda p: float("nan"), max_drop=0.1, where=K, key=key)',
         VE, ("eval_fn", "finite scalar number", "got nan")),
        ("eval-array", "jz.auto.search(P, eval_fn=lambda p: np.ones(2), max_drop=0.1, where=K, key=key)",
         VE, ("eval_fn", "an accuracy or a 1-D bool array of each example's correctness",
              "got shape (2,), dtype float64")),
        ("eval-string", 'jz.auto.sensitivity(P, lambda p: "x", where=K)', VE,
         ("eval_fn", "finite scalar number", "got 'x'")),
        ("strategy", 'jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, strategy="sa")', TE,
         ("strategy", "jaxzip.auto.Greedy() or jaxzip.auto.Optuna()", "got 'sa'")),
        ("stage-order", 'cfg({"experiment": {"stages": ["data", "kmeans", "model"]}, "kmeans": {}})', CE,
         ("experiment.stages", "'kmeans' at position 2 needs 'params'", "add 'model' before it")),
        ("stage-after-coding", 'cfg({"experiment": {"stages": ["data", "model", "quantize", '
         '"prune", "evaluate"]}, "prune": {}, "quantize": {"method": "rtn"}})', CE,
         ("experiment.stages", "'prune' at position 4 would change the params after 'quantize'",
          "list 'prune' before 'quantize'")),
        ("family-widths", "jz.auto.MLPFamily(widths=(0,))", VE,
         ("MLPFamily: widths", "positive ints", "got (0,)")),
        ("confirm-n-small",
         "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, confirm_fn=EV, confirm_n=9)",
         VE, ("confirm_n", "split of 9 examples cannot resolve max_drop 0.1",
              "needs at least 10 examples")),
        ("confirm-n-missing", "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, confirm_fn=EV)",
         VE, ("confirm_n", "the confirmation split's size, an int >= 1", "got None")),
        ("confirm-n-alone", "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, confirm_n=100)",
         VE, ("confirm_n", "given (100)", "without a confirm_fn")),
        ("max-confirmations-zero",
         "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, max_confirmations=0)", VE,
         ("max_confirmations", "int >= 1", "got 0")),
        ("finetune-rounds", "jz.auto.SearchSpace(finetune_rounds=(2, 4))", VE,
         ("SearchSpace.finetune_rounds", "increasing distinct ints >= 1 starting with 1",
          "got (2, 4)")),
        ("lm-space-bits", "jz.auto.LMSpace(bits=(4, 9))", VE,
         ("bits", "expected ints in 2..8", "got (4, 9)")),
        ("lm-space-group-size", "jz.auto.LMSpace(group_size=0)", VE,
         ("group_size", "expected an int >= 1", "got 0")),
        ("budget-too-small",
         "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, confirm_fn=EV, confirm_n=10, "
         "time_budget_s=1e-9)", jz.auto.BudgetTooSmall,
         ("time_budget_s: 1e-09 s was spent before the baseline was measured on the confirmation",
          "found so far: the baseline's validation accuracy 0.5000, no candidate",
          "Give a larger budget")),
        ("cli-max-drop", 'cli(["auto", "missing.toml", "--max-drop", "-1"])', CliError,
         ("--max-drop", "percentage points >= 0", "got '-1'")),
        ("cli-time-budget", 'cli(["auto", "missing.toml", "--max-drop", "1", "--time-budget", "5x"])',
         CliError, ("--time-budget", "positive duration like 600s, 10m or 1h", "got '5x'")),
        ("cli-max-trials", 'cli(["auto", "missing.toml", "--max-drop", "1", "--max-trials", "0"])',
         CliError, ("--max-trials", "integer >= 1", "got '0'")),
        ("cli-confirm-fraction",
         'cli(["auto", "missing.toml", "--max-drop", "1", "--confirm-fraction", "1.5"])', CliError,
         ("--confirm-fraction", "a number in (0, 1)", "got '1.5'")),
        ("cli-confidence", 'cli(["auto", "missing.toml", "--max-drop", "1", "--confidence", "-1"])',
         CliError, ("--confidence", "a number >= 0", "got '-1'")),
        ("confidence-negative",
         "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, confirm_fn=EV, "
         "confirm_n=10, confidence=-1.0)", VE, ("confidence", "finite number >= 0", "got -1.0")),
        ("confirm-fn-correctness-length",
         "jz.auto.search(P, eval_fn=EV, max_drop=0.1, where=K, key=key, "
         "confirm_fn=lambda p: np.ones(9, bool), confirm_n=10)", VE,
         ("confirm_fn (on the input params)", "1-D bool array of each of the 10 examples",
          "got shape (9,)")),
        ("paired-se-counts", "jz.auto.paired_drop_se(6, 5, 10)", VE,
         ("paired_drop_se", "0 <= b + c <= n", "got 6, 5, 10")),
        ("cli-confirm-split-small",
         'cli(["auto", "tiny.toml", "--max-drop", "0.01", "--out", "split", "--no-progress"])',
         CliError, ("data.val_fraction: the confirmation split (72 of the 144 validation examples",
                    "cannot resolve --max-drop 0.01 points", "needs at least 10000 examples")),
        ("cli-config-device", 'cli(["auto", "/dev/zero", "--max-drop", "1"])', CliError,
         ("/dev/zero", "expected a regular TOML config file", "got a device, pipe or socket")),
        ("cli-config-deep", 'cli(["auto", "deep.toml", "--max-drop", "1"])', CliError,
         ("deep.toml", "invalid TOML", "nested too deeply")),
        ("cli-locked", 'locked_cli(["auto", "tiny.toml", "--max-drop", "1", "--out", "busy"])',
         CliError, ("jaxzip auto: busy is in use by another jaxzip process (PID ",
                    "wait for it to finish or choose another output directory")),
    ),
    *_area(
        "cli",
        ("config-missing", 'cli(["run", "missing.toml"])', CliError,
         ("missing.toml", "config file not found")),
        ("config-directory", 'cli(["run", "."])', CliError,
         ("expected a TOML config file", "got a directory")),
        ("config-not-toml", 'cli(["run", "bad.toml"])', CliError, ("bad.toml", "invalid TOML")),
        ("config-unknown-key", 'cli(["run", "unknown_key.toml"])', CliError,
         ("unknown_key.toml: train.epocs", "unknown key", "did you mean train.epochs?")),
        ("set-epochs", 'cli([*R, "train.epochs=0"])', CliError,
         ("--set train.epochs", "an integer >= 1", "got 0")),
        ("set-word", 'cli([*R, "train.epochs=three"])', CliError,
         ("--set train.epochs", "expected an integer", "got 'three'")),
        ("set-model", 'cli([*R, "model.name=resnet"])', CliError,
         ("--set model.name", "one of 'mlp'", "got 'resnet'")),
        ("set-sparsity", 'cli([*R, "prune.sparsity=1.5"])', CliError,
         ("--set prune.sparsity", "in [0.0, 1.0)", "got 1.5")),
        ("set-widths", 'cli([*R, "model.widths=[0]"])', CliError,
         ("--set model.widths", "each >= 1", "got [0]")),
        ("set-format", 'cli([*R, "train=3"])', CliError,
         ("--set 'train=3'", "SECTION.KEY=VALUE", "got 'train=3'")),
        ("set-section", 'cli([*R, "trian.epochs=3"])', CliError,
         ("--set trian.epochs", "unknown section [trian]", "did you mean [train]?")),
        ("data-missing", 'cli([*R, "data.name=mnist", "--set", "data.data_dir=no_such_dir", '
         '"--set", "data.download=false"])', CliError,
         ("no_such_dir", "lacks train-images-idx3-ubyte")),
        ("inspect-missing", 'cli(["inspect", "missing.jz"])', CliError,
         ("missing.jz", "No such file")),
        ("inspect-garbage", 'cli(["inspect", "garbage.jz"])', CliError,
         ("garbage.jz", "not a jaxzip compressed file", "magic")),
        ("inspect-truncated", 'cli(["inspect", "truncated.jz"])', CliError,
         ("truncated.jz", "checksum mismatch")),
        ("inspect-directory", 'cli(["inspect", "."])', CliError,
         ("is a directory", "not a jaxzip file")),
        ("export-shape", 'cli([*EXPORT, "--input-shape", "1,x"])', CliError,
         ("--input-shape", "positive integers separated by commas", "got '1,x'")),
        ("export-model", 'cli([*EXPORT[:-1], "resnet", "--input-shape", "1,4"])', CliError,
         ("--model", "must be one of ['mlp'", "got 'resnet'")),
        ("export-weights", 'cli([*EXPORT, "--input-shape", "1,4"])', CliError,
         ("--weights w.jz", "do not fit model 'lenet_300_100'", "input shape [1, 4]",
          "path 'Dense_0/bias' in the model faces path 'a' in the file",
          "--config with the run's config.toml")),
        ("export-usage", 'cli(["export", "--model", "lenet5"])', CliError,
         ("usage: jaxzip export", "required: --weights, --out")),
        ("export-config-missing", 'cli(["export", "--config", "missing.toml", "--weights", '
         '"w.jz", "--out", "o.jzx"])', CliError, ("missing.toml", "config file not found")),
        ("export-no-input-shape", 'cli(["export", "--model", "mlp", "--weights", "w.jz", '
         '"--out", "o.jzx"])', CliError, ("--input-shape", "required with --model")),
        # issue 19: what a run writes, and inputs that crashed, hung or exhausted memory
        ("reserved-results", 'cli([*R, "codec.file=results.json"])', CliError,
         ("--set codec.file", "a file name the run does not write itself", "got 'results.json'")),
        ("reserved-params", 'cli([*R, "codec.file=params.npz"])', CliError,
         ("--set codec.file", "a file name the run does not write itself", "got 'params.npz'")),
        ("reserved-config", 'cli([*R, "export.file=config.toml"])', CliError,
         ("--set export.file", "a file name the run does not write itself", "got 'config.toml'")),
        ("reserved-stages", 'cli([*R, "export.file=stages"])', CliError,
         ("--set export.file", "a file name the run does not write itself", "got 'stages'")),
        ("codec-is-export", 'cli([*R, "codec.file=m.bin", "--set", "export.file=m.bin"])', CliError,
         ("--set export.file", "a name other than codec.file", "got 'm.bin'")),
        ("seed-64-bits", f'cli([*R, "experiment.seed={2**63}"])', CliError,
         ("--set experiment.seed", "an integer in [0, 9223372036854775807]",
          "got 9223372036854775808")),
        ("seed-negative", 'cli([*R, "experiment.seed=-1"])', CliError,
         ("--set experiment.seed", "an integer in [0, 9223372036854775807]", "got -1")),
        ("model-too-large", 'cli([*R, "model.name=mlp", "--set", "model.widths=[1000000000]"])',
         CliError, ("model.name/model.widths", "a model of at most 1,073,741,824 params",
                    "got one of 75,000,000,010")),
        ("config-deep", 'cli(["run", "deep.toml"])', CliError,
         ("deep.toml", "invalid TOML", "nested too deeply")),
        ("set-deep", 'cli([*R, "train.epochs=" + DEEP])', CliError,
         ("--set train.epochs", "the value is nested too deeply")),
        ("config-device", 'cli(["run", "/dev/zero"])', CliError,
         ("/dev/zero", "expected a regular TOML config file", "got a device, pipe or socket")),
        ("config-too-large", 'cli(["run", "big.toml"])', CliError,
         ("big.toml", "a config file is at most 1,048,576 bytes", "this one is larger")),
        ("augment-shift", 'cli([*R, "train.augment_shift=8"])', CliError,
         ("train.augment_shift", "fewer pixels than the images' height and width (8x8 for "
          "'digits')", "got 8")),
        ("distill-augment-shift", 'cli([*R, "distill.augment_shift=8"])', CliError,
         ("distill.augment_shift", "fewer pixels than the images' height and width", "got 8")),
        ("params-from-nan", 'cli([*R, *MLP8, "--set", "model.params_from=nan.npz"])', CliError,
         ("model.params_from", "'nan.npz'", "'Dense_0/bias' holds 8 NaN and 0 Inf of 8 values",
          "expected finite params")),
        ("params-from-jz", 'cli([*R, *MLP8, "--set", "model.params_from=w.jz"])', CliError,
         ("model.params_from", "'w.jz' is a jaxzip .jz codec file",
          "not the .npz params file expected")),
        ("params-from-missing", 'cli([*R, *MLP8, "--set", "model.params_from=missing.npz"])',
         CliError, ("model.params_from", "no params file at 'missing.npz'")),
        ("diverged", 'cli([*R, *MLP32, "--set", "train.optimizer=sgd", "--set", '
         '"train.learning_rate=1e10"])', CliError,
         ("fit: step", "loss is NaN", "the step was not applied",
          "lower train.learning_rate (now 1e+10)")),
        ("diverged-finite", 'cli([*R, *MLP8, "--set", "train.learning_rate=1e10"])', CliError,
         ("fit: training diverged: epoch 1's mean loss", "over 100x the first step's loss",
          "lower train.learning_rate (now 1e+10) or set train.clip_norm")),
        ("params-from-text", 'cli([*R, *MLP8, "--set", "model.params_from=bad.toml"])',
         CliError, ("model.params_from", "'bad.toml' is not an .npz archive",
                    "written by jz.train.save_params")),
        ("model-too-small-inputs", 'cli([*R, "model.name=lenet5"])', CliError,
         ("model.name", "LeNet5: x must be images of at least 16x16 pixels", "got 8x8")),
        ("out-is-a-file", 'cli(["run", "--out", "ok.idx", "--set", "train.epochs=1"])', CliError,
         ("output directory 'ok.idx'", "exists and is not a directory")),
        ("locked", 'locked_cli(["run", "--no-progress", "--out", "busy"])', CliError,
         ("jaxzip run: busy is in use by another jaxzip process (PID ",
          "wait for it to finish or choose another output directory")),
        # every config section through --set: one line naming --set SECTION.KEY
        ("set-batch-size", 'cli([*R, "train.batch_size=0"])', CliError,
         ("--set train.batch_size", "an integer >= 1", "got 0")),
        ("set-eval-batch-size", 'cli([*R, "train.eval_batch_size=0"])', CliError,
         ("--set train.eval_batch_size", "an integer >= 1", "got 0")),
        ("set-schedule", 'cli([*R, "train.schedule=linear"])', CliError,
         ("--set train.schedule", "one of 'constant', 'cosine', 'warmup_cosine'", "got 'linear'")),
        ("set-warmup", 'cli([*R, "train.warmup_epochs=-1"])', CliError,
         ("--set train.warmup_epochs", "a number >= 0.0", "got -1")),
        ("set-weight-decay", 'cli([*R, "train.weight_decay=-1"])', CliError,
         ("--set train.weight_decay", "a number >= 0.0", "got -1")),
        ("set-momentum", 'cli([*R, "train.momentum=1.5"])', CliError,
         ("--set train.momentum", "a number in [0.0, 1.0)", "got 1.5")),
        ("set-lr-nan", 'cli([*R, "train.learning_rate=nan"])', CliError,
         ("--set train.learning_rate", "a finite number", "got nan")),
        ("set-lr-inf", 'cli([*R, "train.learning_rate=inf"])', CliError,
         ("--set train.learning_rate", "a finite number", "got inf")),
        ("set-augment-negative", 'cli([*R, "train.augment_shift=-1"])', CliError,
         ("--set train.augment_shift", "an integer >= 0", "got -1")),
        ("set-prune-epochs", 'cli([*R, "prune.epochs_per_round=-1"])', CliError,
         ("--set prune.epochs_per_round", "an integer >= 0", "got -1")),
        ("set-prune-lr", 'cli([*R, "prune.learning_rate=0"])', CliError,
         ("--set prune.learning_rate", "a number > 0.0", "got 0")),
        ("set-prune-negative", 'cli([*R, "prune.sparsity=-0.1"])', CliError,
         ("--set prune.sparsity", "a number in [0.0, 1.0)", "got -0.1")),
        ("set-conv-bits", 'cli([*R, "kmeans.conv_bits=0"])', CliError,
         ("--set kmeans.conv_bits", "an integer in [1, 8]", "got 0")),
        ("set-kmeans-where", 'cli([*R, "kmeans.where=(x"])', CliError,
         ("--set kmeans.where", "a valid regular expression", "got '(x'")),
        ("quantize-group-size", 'cli([*R, *MLP32, "--set", "quantize.group_size=5", "--no-cache"])', CliError,
         ("quantize.group_size: 'Dense_0/kernel'", "group_size 5 does not divide the 64 inputs",
          "sizes that do: [2, 4, 8, 16, 32, 64]")),
        ("quantize-where", 'cli([*R, *MLP32, "--set", "quantize.where=.*", "--no-cache"])', CliError,
         ("quantize.where: '.*' selects ['Dense_0/bias'",
          "which no matmul or convolution of the model consumes", "the kernels are")),
        ("quantize-tables", 'cli([*R, *MLP32, "--set", "quantize.table_bits=8", "--no-cache"])', CliError,
         ("quantize.tables: '.*embed.*' must select 2-D tables", "it selects none")),
        ("set-kmeans-iters", 'cli([*R, "kmeans.iters=0"])', CliError,
         ("--set kmeans.iters", "an integer >= 1", "got 0")),
        ("set-kmeans-finetune", 'cli([*R, "kmeans.finetune_epochs=-1"])', CliError,
         ("--set kmeans.finetune_epochs", "an integer >= 0", "got -1")),
        ("set-kmeans-lr", 'cli([*R, "kmeans.learning_rate=-1"])', CliError,
         ("--set kmeans.learning_rate", "a number > 0.0", "got -1")),
        ("set-codec-write", 'cli([*R, "codec.write=maybe"])', CliError,
         ("--set codec.write", "a boolean (true/false)", "got 'maybe'")),
        ("set-codec-escape", 'cli([*R, "codec.file=../x.jz"])', CliError,
         ("--set codec.file", "a file name of letters, digits", "got '../x.jz'")),
        ("set-codec-empty", 'cli([*R, "codec.file="])', CliError,
         ("--set codec.file", "a file name of letters, digits", "got ''")),
        ("set-export-dir", 'cli([*R, "export.file=a/b.jzx"])', CliError,
         ("--set export.file", "a file name of letters, digits", "got 'a/b.jzx'")),
        ("set-export-batch", 'cli([*R, "export.polymorphic_batch=2"])', CliError,
         ("--set export.polymorphic_batch", "a boolean (true/false)", "got 2")),
        ("set-temperature", 'cli([*R, "distill.temperature=0"])', CliError,
         ("--set distill.temperature", "a number > 0.0", "got 0")),
        ("set-alpha", 'cli([*R, "distill.alpha=2"])', CliError,
         ("--set distill.alpha", "a number in [0.0, 1.0]", "got 2")),
        ("set-distill-epochs", 'cli([*R, "distill.epochs=0"])', CliError,
         ("--set distill.epochs", "an integer >= 1", "got 0")),
        ("set-distill-model", 'cli([*R, "distill.model=resnet"])', CliError,
         ("--set distill.model", "one of 'mlp'", "got 'resnet'")),
        ("set-distill-widths", 'cli([*R, "distill.widths=[]"])', CliError,
         ("--set distill.widths", "a list of integers (non-empty)", "got []")),
        ("set-distill-dropout", 'cli([*R, "distill.dropout_rate=1"])', CliError,
         ("--set distill.dropout_rate", "a number in [0.0, 1.0)", "got 1")),
        ("set-distill-lr", 'cli([*R, "distill.learning_rate=0"])', CliError,
         ("--set distill.learning_rate", "a number > 0.0", "got 0")),
        ("set-val-fraction", 'cli([*R, "data.val_fraction=0"])', CliError,
         ("--set data.val_fraction", "a number in (0.0, 1.0)", "got 0")),
        ("set-download", 'cli([*R, "data.download=yes"])', CliError,
         ("--set data.download", "a boolean (true/false)", "got 'yes'")),
        ("set-stages", 'cli([*R, \'experiment.stages=["data", "nope"]\'])', CliError,
         ("--set experiment.stages", "a list of one of 'data', 'model'", "got ['data', 'nope']")),
        ("set-name-empty", 'cli([*R, "experiment.name="])', CliError,
         ("--set experiment.name", "letters, digits", "got ''")),
        ("set-dropout-negative", 'cli([*R, "model.dropout_rate=-0.1"])', CliError,
         ("--set model.dropout_rate", "a number in [0.0, 1.0)", "got -0.1")),
        ("set-widths-empty", 'cli([*R, "model.widths=[]"])', CliError,
         ("--set model.widths", "a list of integers (non-empty)", "got []")),
        ("set-auto-section", 'cli([*R, "auto.strategy=sa"])', CliError,
         ("--set auto.strategy", "unknown section [auto]", "known sections: [experiment]")),
    ),
]
# fmt: on


# --- the namespace the calls run in -------------------------------------------------


def _idx_files(root: Path) -> None:
    jz.data.write_idx(root / "ok.idx", np.zeros((2, 3), np.uint8))
    good = (root / "ok.idx").read_bytes()
    files = {
        "bad_magic.idx": b"\x01\x02\x08\x02" + good[4:],
        "truncated.idx": good[:-2],
        "short_header.idx": good[:6],
        "zero_dims.idx": b"\x00\x00\x08\x00",
        "bad_type.idx": b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00",
        "corrupt.idx.gz": b"\x1f\x8bnot gzip",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)


def _files(root: Path) -> None:
    _idx_files(root)
    jz.train.save_params(root / "other.npz", {"a": np.ones(2, np.float32)})
    narrow = {"Dense_0": {"kernel": np.ones((4, 2), np.float32), "bias": np.zeros(3, np.float32)}}
    jz.train.save_params(root / "narrow.npz", narrow)
    jz.codec.save(root / "w.jz", {"a": np.ones(3, np.float32)})
    enc = (root / "w.jz").read_bytes()
    (root / "truncated.jz").write_bytes(enc[:-7])
    (root / "future.jz").write_bytes(enc[:8] + struct.pack("<H", 99) + enc[10:])
    (root / "garbage.jz").write_bytes(b"garbage, not a jaxzip file")
    (root / "bad.toml").write_text("[train\nepochs =")
    (root / "unknown_key.toml").write_text("[train]\nepocs = 3\n")
    (root / "bad_value.toml").write_text("[train]\nepochs = 'x'\n")
    (root / "not_utf8.toml").write_bytes(b"\xff\xfe\x00")
    (root / "deep.toml").write_text("a = " + DEEP + "]" * len(DEEP) + "\n")
    (root / "big.toml").write_text("# " + "x" * MAX_CONFIG_BYTES + "\n")
    (root / "tiny.toml").write_text('[model]\nname = "mlp"\nwidths = [8]\n')
    nan = {
        f"Dense_{i}": {
            "kernel": np.full(shape, np.nan, np.float32),
            "bias": np.full(shape[1], np.nan, np.float32),
        }
        for i, shape in enumerate([(64, 8), (8, 10)])
    }  # MLP8's params, all NaN
    jz.train.save_params(root / "nan.npz", nan)
    w = {"w": np.ones((2, 3), np.float32)}
    jz.deploy.export(lambda p, x, **_: x @ p["w"], w, np.ones((1, 2), np.float32), root / "m.jzx")
    (root / "truncated.jzx").write_bytes((root / "m.jzx").read_bytes()[:-3])


def _build_env(root: Path) -> dict[str, Any]:
    """Tiny values and files (under ``root``) that the calls of :data:`CASES` name."""
    f32 = functools.partial(np.ones, dtype=np.float32)
    params = {"Dense_0": {"kernel": f32((4, 3)), "bias": 0 * f32(3)}}
    _files(root)
    mask = jax.tree.map(lambda a: np.ones(a.shape, bool), params)
    tx = optax.sgd(0.1)

    def dataset(**fields: Any) -> jz.data.Dataset:
        kw = {"x": np.zeros((2, 2, 2, 1), np.float32), "y": np.zeros(2, np.int32)}
        return jz.data.Dataset(**{**kw, **fields}, num_classes=2, name="t")

    def linear(p: Any, x: Any, *, train: bool = False, key: Any = None) -> jax.Array:
        return x @ p

    def distill_step(transform: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
        kd = jz.distill.kd_loss(temperature=2.0, alpha=0.5)
        return jz.distill.make_train_step(linear, linear, tx, loss=kd, student_transform=transform)

    optimizer = functools.partial(
        jz.config.make_optimizer,
        name="adam",
        learning_rate=1e-3,
        schedule="constant",
        total_steps=10,
    )
    q23 = jz.quant.QArray(np.zeros((2, 3), np.int8), f32(()), 0 * f32(()), bits=8)
    return {
        "jz": jz,
        "jax": jax,
        "np": np,
        "R": R,
        "P": params,
        "MASK": mask,
        "MASK_K": mask["Dense_0"]["kernel"],
        "NARROW_MASK": {
            "Dense_0": {"kernel": np.ones((4, 2), bool), "bias": mask["Dense_0"]["bias"]}
        },
        "K35": {"k": f32((3, 5))},
        "NBYM": jz.prune.NByM(2, 4, axis=-1),
        "BLOCK": jz.prune.Block((2, 2)),
        "SCHEDULE": jz.prune.polynomial_sparsity(0.5, begin_step=0, end_step=5),
        "key": jax.random.key(0),
        "x4": 0 * f32((1, 4)),
        "x22": np.eye(2, dtype=np.float32),
        "x23": f32((2, 3)),
        "Q23": q23,
        "T": 3 * np.eye(2, dtype=np.float32),
        "z21": 0 * f32((2, 1)),
        "z23": 0 * f32((2, 3)),
        "z24": 0 * f32((2, 4)),
        "z25": 0 * f32((2, 5)),
        "y2": np.zeros(2, np.int32),
        "HINT4": {"logits": 0 * f32((2, 3)), "hint": 0 * f32((2, 4))},
        "dataset": dataset,
        "ds": dataset(),
        "linear": linear,
        "tx": tx,
        "optimizer": optimizer,
        "distill_step": distill_step,
        "step": distill_step(),
        "state": lambda: jz.train.init_state(0 * f32((2, 2)), tx),
        "batch": {"x": np.eye(2, dtype=np.float32), "y": np.array([0, 1], np.int32)},
        "exported": jz.deploy.load_exported(root / "m.jzx"),
        "cfg": jz.config.config_from_dict,
        "CFG": jz.config.ExperimentConfig(),
        "EXPORT": EXPORT,
        "EV": lambda p: 0.5,
        "K": ".*/kernel",
        "MLP8": MLP8,
        "MLP32": MLP32,
        "DEEP": DEEP,
    }


def _cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """Runs ``jaxzip argv`` in-process; checks exit status 2 and a short, traceback-free stderr."""
    capsys.readouterr()
    status = cli_main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, f"jaxzip {argv} exited with {status}, expected 2; stderr: {err}"
    assert "Traceback" not in err, err
    lines = err.splitlines()
    usage = lines[0].startswith("usage: ")  # argparse: the usage, then one error line
    assert len(lines) == 1 or usage, f"expected one error line (or a usage block), got:\n{err}"
    assert lines[-1].startswith(("jaxzip: error: ", "jaxzip export: error: ")), err
    raise CliError(err)


def _locked_cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """:func:`_cli` while this process holds ``--out``'s lock, as a running jaxzip would."""
    with directory_lock(argv[argv.index("--out") + 1], what="jaxzip run"):
        _cli(capsys, argv)


@pytest.fixture(scope="module")
def env_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("catalogue")
    return root, _build_env(root)


# --- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env_root, capsys, monkeypatch) -> None:
    root, env = env_root
    monkeypatch.chdir(root)
    namespace = {
        **env,
        "cli": functools.partial(_cli, capsys),
        "locked_cli": functools.partial(_locked_cli, capsys),
    }
    with pytest.raises(case.exc_type) as info:
        eval(case.call, namespace)  # the calls are this file's own table
    message = str(info.value)
    missing = [frag for frag in case.must_contain if frag not in message]
    assert not missing, f"message lacks {missing}: {message}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"no TOML form for {value!r}")


def config_file_cases(cases: list[Case] = CASES) -> list[tuple[Case, str]]:
    """The ``cfg({...})`` cases with their config written as a TOML file, for ``jaxzip run``."""
    out = []
    for case in cases:
        if not (case.call.startswith("cfg({") and case.call.endswith("})")):
            continue
        table = ast.literal_eval(case.call[4:-1])
        lines = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for section, body in table.items():
            if isinstance(body, dict):
                lines += [f"[{section}]", *(f"{k} = {_toml_value(v)}" for k, v in body.items())]
        out.append((case, "\n".join(lines) + "\n"))
    return out


@pytest.mark.parametrize(
    ("case", "toml"), config_file_cases(), ids=[c.id for c, _ in config_file_cases()]
)
def test_config_case_through_the_cli(case: Case, toml: str, tmp_path, capsys) -> None:
    """Each config case as a file given to ``jaxzip run``: exit 2, one line naming the file."""
    (tmp_path / "case.toml").write_text(toml, encoding="utf-8")
    argv = ["run", "case.toml", "--out", "out", "--no-progress"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        with pytest.raises(CliError) as info:
            _cli(capsys, argv)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxzip: error: case.toml: "), lines
    # "config: train..." names the file instead: "case.toml: train..."
    wanted = [f.replace("config: ", "case.toml: ", 1) for f in case.must_contain]
    missing = [frag for frag in wanted if frag not in lines[0]]
    assert not missing, f"message lacks {missing}: {lines[0]}"
    assert not (tmp_path / "out").exists()  # refused before the output directory was touched


def test_catalogue_shape() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 70
    assert sum(c.area == "cli" for c in CASES) >= 12
    areas = {c.area for c in CASES}
    want = {
        "paths",
        "data",
        "models",
        "train",
        "prune",
        "quant",
        "distill",
        "codec",
        "deploy",
        "auto",
    }
    assert want | {"config", "pipeline", "cli"} <= areas
    assert all(len(c.must_contain) >= 2 for c in CASES), "name the argument and the problem"
    # issue 19's target: >= 100 command-line/config cases, each exit status 2 and one line
    assert cli_case_count() >= 100


def cli_case_count(cases: list[Case] = CASES) -> int:
    """The cases run through the ``jaxzip`` command line: the CLI rows and the config files."""
    return sum(c.exc_type is CliError for c in cases) + len(config_file_cases(cases))


# --- docs/errors.md ---------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _shown_call(case: Case) -> str:
    """The call as the docs show it: CLI cases as the ``jaxzip ...`` command line."""
    if case.exc_type is not CliError:
        return case.call
    func, _, args = case.call.partition("(")
    assert func in ("cli", "locked_cli") and args.endswith(")"), case.call
    argv = eval(args[:-1], dict(SHOWN))  # a list display over R, EXPORT, ...
    return "jaxzip " + shlex.join(argv)


def render_markdown(cases: list[Case] = CASES) -> str:
    """The catalogue as the Markdown page ``docs/errors.md``."""
    lines = [
        "# Bad input: what jaxzip checks",
        "",
        "Every row is an invalid call that jaxzip rejects at the boundary with the error",
        "shown, whose message contains the fragments in the last column (the argument or",
        "path, what was expected and what was given). Each row is a test in",
        "`tests/test_bad_input_catalogue.py`; this page is generated from it with",
        f"`{REGENERATE}` (do not edit by hand).",
        "",
        "In the calls, `P` is the params `{'Dense_0': {'kernel': ones((4, 3)), 'bias':",
        "zeros(3)}}`, `MASK` an all-True mask of it, `ds` a tiny `Dataset`, `x23` and `z23`",
        "float arrays of shape (2, 3), `y2` two int32 labels, `step` a",
        "`jz.distill.make_train_step(...)` with `kd_loss(temperature=2.0, alpha=0.5)`, `cfg`",
        "is `jz.config.config_from_dict`, and files such as `bad_magic.idx` are written by",
        "the test. Every `jaxzip` command-line user error exits with status 2 and prints one",
        "line `jaxzip: error: <message>` on stderr (argparse usage errors: the usage and one",
        "error line), never a traceback; `jaxzip --traceback ...` shows one.",
        "",
        "The `cfg({...})` rows are also run as a TOML file, `jaxzip run case.toml`: exit",
        'status 2 and one line naming the file ("ConfigError; as a file: exit 2"). Rows',
        "run through the command line, those and the `jaxzip` rows, number",
        f"{cli_case_count(cases)} of the {len(cases)}.",
        "",
        "| Area | Call | Error | The message says |",
        "|---|---|---|---|",
    ]
    as_file = {c.id for c, _ in config_file_cases(cases)}
    for c in cases:
        error = "exit status 2" if c.exc_type is CliError else c.exc_type.__name__
        error += "; as a file: exit 2" if c.id in as_file else ""
        says = " … ".join(c.must_contain)
        when = " while another jaxzip holds `--out`" if c.call.startswith("locked_cli(") else ""
        lines.append(f"| {c.area} | `{_cell(_shown_call(c))}`{when} | {error} | {_cell(says)} |")
    return "\n".join(lines) + "\n"


def test_docs_up_to_date() -> None:
    current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
    assert current == render_markdown(), (
        f"{DOC_PATH} is out of date with the catalogue; regenerate it with `{REGENERATE}`"
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {REGENERATE}")
    atomic_write_text(DOC_PATH, render_markdown())
    print(f"wrote {DOC_PATH} ({len(CASES)} cases)")
