"""One-shot compression of the reference byte-level language model, side by side (issue 17).

For the transformer trained by ``experiments/lm_train.py`` (KJV, bytes), every
method is applied to the same params and scored on the same held-out windows
(the first ``--eval-windows`` non-overlapping windows of the held-out text),
with the same calibration sample (``--calib`` windows drawn from the training
text with a key derived from ``--seed``). Each row gives held-out bits per byte,
its increase over fp32, and the bytes of the compressed file
(:func:`jaxzip.codec.encode` of the params as the method leaves them, the very
params scored), that size as a fraction of the fp32 file, and its bits per
parameter (file bits over every parameter of the model, scales and headers
included) and, for the rows that store ``QArray`` leaves, bits per quantized
weight (those leaves' bytes, scales and zero points included, over their
elements: the ``bits_per_weight`` of :func:`jaxzip.codec.size_report`):

* round-to-nearest (RTN) and GPTQ at int8 / int4 / int3, per output channel and
  per group of 64 inputs (the attention output projection, whose input axes are
  ``(heads, head_dim)``, uses groups of one head, 48, as 64 does not divide it);
  GPTQ calibrates each kernel on the earlier kernels already quantized;
  ``GPTQ (MLP only)`` quantizes the MLP kernels alone (the rest float), the
  setting of Qwix's GPTQ fallback, at int8 / int4 per channel and int4 g64 and,
  asymmetric only, int3 per channel and g64 (:data:`MLP_SETTINGS`); the
  ``int4 g64 [asym] + int8 emb`` rows also store the embedding tables (the 2-D leaves
  named ``*embed*`` that no matmul consumes: token and position embeddings) as
  int8 with one scale per row (:data:`EMBED_SPEC`), so the whole file is
  quantized but for biases and LayerNorms;
* the grids: a plain ``intB`` setting is jaxzip's default symmetric grid, scale
  ``absmax / (2^(B-1) - 1)`` over ``-(2^(B-1) - 1) .. 2^(B-1) - 1`` (15 levels at
  int4, 7 at int3) with zero point 0; an ``intB ... asym`` setting (RTN, GPTQ and
  GPTQ (MLP only) at int4 / int3, per channel and g64) is the asymmetric grid,
  ``QuantSpec(symmetric=False)``: scale ``(max - min) / (2^B - 1)`` over
  ``-2^(B-1) .. 2^(B-1) - 1`` (all 16 / 8 levels) with an integer zero point per
  scale, the min/max grid of the GPTQ paper's reference code. The file sizes of
  the asym rows include their zero points: the codec stores every ``QArray``'s
  ``zero_point`` array beside its values and scales (one per scale, entropy- or
  bit-coded like the values), and the bytes reported are that file's; a
  symmetric row's all-zero zero points cost almost nothing;
* magnitude, Wanda and SparseGPT at 50% unstructured and 2:4 on the kernels'
  true input axes, one-shot and after ``--finetune-steps`` steps of fine-tuning
  with the mask kept (:func:`jaxzip.prune.keep_masked`);
* W8A8 (int8 weights, int8 activations per token, integer matmuls), SmoothQuant
  + W8A8, and AWQ (+ RTN) at int4 / int3 per group;
* the distilled 2-layer student of ``lm_train.py --distill`` (read from its JSON);
* Qwix's PTQ and GPTQ on the same model in the same run when Qwix is installed
  (``pip install qwix``; never required); a Qwix failure is reported, not hidden.
  Qwix's int4 ``absmax`` grid is symmetric but has 16 levels (scale
  ``absmax / 7.5`` over ``-8 .. 7``); its ``asym`` rows use Qwix's own
  asymmetric ``minmax`` weight calibration.

``--scan`` builds the same model with its blocks as one ``nn.scan`` over
stacked params (``Transformer(scan_layers=True)``, the teacher's params stacked
by :func:`jaxzip.models.scan_params`): GPTQ, SparseGPT, Wanda, AWQ, SmoothQuant
and W8A8 calibrate the stack layer by layer, so their rows should equal the
loop build's (up to float rounding); Qwix does not hook layer stacks, and its
rows report the error.

``--settings`` keeps the settings that start with one of its comma-separated
prefixes: ``int4`` runs every int4 row (symmetric, ``asym`` and ``+ int8
emb``), ``int4 per-channel asym`` that setting alone.

Every method quantizes or prunes the kernels that a matmul consumes, found by
tracing the model (:func:`jaxzip.layout.trace_layouts`): embeddings (except in
the ``+ int8 emb`` rows), biases and LayerNorms stay float.

  JAXZIP_DATA_DIR=../shared/data python experiments/lm_compression.py \\
      --teacher runs/lm/teacher.npz --student-json runs/lm/lm_train.json --out runs/lm_compression
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))  # experiments/, for _common
import _common as common

import jaxzip as jz

SIZES: dict[str, dict[str, int]] = {
    "reference": {"num_layers": 4, "d_model": 192, "num_heads": 4},
    "tiny": {"num_layers": 2, "d_model": 16, "num_heads": 2},
}
GROUP = 64
MLP = re.compile(r"mlp_")  # the MLP kernels: Qwix's GPTQ runs on these only (see qwix_rows)
EMBED_SPEC = jz.quant.QuantSpec(bits=8, axes=(0,))  # int8, one scale per embedding row
# (bits, groups of 64, symmetric): RTN and GPTQ on every kernel, and GPTQ (MLP only)
WEIGHT_SETTINGS = (
    (8, False, True),
    (4, False, True),
    (4, False, False),
    (4, True, True),
    (4, True, False),
    (3, False, True),
    (3, False, False),
    (3, True, True),
    (3, True, False),
)
# GPTQ (MLP only): every setting but the symmetric int3 ones
MLP_SETTINGS = tuple(s for s in WEIGHT_SETTINGS if s[0] > 3 or not s[2])


ASYM_NOTE = (
    "asym: asymmetric grid with an integer zero point per scale (all 2^B levels; "
    "jaxzip QuantSpec(symmetric=False), Qwix weight_calibration_method='minmax'), its zero "
    "points counted in the file bytes; otherwise symmetric (jaxzip: 2^B - 1 levels, "
    "absmax / (2^(B-1) - 1); Qwix: 2^B levels, absmax / (2^(B-1) - 0.5))."
)
# Qwix's PTQ and GPTQ: absmax (its symmetric 16-level int4 grid) and minmax (asymmetric)
QWIX_SETTINGS = tuple(s for s in WEIGHT_SETTINGS if s[0] >= 4)


def setting_name(bits: int, grouped: bool, symmetric: bool = True) -> str:
    """``"int4 per-channel"``, ``"int4 g64"``, ``"int3 g64 asym"`` (asymmetric grid)..."""
    return f"int{bits} {'g64' if grouped else 'per-channel'}{'' if symmetric else ' asym'}"


def parse_args(argv: list[str] | None = None):
    p = common.parser("One-shot compression of the reference byte-level LM, side by side.")
    p.add_argument("--teacher", type=Path, required=True, help="params from lm_train.py")
    p.add_argument("--size", choices=tuple(SIZES), default="reference")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--data-dir", default=None, help="directory holding kjv.txt.gz")
    p.add_argument("--text", type=Path, default=None, help="another text file (raw or .gz)")
    p.add_argument("--sha256", default=None, help="SHA-256 of --text's (decompressed) content")
    p.add_argument("--eval-windows", type=int, default=1024, help="held-out windows (0: all)")
    p.add_argument("--calib", type=int, default=128, help="calibration windows")
    p.add_argument("--calib-batch", type=int, default=16)
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--finetune-lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch")
    p.add_argument("--student-json", type=Path, default=None, help="lm_train.py --distill JSON")
    p.add_argument("--only", default="", help="comma-separated method families to run")
    p.add_argument(
        "--settings",
        default="",
        help="comma-separated setting prefixes to run (e.g. 'int4 g64'; default: all)",
    )
    p.add_argument("--no-qwix", action="store_true", help="skip the Qwix peer")
    p.add_argument("--scan", action="store_true", help="the blocks as one nn.scan (stacked)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/lm_compression"))
    args = p.parse_args(argv)
    for name in ("seq_len", "calib", "calib_batch", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if (args.text is None) != (args.sha256 is None):
        p.error("--text and --sha256 go together")
    if args.eval_windows < 0 or args.finetune_steps < 0:
        p.error("--eval-windows and --finetune-steps must be >= 0")
    return args


class Bench:
    """The model, its data and the scoring shared by every method."""

    def __init__(self, args) -> None:
        self.args = args
        root = jax.random.key(args.seed)
        self.key = lambda name: jax.random.fold_in(root, sum(map(ord, name)))
        splits = common.load_text_splits(args)
        windows = jz.data.eval_windows(splits.held_out, seq_len=args.seq_len, name="held_out")
        n = args.eval_windows or len(windows)
        self.windows = jz.data.TokenWindows(
            x=windows.x[:n], y=windows.y[:n], vocab_size=windows.vocab_size, name="held_out"
        )
        self.train_text = splits.train
        calib = jz.data.sample_windows(
            splits.train, seq_len=args.seq_len, num=args.calib, key=self.key("calibration")
        )
        b = args.calib_batch
        self.calib = [jnp.asarray(calib.x[i : i + b]) for i in range(0, args.calib, b)]
        sizes = {**SIZES[args.size], "max_len": args.seq_len}
        loop = jz.models.Transformer(**sizes)
        self.model = jz.models.Transformer(**sizes, scan_layers=args.scan)
        self.apply = jz.models.linen_apply_fn(self.model)
        self.qapply = jz.quant.make_quantized_apply(self.apply)
        example = np.zeros((1, args.seq_len), np.int32)
        like = jax.eval_shape(lambda: jz.models.init_params(loop, root, example))
        self.params = jz.train.load_params(args.teacher, like)
        if args.scan:  # the same numbers, the blocks stacked along a layer axis
            self.params = jz.models.scan_params(self.params)
        self.fwd = lambda p, x: self.apply(p, x, train=False, key=None)
        self.layouts = jz.layout.trace_layouts(self.fwd, self.params, self.calib[0][:1])
        self.kernels = jz.layout.matmul_where(self.layouts)
        # embedding tables: the 2-D leaves named *embed* (token and position embeddings)
        self.tables = [
            path
            for path, leaf in jz.paths.leaves_with_paths(self.params)
            if np.ndim(leaf) == 2 and "embed" in path and path not in self.layouts
        ]
        self.num_params = sum(int(np.size(x)) for x in jax.tree.leaves(self.params))
        self.fp32 = self.bpb(self.params)
        self.fp32_bytes = file_bytes(self.params)

    def bpb(self, params, apply_fn=None) -> float:
        fn = apply_fn or (self.qapply if _has_qarrays(params) else self.apply)
        return jz.train.evaluate(fn, params, self.windows, batch_size=64)["bits_per_token"]

    def row(self, family: str, method: str, setting: str, bpb: float, nbytes: int) -> dict:
        """A result row's common fields: the method, its bits per byte beside fp32's, bytes."""
        return {
            "family": family,
            "method": method,
            "setting": setting,
            "bpb": bpb,
            "increase": bpb - self.fp32,
            "relative": bpb / self.fp32 - 1,
            "file_bytes": nbytes,
        }

    def group_for(self, layout) -> int:
        """64, or the whole last input axis when 64 does not divide it (one attention head)."""
        size = layout.shape[layout.group_axis()]
        return GROUP if size % GROUP == 0 else size

    def finetune(self, params, mask, steps: int):
        """``steps`` steps of Adam on the training text with ``mask`` kept exactly."""
        tx = optax.chain(optax.adam(self.args.finetune_lr), jz.prune.keep_masked(mask))
        step = jz.train.make_train_step(self.apply, tx)
        state = jz.train.init_state(params, tx)
        data_key, step_key = self.key("finetune-data"), self.key("finetune-step")
        for i in range(steps):
            w = jz.data.sample_windows(
                self.train_text,
                seq_len=self.args.seq_len,
                num=self.args.batch_size,
                key=jax.random.fold_in(data_key, i),
            )
            state, _ = step(state, {"x": w.x, "y": w.y}, jax.random.fold_in(step_key, i))
        return state.params


def _has_qarrays(params) -> bool:
    leaves = jax.tree.leaves(params, is_leaf=jz.quant.is_quantized)
    return any(jz.quant.is_quantized(x) for x in leaves)


def file_bytes(tree) -> int:
    return len(jz.codec.encode(tree))


def qweight_bits(data: bytes) -> float | None:
    """Bits per quantized weight in the file ``data``: every byte of its ``QArray`` leaves
    (packed values, scales, zero points) over their elements; None without QArrays."""
    leaves = [x for x in jz.codec.size_report(data).leaves if x.kind == "qarray"]
    return 8 * sum(x.bytes for x in leaves) / sum(x.size for x in leaves) if leaves else None


def _exact(path: str) -> str:
    return re.escape(path)


def specs_for(b: Bench, bits: int, grouped: bool, symmetric: bool = True) -> dict[str, Any]:
    """Per kernel: one scale (and zero point) per output channel (its traced out axes),
    optionally per group; ``symmetric=False`` is the asymmetric zero-point grid."""
    return {
        path: jz.quant.QuantSpec(
            bits=bits,
            axes=lay.quant_axes(),
            symmetric=symmetric,
            group_size=b.group_for(lay) if grouped else None,
            group_axis=lay.group_axis(),
        )
        for path, lay in b.layouts.items()
    }


def rtn_params(b: Bench, bits: int, grouped: bool, params=None, symmetric: bool = True):
    rules = [(_exact(p), spec) for p, spec in specs_for(b, bits, grouped, symmetric).items()]
    return jz.quant.quantize_params(b.params if params is None else params, rules)


def with_int8_tables(b: Bench, params):
    """``params`` with the embedding tables (:attr:`Bench.tables`) quantized by EMBED_SPEC."""
    if not b.tables:
        raise ValueError("the model has no embedding table (2-D leaf named *embed*)")
    return jz.quant.quantize_params(params, [(_exact(p), EMBED_SPEC) for p in b.tables])


def gptq_params(b: Bench, bits: int, grouped: bool, mlp_only: bool = False, symmetric: bool = True):
    """GPTQ over every kernel, sequentially (the paper's protocol), one spec per kernel.

    The specs are RTN's (:func:`specs_for`): with groups, the attention output
    projection takes one head per group. ``gptq`` gives each kernel a
    ``QArray`` in its own axes (scales on its traced output axes).
    """
    rules = [
        (
            _exact(p),
            jz.quant.QuantSpec(bits=bits, axes=(-1,), group_size=s.group_size, symmetric=symmetric),
        )
        for p, s in specs_for(b, bits, grouped, symmetric).items()
        if not mlp_only or MLP.search(p)
    ]
    where = tuple(r[0] for r in rules) if mlp_only else None
    return jz.quant.gptq(b.fwd, b.params, b.calib, rules, where=where, layouts=b.layouts)


def magnitude_mask(b: Bench, structure: str):
    """50% per kernel (per layer of a stack), or 2:4 along each kernel's own last input axis."""
    if structure == "50%":
        stacks = {p: lay.layer_axis for p, lay in b.layouts.items() if lay.layer_axis is not None}
        return jz.prune.magnitude_mask(b.params, sparsity=0.5, where=b.kernels, layer_axes=stacks)
    masks = [
        jz.prune.magnitude_mask(
            b.params, where=_exact(path), structure=jz.prune.NByM(2, 4, axis=lay.group_axis())
        )
        for path, lay in b.layouts.items()
    ]
    return jax.tree.map(lambda *ms: np.logical_and.reduce([np.asarray(m) for m in ms]), *masks)


def prune_kwargs(structure: str) -> dict[str, Any]:
    return {"sparsity": 0.5} if structure == "50%" else {"structure": jz.prune.NByM(2, 4)}


def scaled(fn) -> Callable[..., Any]:
    """A ``fn(params, x)`` as an ApplyFn for :func:`jaxzip.train.evaluate`."""
    return lambda p, x, *, train=False, key=None: fn(p, x)


def w8a8(b: Bench, *, static: bool, smooth: bool):
    params, in_scales = b.params, None
    if smooth:
        smoothed = jz.quant.smooth_quant(b.fwd, b.params, b.calib, layouts=b.layouts)
        params, in_scales = smoothed.params, smoothed.in_scales
    fn, q = jz.quant.w8a8(
        b.fwd,
        params,
        layouts=b.layouts,
        in_scales=in_scales,
        calib_batches=b.calib if static else None,
    )
    return q, scaled(fn), in_scales


def awq_rtn(b: Bench, bits: int):
    """AWQ's scale search per kernel (per group size), then RTN on the scaled kernels."""
    by_size: dict[int, list[str]] = {}
    for path, lay in b.layouts.items():
        by_size.setdefault(b.group_for(lay), []).append(path)
    params, scales, specs = b.params, {}, {}
    for g, paths in by_size.items():
        r = jz.quant.awq(
            b.fwd,
            params,
            b.calib,
            layouts=b.layouts,
            bits=bits,
            group_size=g,
            where=tuple(_exact(p) for p in paths),
        )
        params, scales, specs = r.params, {**scales, **r.in_scales}, {**specs, **r.spec}
    q = jz.quant.quantize_params(params, [(_exact(p), s) for p, s in specs.items()])
    return q, scaled(jz.quant.make_scaled_apply(b.fwd, layouts=b.layouts, in_scales=scales)), scales


def run_methods(b: Bench, only: set[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(family: str, method: str, setting: str, make: Callable[[], tuple]):
        if (only and family not in only) or not _wanted(b, setting):
            return
        t0 = time.perf_counter()
        try:
            params, apply_fn, extra = (*make(), None)[:3]
            seconds = time.perf_counter() - t0
            bpb = b.bpb(params, apply_fn)
            stored = params if extra is None else {"params": params, "in_scales": extra}
            data = jz.codec.encode(stored)
            nbytes = len(data)
            row = {
                **b.row(family, method, setting, bpb, nbytes),
                "file_ratio": nbytes / b.fp32_bytes,
                "bits_per_param": 8 * nbytes / b.num_params,
                "seconds": round(seconds, 2),
            }
            qbits = qweight_bits(data)
            if qbits is not None:
                row["bits_per_qweight"] = qbits
        except Exception as e:  # a method's (or a peer's) failure is reported, not hidden
            row = error_row(family, method, setting, e)
        rows.append(row)
        print(_row_line(row), flush=True)

    add("fp32", "fp32", "-", lambda: (b.params, None))
    for bits, grouped, sym in WEIGHT_SETTINGS:
        setting = setting_name(bits, grouped, sym)
        kw = {"bits": bits, "grouped": grouped, "symmetric": sym}
        add("rtn", "RTN", setting, lambda kw=kw: (rtn_params(b, **kw), None))
        add("gptq", "GPTQ", setting, lambda kw=kw: (gptq_params(b, **kw), None))
        if (bits, grouped) == (4, True):
            add(
                "rtn",
                "RTN",
                f"{setting} + int8 emb",
                lambda kw=kw: (with_int8_tables(b, rtn_params(b, **kw)), None),
            )
            add(
                "gptq",
                "GPTQ",
                f"{setting} + int8 emb",
                lambda kw=kw: (with_int8_tables(b, gptq_params(b, **kw)), None),
            )
    for structure in ("50%", "2:4"):
        makers = {
            "magnitude": lambda s=structure: magnitude_mask(b, s),
            "Wanda": lambda s=structure: jz.prune.wanda(
                b.fwd, b.params, b.calib, layouts=b.layouts, **prune_kwargs(s)
            ),
            "SparseGPT": lambda s=structure: jz.prune.sparsegpt(
                b.fwd, b.params, b.calib, layouts=b.layouts, **prune_kwargs(s)
            ),
        }
        for name, make in makers.items():
            made: dict[str, Any] = {}

            def one_shot(make=make, made=made):
                out = make()
                params, mask = out if isinstance(out, tuple) else (None, out)
                made["mask"] = mask
                made["params"] = jz.prune.apply_mask(b.params if params is None else params, mask)
                return made["params"], None

            def tuned(made=made):
                return b.finetune(made["params"], made["mask"], b.args.finetune_steps), None

            add("prune", name, f"{structure} one-shot", one_shot)
            if b.args.finetune_steps:
                add("prune", name, f"{structure} + {b.args.finetune_steps} steps", tuned)
    add("w8a8", "W8A8", "dynamic per token", lambda: w8a8(b, static=False, smooth=False))
    add("w8a8", "W8A8", "static per tensor", lambda: w8a8(b, static=True, smooth=False))
    add("w8a8", "SmoothQuant+W8A8", "a=0.5 dynamic", lambda: w8a8(b, static=False, smooth=True))
    add("w8a8", "SmoothQuant+W8A8", "a=0.5 static", lambda: w8a8(b, static=True, smooth=True))
    for bits, grouped, sym in MLP_SETTINGS:  # Qwix's GPTQ fallback setting
        kw = {"bits": bits, "grouped": grouped, "symmetric": sym, "mlp_only": True}
        add(
            "gptq_mlp",
            "GPTQ (MLP only)",
            setting_name(bits, grouped, sym),
            lambda kw=kw: (gptq_params(b, **kw), None),
        )
    for bits in (4, 3):
        add("awq", "AWQ + RTN", f"int{bits} g64", lambda bits=bits: awq_rtn(b, bits))
    return rows


def _wanted(b: Bench, setting: str) -> bool:
    """Whether ``--settings`` (comma-separated prefixes; empty: all) selects ``setting``."""
    prefixes = [s.strip() for s in b.args.settings.split(",") if s.strip()]
    return setting == "-" or not prefixes or any(setting.startswith(s) for s in prefixes)


def error_row(family: str, method: str, setting: str, e: Exception) -> dict[str, Any]:
    """The row of a method (or a peer) that raised ``e``: its error and traceback's tail."""
    return {
        "family": family,
        "method": method,
        "setting": setting,
        "error": f"{type(e).__name__}: {e}"[:400],
        "traceback": traceback.format_exc()[-1500:],
    }


def _row_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['method']:<20} {row['setting']:<26} FAILED: {row['error'][:120]}"
    return (
        f"{row['method']:<20} {row['setting']:<26} {row['bpb']:.4f} bpb "
        f"({row['increase']:+.4f})  {row['file_bytes']:>9,} bytes  {row['seconds']:.1f}s"
    )


def qwix_rows(b: Bench) -> list[dict[str, Any]]:
    """Qwix's PTQ and GPTQ on the same model, params, calibration sample and windows.

    Qwix stores no file, so its size is the bytes of its params in memory. Its
    GPTQ is tried on every kernel first and, if that fails, on the MLP kernels
    only (the rest float); each failure is a row of its own.
    """
    try:
        import qwix
        from qwix.contrib import gptq as qwix_gptq
    except ImportError as e:
        return [
            {
                "family": "qwix",
                "method": "Qwix",
                "setting": "-",
                "error": f"not installed ({e}); pip install qwix",
            }
        ]
    rows: list[dict[str, Any]] = []
    x0 = b.calib[0]

    def apply_with(model):
        return lambda p, x, *, train=False, key=None: model.apply({"params": p}, x, train=False)

    def ptq_model(rules):
        model = qwix.quantize_model(b.model, qwix.PtqProvider(rules))
        abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), x0))["params"]
        return model, abstract

    def ptq(rules):
        model, abstract = ptq_model(rules)
        return qwix.quantize_params(b.params, abstract), apply_with(model)

    def gptq(rules, gptq_rules):
        cal = qwix.quantize_model(b.model, qwix_gptq.GptqCalibrationProvider(gptq_rules))
        variables: dict[str, Any] = {"params": b.params}
        for x in b.calib:
            _, new = cal.apply(variables, x, train=False, mutable="quant_stats")
            variables = {**variables, **new}
        model, abstract = ptq_model(rules)
        q = qwix_gptq.quantize_params(b.params, abstract, variables["quant_stats"])
        return q, apply_with(model)

    def add(method: str, setting: str, make):
        if not _wanted(b, setting):
            return False
        t0 = time.perf_counter()
        try:
            params, apply_fn = make()
            seconds = time.perf_counter() - t0
            bpb = b.bpb(params, apply_fn)
            nbytes = sum(int(np.asarray(x).nbytes) for x in jax.tree.leaves(params))
            row = {
                **b.row("qwix", method, setting, bpb, nbytes),
                "bytes_are": "params in memory (Qwix writes no file)",
                "seconds": round(seconds, 2),
            }
        except Exception as e:
            row = error_row("qwix", method, setting, e)
        rows.append(row)
        print(_row_line(row), flush=True)
        return "error" not in row

    for bits, grouped, sym in QWIX_SETTINGS:
        rule = dict(
            weight_qtype={8: jnp.int8, 4: jnp.int4}[bits],
            tile_size=GROUP if grouped else None,
            weight_calibration_method="absmax" if sym else "minmax",
        )
        setting = setting_name(bits, grouped, sym)
        add("Qwix PTQ", setting, lambda r=rule: ptq([qwix.QuantizationRule(**r)]))
        if not add(
            "Qwix GPTQ",
            setting,
            lambda r=rule: gptq([qwix.QuantizationRule(**r)], [qwix_gptq.GptqRule(**r)]),
        ):
            mlp = dict(rule, module_path=f".*{MLP.pattern}.*")
            add(
                "Qwix GPTQ (MLP only)",
                setting,
                lambda r=mlp: gptq([qwix.QuantizationRule(**r)], [qwix_gptq.GptqRule(**r)]),
            )
    return rows


def wanda_reference(w: np.ndarray, in_norm: np.ndarray, sparsity: float) -> np.ndarray:
    """The paper's rule transcribed in float64 NumPy: per output column, drop the
    ``round(sparsity * n_in)`` inputs of lowest ``|W_ij| * ||X_i||`` (ties: lower row)."""
    scores = np.abs(w.astype(np.float64)) * in_norm.astype(np.float64)[:, None]
    k = int(np.round(sparsity * w.shape[0]))
    keep = np.ones(w.shape, bool)
    np.put_along_axis(keep, np.argsort(scores, axis=0, kind="stable")[:k], False, axis=0)
    return keep


def wanda_check(b: Bench) -> dict[str, Any]:
    """Why Wanda does or does not beat magnitude here: per kernel, how loud its loudest
    input feature is over its median one (the calibration sample's input L2 norms), and the
    fraction of weights where Wanda's 50% mask and the per-column magnitude mask (the same
    rule with flat norms) differ; and, on the first kernel, how many mask entries jaxzip's
    ``wanda_mask_matrix`` and a float64 NumPy transcription of the paper's rule differ by."""
    stats = jz.calib.collect_stats(b.fwd, b.params, b.calib, layouts=b.layouts, hessian=False)
    leaves = dict(jz.paths.leaves_with_paths(b.params))
    units = []  # (name, kernel matrix, its inputs' sq_sum): each layer of a stack on its own
    for path, layout in b.layouts.items():
        if layout.layer_axis is None:
            units.append((path, leaves[path], layout, stats[path].sq_sum))
            continue
        for i in range(layout.layers):
            at = (slice(None),) * layout.layer_axis + (i,)
            units.append(
                (f"{path}[{i}]", leaves[path][at], layout.layer_slice(), stats[path].sq_sum[i])
            )
    kernels, first = {}, {"kernel": units[0][0]}
    for path, leaf, layout, sq_sum in units:
        w = np.asarray(jz.layout.to_matrix(leaf, layout), np.float32)
        norm = np.sqrt(np.asarray(sq_sum, np.float64))
        wanda = np.asarray(jz.prune.wanda_mask_matrix(w, norm.astype(np.float32), sparsity=0.5))
        flat = np.asarray(
            jz.prune.wanda_mask_matrix(w, np.ones_like(norm, np.float32), sparsity=0.5)
        )
        kernels[path] = {
            "norm_max_over_median": float(norm.max() / np.median(norm)),
            "differs_from_magnitude": float(np.mean(wanda != flat)),
        }
        if path == first["kernel"]:
            ref = wanda_reference(w, norm, 0.5)
            first.update(entries=int(ref.size), differ_from_numpy=int(np.sum(ref != wanda)))
    ratios = [k["norm_max_over_median"] for k in kernels.values()]
    out = {
        "kernels": kernels,
        "numpy_reference": first,
        "norm_max_over_median": {
            "min": min(ratios),
            "median": float(np.median(ratios)),
            "max": max(ratios),
        },
    }
    r = out["norm_max_over_median"]
    print(
        f"Wanda check: loudest input / median input norm {r['min']:.2f} to {r['max']:.2f} "
        f"(median over kernels {r['median']:.2f}); {first['kernel']}: Wanda and per-column "
        f"magnitude differ on {100 * kernels[first['kernel']]['differs_from_magnitude']:.1f}% "
        f"of weights, jaxzip vs NumPy on {first['differ_from_numpy']} of {first['entries']}",
        flush=True,
    )
    return out


def run(args) -> dict[str, Any]:
    b = Bench(args)
    print(
        f"fp32: {b.fp32:.4f} bits per byte on {len(b.windows)} held-out windows; "
        f"{len(b.layouts)} matmul kernels",
        flush=True,
    )
    only = {s for s in args.only.split(",") if s}
    rows = run_methods(b, only)
    extra = {"wanda_check": wanda_check(b)} if not only or "prune" in only else {}
    if not args.no_qwix:
        rows += qwix_rows(b)
    student = student_row(args.student_json) if args.student_json else None
    return common.record(
        args,
        fp32_bpb=b.fp32,
        fp32_file_bytes=b.fp32_bytes,
        num_params=b.num_params,
        held_out_windows=len(b.windows),
        kernels=list(b.layouts),
        embedding_tables=b.tables,
        rows=rows,
        student=student,
        **extra,
    )


def student_row(path: Path) -> dict[str, Any]:
    """The distilled 2-layer student's figures from ``lm_train.py --distill``'s JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {"source": str(path), **data.get("students", {})}


def outputs(results: dict[str, Any]) -> tuple[dict[str, Any], str]:
    header = [
        "method",
        "setting",
        "bits/byte",
        "increase",
        "vs fp32",
        "file bytes",
        "x fp32 file",
        "bits/param",
        "bits/q-weight",
        "seconds",
    ]
    table = []
    for r in results["rows"]:
        if "error" in r:
            table.append(
                [r["method"], r["setting"], "failed", r["error"][:60], "", "", "", "", "", ""]
            )
        else:
            table.append(
                [
                    r["method"],
                    r["setting"],
                    f"{r['bpb']:.4f}",
                    f"{r['increase']:+.4f}",
                    f"{100 * r['relative']:+.2f}%",
                    f"{r['file_bytes']:,}",
                    f"{r['file_ratio']:.4f}" if "file_ratio" in r else "",
                    f"{r['bits_per_param']:.2f}" if "bits_per_param" in r else "",
                    f"{r['bits_per_qweight']:.2f}" if "bits_per_qweight" in r else "",
                    f"{r['seconds']:.1f}",
                ]
            )
    text = common.format_table(header, table)
    markdown = common.format_table(header, table, markdown=True)
    if any(r["setting"].endswith("asym") or " asym " in r["setting"] for r in results["rows"]):
        text += "\n" + ASYM_NOTE
        markdown += "\n\n" + ASYM_NOTE
    return {"lm_compression.json": results, "lm_compression.md": markdown + "\n"}, text


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return common.main(argv, parse_args, run, outputs)


if __name__ == "__main__":
    main()
