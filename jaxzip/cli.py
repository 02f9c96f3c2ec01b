"""The ``jaxzip`` command line: ``jaxzip run [CONFIG] [--set KEY=VALUE]... [--out DIR]``.

Also ``jaxzip auto CONFIG --max-drop PP [--time-budget 10m] [--max-trials N] [--out DIR]
[--strategy greedy|optuna] [--confirm-fraction F]`` (the accuracy-bounded search, resumable from its
journal), ``jaxzip inspect FILE [--json]`` (the size report of a compressed or exported
file) and ``jaxzip export (--model NAME | --config FILE) --weights FILE.jz [--input-shape N,...]
--out FILE``.

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

from jaxzip._cli_auto import _add_auto_command, _auto, parse_duration
from jaxzip._cli_deploy import _add_deploy_commands, _export, _inspect

__all__ = ["build_parser", "config_keys_help", "main", "parse_duration"]

EXIT_USAGE = 2
"""Exit status for bad user input (as argparse uses for usage errors)."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT)."""
EXIT_BROKEN_PIPE = 141
"""Exit status when the reader of stdout went away, as a shell reports it (128 + SIGPIPE)."""

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
    from jaxzip.config import ExperimentConfig

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


def _run(args: argparse.Namespace) -> int:
    from jaxzip.config import apply_overrides, load_config
    from jaxzip.pipeline import run_experiment

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
      0 on success, 2 for bad input (usage, config, data), 130 after Ctrl-C, 141 when
      the reader of stdout went away (``jaxzip inspect FILE | head``), silently.

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
    except BrokenPipeError:  # `jaxzip inspect ... | head`: the reader has what it wanted
        from jaxzip._io import discard_stdout

        discard_stdout()  # so the flush at exit stays quiet too
        return EXIT_BROKEN_PIPE
    except (JaxzipError, ValueError, TypeError, OSError) as err:
        if args.traceback:
            traceback.print_exc()
        print(f"jaxzip: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
