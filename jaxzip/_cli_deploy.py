"""``jaxzip inspect`` and ``jaxzip export``: compressed and exported files (see :mod:`jaxzip.cli`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _add_deploy_commands(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="print the size report of a compressed (.jz) or exported model file",
        description="Print each leaf's stored bytes beside its entropy bound, and the totals. "
        "For an exported model, also its input and output shapes.",
    )
    inspect.add_argument("file", metavar="FILE", help="a .jz file or an exported model")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    export = commands.add_parser(
        "export",
        help="export a model with compressed weights to one runnable file",
        description="Export a model and its compressed weights (a .jz file) to one file holding "
        "serialized StableHLO and the still-compressed weights; jaxzip.deploy.load_exported "
        "runs it without the model's source. The model is any one a config can build: "
        "--config FILE builds what `jaxzip run FILE` ends with (its [model], or the [distill] "
        "student when the run distills, sized by its [data]); --model NAME a model of that "
        "name with its defaults.",
    )
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="NAME", help="a model name of the config's [model]")
    which.add_argument(
        "--config", metavar="FILE.toml", help="an experiment config (e.g. a run's config.toml)"
    )
    export.add_argument("--weights", required=True, metavar="FILE.jz", help="its params (.jz)")
    export.add_argument(
        "--input-shape",
        metavar="N,...",
        help="input shape, e.g. 1,28,28,1 or 1,128 for tokens (needed with --model; with "
        "--config the default is one example of its data)",
    )
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    export.add_argument(
        "--polymorphic-batch",
        action="store_true",
        help="accept any batch size (the first dimension) instead of N only",
    )


def _inspect(args: argparse.Namespace) -> int:
    from jaxzip import codec, deploy
    from jaxzip.codec._frame import read_file

    path = Path(args.file)
    if path.is_dir():
        raise codec.FormatError(f"{path}: is a directory, not a jaxzip file")
    # validated exactly as load / load_exported would, then reported leaf by leaf
    head = b""
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(8)
    if deploy.is_exported_file(head):
        info = deploy.check_exported(path)
        data_len = path.stat().st_size
        try:
            report = codec.size_report(info.weights)
        except codec.FormatError as e:
            raise codec.FormatError(f"{path}: {e}") from None
    else:
        info = None
        try:
            data = read_file(path)
            data_len = len(data)
            report = codec.size_report(data)
        except codec.FormatError as e:
            raise codec.FormatError(f"{path}: {e}") from None
    if args.json:
        out = report.to_dict()
        if info is not None:
            out["export"] = {
                "input_shape": list(info.input_shape),
                "input_dtype": info.input_dtype,
                "output_shape": list(info.output_shape),
                "output_dtype": info.output_dtype,
                "file_bytes": data_len,
                "hlo_bytes": info.hlo_bytes,
            }
        print(json.dumps(out, indent=2))
        return 0
    if info is not None:
        shape = lambda s: "(" + ", ".join("N" if d is None else str(d) for d in s) + ")"  # noqa: E731
        print(
            f"exported model: {data_len} bytes ({info.hlo_bytes} StableHLO, "
            f"{len(info.weights)} weights)"
        )
        print(f"input  {shape(info.input_shape)} {info.input_dtype}")
        print(f"output {shape(info.output_shape)} {info.output_dtype}")
        print("weights:")
    print(codec.format_size_report(report))
    return 0


def _parse_shape(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(
            f"--input-shape: expected positive integers separated by commas (e.g. 1,28,28,1), "
            f"got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _export(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from jaxzip import codec, config, deploy, models, pipeline, quant
    from jaxzip.paths._trees import first_structure_difference

    if args.config is not None:
        module, example = pipeline.config_model(config.load_config(args.config), progress=False)
        what = f"the model of {args.config}"
    else:
        if args.input_shape is None:
            raise ValueError("--input-shape: required with --model (e.g. 1,28,28,1)")
        config.lookup("model", args.model, where="--model")
        module = config.make_model(args.model)
        tokens = args.model in config.TOKEN_MODELS
        example = np.zeros((1,), np.int32 if tokens else np.float32)
        what = f"model {args.model!r}"
    shape = example.shape if args.input_shape is None else _parse_shape(args.input_shape)
    x = np.zeros(shape, example.dtype)
    compressed = codec.load(args.weights)
    try:
        want = jax.eval_shape(lambda: models.init_params(module, jax.random.key(0), x))
    except Exception as e:  # the model's own code failed on this shape
        raise ValueError(
            f"--input-shape: {what} cannot take input shape {list(shape)} ({type(e).__name__}: {e})"
        ) from None
    got = jax.eval_shape(lambda: quant.dequantize_params(compressed))
    as_shapes = lambda t: jax.tree.map(lambda a: tuple(a.shape), t)  # noqa: E731
    if jax.tree.structure(want) != jax.tree.structure(got) or as_shapes(want) != as_shapes(got):
        hint = (
            ""
            if args.config
            else " (--model builds it at its default sizes; --config with the run's "
            "config.toml builds the model the run trained)"
        )
        raise ValueError(
            f"--weights {args.weights}: its params do not fit {what} with input shape "
            f"{list(shape)}: {first_structure_difference(want, got, ('the model', 'the file'))}"
            f"{hint}"
        )
    info = deploy.export(
        models.linen_apply_fn(module),
        compressed,
        x,
        args.out,
        polymorphic_batch=args.polymorphic_batch,
    )
    print(f"wrote {args.out}: input {list(info.input_shape)}, output {list(info.output_shape)}")
    return 0
