"""The ``jaxzip`` command line: ``jaxzip run [CONFIG] [--set KEY=VALUE]... [--out DIR]``.

Also ``jaxzip auto CONFIG --max-drop PP [--time-budget 10m] [--max-trials N] [--out DIR]
[--strategy greedy|optuna]`` (the accuracy-bounded compression search, resumable from its
journal), ``jaxzip inspect FILE [--json]`` (the size report of a compressed or exported
file) and ``jaxzip export --model NAME --weights FILE.jz --input-shape N,H,W,C --out FILE``.

User errors (a missing file, an unknown key, a bad value, a corrupt dataset)
print one line ``jaxzip: error: <message>`` on stderr and exit with status 2;
Ctrl-C exits with status 130. ``--traceback`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
import typing
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "config_keys_help", "main", "parse_duration"]

EXIT_USAGE = 2
"""Exit status for bad user input (as argparse uses for usage errors)."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""

_DESCRIPTION = """\
jaxzip makes neural networks small: pruning, quantization, distillation and
compressed storage in JAX. `jaxzip run` runs an experiment declared in a TOML
config file and writes its results to a directory."""

_EPILOG = """\
examples:
  jaxzip run                                   # the packaged default: a small CNN on digits
  jaxzip run my_experiment.toml                # your own config
  jaxzip run --set train.epochs=3 --set model.name=mlp --out /tmp/try

`jaxzip run --help` lists the run options."""

_RUN_DESCRIPTION = """\
Run an experiment: load the data, build and train the model, evaluate it on the
validation and test sets, and write config.toml (the resolved config, every
setting included), params.npz and results.json to the output directory. A table
of the results is printed to stdout; progress bars go to stderr."""

_RUN_EPILOG = """\
--set values are TOML: numbers (3, 1e-3), booleans (true), lists ([300, 100]),
strings (quoted, or bare when they are not a number: model.name=mlp).

examples:
  jaxzip run
  jaxzip run --set train.epochs=1 --no-progress
  jaxzip run my.toml --set model.name=mlp --set model.widths=[300,100] --out runs/wide

MNIST files are found in data.data_dir, then $JAXZIP_DATA_DIR/<dataset>, then the
user cache directory, and downloaded there when data.download is true."""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def config_keys_help() -> str:
    """Every config section and key with its default and meaning (for ``jaxzip run --help``).

    Example:
      >>> print(config_keys_help().splitlines()[2])
        [experiment]
    """
    from jaxzip.pipeline import ExperimentConfig

    lines = ["config keys and their defaults (a config file states only what differs):", ""]
    cfg = ExperimentConfig()
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if value is None:  # an optional section: show the defaults of its class
            value = typing.get_args(typing.get_type_hints(ExperimentConfig)[section.name])[0]()
        lines.append(f"  [{section.name}]")
        hints = typing.get_type_hints(type(value))
        for f in dataclasses.fields(value):
            doc = f.metadata.get("doc", "")
            if typing.get_origin(hints[f.name]) is typing.Literal:
                choices = ", ".join(json.dumps(c) for c in typing.get_args(hints[f.name]))
                doc = f"{doc}: {choices}" if doc else choices
            setting = f"{f.name} = {_toml_value(getattr(value, f.name))}"
            lines.append(f"    {setting:<34} {doc}".rstrip())
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxzip`` argument parser (exposed for tests and docs).

    Example:
      >>> build_parser().parse_args(["run", "--set", "train.epochs=2"]).overrides
      ['train.epochs=2']
    """
    from jaxzip import __version__

    parser = argparse.ArgumentParser(
        prog="jaxzip",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxzip {__version__}")
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="on an error, show the full Python traceback instead of one line",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run an experiment from a TOML config",
        description=_RUN_DESCRIPTION,
        epilog=config_keys_help() + "\n\n" + _RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="experiment config (TOML); default: the packaged default.toml "
        "(digits, small CNN, under a minute on a laptop CPU)",
    )
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config setting, e.g. --set train.epochs=3 (repeatable; "
        "a later one wins)",
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        help="output directory (default: runs/<experiment.name> under the current directory); "
        "an earlier run's finished stages there are reused where their config parts are unchanged "
        "(see --no-cache), its results replaced",
    )
    run.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (download, training) on stderr",
    )
    run.add_argument(
        "--no-cache",
        dest="use_cache",
        action="store_false",
        help="run every stage even where out/stages/ holds a finished one for the same config",
    )
    _add_deploy_commands(commands)
    _add_auto_command(commands)
    return parser


def _add_auto_command(commands: argparse._SubParsersAction) -> None:
    auto = commands.add_parser(
        "auto",
        help="search per-layer sparsity and bits for the smallest file within an accuracy drop",
        description="Search per-layer pruning sparsity and k-means bits for the smallest "
        "compressed file whose validation accuracy stays within --max-drop percentage points "
        "of the config's model. Every trial goes to OUT/journal.jsonl as it finishes; rerunning "
        "the same command resumes without redoing trials. Writes best.jz, best.json, auto.json "
        "and report.md to OUT.",
    )
    auto.add_argument("config", metavar="CONFIG", help="experiment config (TOML)")
    auto.add_argument(
        "--max-drop",
        required=True,
        metavar="PP",
        help="allowed validation accuracy drop in percentage points, e.g. 0.1",
    )
    auto.add_argument(
        "--time-budget",
        metavar="T",
        help="stop starting trials after T (600s, 10m, 1h; a bare number is seconds)",
    )
    auto.add_argument("--max-trials", metavar="N", help="at most N candidate trials")
    auto.add_argument(
        "--out", metavar="DIR", help="output directory (default: runs/<experiment.name>_auto)"
    )
    auto.add_argument(
        "--strategy",
        choices=("greedy", "optuna"),
        default="greedy",
        help="greedy allocation from sensitivity curves (default) or optuna",
    )
    auto.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config setting",
    )
    auto.add_argument("--no-progress", dest="progress", action="store_false",
                      help="no progress bars on stderr")  # fmt: skip


def parse_duration(text: str) -> float:
    """Seconds in ``"600s"``, ``"10m"``, ``"1.5h"`` or ``"90"``; must be > 0.

    Example:
      >>> parse_duration("10m"), parse_duration("1h"), parse_duration("45")
      (600.0, 3600.0, 45.0)
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    scale = units.get(t[-1:])
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"--time-budget: expected a positive duration like 600s, 10m or 1h, "
                         f"got {text!r}")  # fmt: skip
    return value


def _number_arg(name: str, text: str, *, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    ok = value is not None and (value >= 1 if integer else 0 <= value < float("inf"))
    if not ok:
        want = "an integer >= 1" if integer else "a number of percentage points >= 0"
        raise ValueError(f"{name}: expected {want}, got {text!r}")
    return value


def _auto(args: argparse.Namespace) -> int:
    from jaxzip.pipeline import apply_overrides, load_config, run_auto

    max_drop = _number_arg("--max-drop", args.max_drop, integer=False)
    budget = None if args.time_budget is None else parse_duration(args.time_budget)
    trials = None if args.max_trials is None else int(_number_arg("--max-trials", args.max_trials,
                                                                  integer=True))  # fmt: skip
    cfg = apply_overrides(load_config(args.config), args.overrides)
    out_dir = Path(args.out) if args.out else Path("runs") / f"{cfg.experiment.name}_auto"
    summary = run_auto(cfg, out_dir, max_drop_pp=max_drop, time_budget_s=budget,
                       max_trials=trials, strategy=args.strategy, progress=args.progress)  # fmt: skip
    best, res = summary["result"]["best"], summary["result"]
    status = "feasible" if res["feasible"] else "NOT feasible (no candidate met the bound)"
    print(f"best: {best['bytes']} bytes, {best['ratio']:.2f}x, val accuracy "
          f"{best['accuracy']:.4f} (baseline {res['baseline']:.4f}), {status}; "
          f"test accuracy {summary['test']['best_test_accuracy']:.4f}")  # fmt: skip
    print(f"wrote {out_dir / 'auto.json'}, best.jz, journal.jsonl")
    return 0


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
        help="export a reference model with compressed weights to one runnable file",
        description="Export a reference model and its compressed weights (a .jz file) to one "
        "file holding serialized StableHLO and the still-compressed weights; "
        "jaxzip.deploy.load_exported runs it without the model's source.",
    )
    export.add_argument("--model", required=True, metavar="NAME", help="a reference model name")
    export.add_argument("--weights", required=True, metavar="FILE.jz", help="its params (.jz)")
    export.add_argument(
        "--input-shape", required=True, metavar="N,H,W,C", help="input shape, e.g. 1,28,28,1"
    )
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    export.add_argument(
        "--polymorphic-batch",
        action="store_true",
        help="accept any batch size (the first dimension) instead of N only",
    )


def _inspect(args: argparse.Namespace) -> int:
    from jaxzip import codec, deploy

    path = Path(args.file)
    if path.is_dir():
        raise codec.FormatError(f"{path}: is a directory, not a jaxzip file")
    data = path.read_bytes()
    try:
        info = deploy.parse_info(data) if deploy.is_exported_file(data) else None
        report = codec.size_report(info.weights if info else data)
    except codec.FormatError as e:
        raise codec.FormatError(f"{path}: {e}") from None
    if args.json:
        out = report.to_dict()
        if info is not None:
            out["export"] = {
                "input_shape": list(info.input_shape), "input_dtype": info.input_dtype,
                "output_shape": list(info.output_shape), "output_dtype": info.output_dtype,
                "file_bytes": len(data), "hlo_bytes": info.hlo_bytes,
            }  # fmt: skip
        print(json.dumps(out, indent=2))
        return 0
    if info is not None:
        shape = lambda s: "(" + ", ".join("N" if d is None else str(d) for d in s) + ")"  # noqa: E731
        print(f"exported model: {len(data)} bytes ({info.hlo_bytes} StableHLO, "
              f"{len(info.weights)} weights)")  # fmt: skip
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
    import jax.numpy as jnp

    from jaxzip import codec, deploy, models, quant

    shape = _parse_shape(args.input_shape)
    module = models.make_model(args.model)
    compressed = codec.load(args.weights)
    x = jnp.zeros(shape, jnp.float32)
    try:
        want = jax.eval_shape(lambda: models.init_params(module, jax.random.key(0), x))
    except Exception as e:  # the model's own code failed on this shape
        raise ValueError(
            f"--input-shape: model {args.model!r} cannot take input shape {list(shape)} "
            f"({type(e).__name__}: {e})"
        ) from None
    got = jax.eval_shape(lambda: quant.dequantize_params(compressed))
    as_shapes = lambda t: jax.tree.map(lambda a: tuple(a.shape), t)  # noqa: E731
    if jax.tree.structure(want) != jax.tree.structure(got) or as_shapes(want) != as_shapes(got):
        raise ValueError(
            f"--weights {args.weights}: its params do not fit model {args.model!r} "
            f"with input shape {list(shape)}"
        )
    info = deploy.export(
        models.linen_apply_fn(module), compressed, x, args.out,
        polymorphic_batch=args.polymorphic_batch,
    )  # fmt: skip
    print(f"wrote {args.out}: input {list(info.input_shape)}, output {list(info.output_shape)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from jaxzip.pipeline import apply_overrides, load_config, run_experiment

    cfg = apply_overrides(load_config(args.config), args.overrides)
    out_dir = Path(args.out) if args.out else Path("runs") / cfg.experiment.name
    run_experiment(cfg, out_dir, progress=args.progress, use_cache=args.use_cache)
    print(f"wrote {out_dir / 'results.json'}, config.toml, params.npz")
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``jaxzip`` command line and returns its exit status.

    Args:
      argv: the arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns:
      0 on success, 2 for bad input (usage, config, data), 130 after Ctrl-C.

    Example:
      >>> main(["run", "--set", "train.epochs=zero"])  # prints one line on stderr
      2

      and on stderr: ``jaxzip: error: --set train.epochs: expected an integer >= 1,
      got 'zero' (a string)``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
    from jaxzip._errors import JaxzipError

    try:
        return {"run": _run, "inspect": _inspect, "export": _export, "auto": _auto}[args.command](
            args
        )
    except KeyboardInterrupt:
        print("jaxzip: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (JaxzipError, ValueError, TypeError, OSError) as err:
        if args.traceback:
            traceback.print_exc()
        print(f"jaxzip: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
