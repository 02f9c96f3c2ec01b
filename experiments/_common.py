"""The one helper the experiment scripts share: options, checks, training, records, files.

Every script in ``experiments/`` (and ``experiments/benchmarks/``) puts
``experiments/`` on ``sys.path`` in one line (it is there already under ``python
experiments/<name>.py``, not when a test loads the script by path) and imports
this as ``import _common as common``. Like the scripts, it uses only jaxzip's
public API. It holds the options and checks every script repeats
(:func:`parser`, ``add_*_options``, ``require_*``), the data split and training
set-ups several share (:func:`load_splits`, :func:`cosine_optimizer`,
:func:`load_or_fit`, :func:`distill_stacked`), the results record, table, plot
and files (:func:`record`, :func:`format_table`, :func:`png_bytes`,
:func:`finish`, :func:`main`; files written atomically with :mod:`jaxzip.io`),
and the benchmarks' timing and random inputs.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxzip as jz
from jaxzip.io import atomic_write_bytes, atomic_write_json, atomic_write_text

DATASETS = ("mnist", "digits")


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser that shows every option's default in ``--help``."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def add_data_options(p: argparse.ArgumentParser) -> None:
    """``--dataset`` (MNIST, or scikit-learn's digits for a quick check) and ``--data-dir``."""
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="mnist",
        help="digits: scikit-learn's 8x8 digits, for a quick check",
    )
    p.add_argument(
        "--data-dir", default=None, help="directory holding mnist/ (default: jaxzip's lookup)"
    )


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def add_run_options(
    p: argparse.ArgumentParser, *, out: str, batch_size: int = 128, progress: bool = False
) -> None:
    """``--batch-size`` (>= 1), ``--seed`` (>= 0), ``--out`` (default ``out``) and, if asked,
    ``--progress``."""
    p.add_argument("--batch-size", type=_int_at_least(1), default=batch_size)
    p.add_argument(
        "--seed", type=_int_at_least(0), default=0, help="seed of the split, inits and shuffles"
    )
    p.add_argument("--out", type=Path, default=Path(out), help="output directory")
    if progress:
        p.add_argument("--progress", action="store_true", help="show training progress bars")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _values(args: argparse.Namespace, name: str) -> list[Any]:
    value = getattr(args, name)
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def require_at_least(
    p: argparse.ArgumentParser, args: argparse.Namespace, minimum: float, *names: str
) -> None:
    """Each option of ``names`` (each element of a list option; unset ones pass) is ``>= minimum``."""
    for name in names:
        if any(v < minimum for v in _values(args, name)):
            p.error(f"{_flag(name)} must be >= {minimum:g}, got {getattr(args, name)}")


def require_positive(p: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """Each option of ``names`` (each element of a list option) is ``> 0``."""
    for name in names:
        if any(v <= 0 for v in _values(args, name)):
            p.error(f"{_flag(name)} must be > 0, got {getattr(args, name)}")


def require_fraction(
    p: argparse.ArgumentParser,
    args: argparse.Namespace,
    *names: str,
    one: bool = True,
    zero: bool = True,
) -> None:
    """Each option of ``names`` lies in ``[0, 1]`` (``one=False``: below 1; ``zero=False``: above 0)."""
    interval = f"{'[' if zero else '('}0, 1{']' if one else ')'}"
    for name in names:
        for v in _values(args, name):
            if v < 0 or v > 1 or (v == 1 and not one) or (v == 0 and not zero):
                p.error(f"{_flag(name)} must be in {interval}, got {v}")


def require_file(p: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    """Each path option of ``names`` that is set names an existing file."""
    for name in names:
        path = getattr(args, name)
        if path is not None and not Path(path).is_file():
            p.error(f"{_flag(name)}: no file at {str(path)!r}")


def load_splits(args: argparse.Namespace) -> jz.data.Splits:
    """``--dataset``'s train / validation (10% of train, split by ``--seed``) / test sets."""
    return jz.data.load_splits(
        args.dataset, data_dir=args.data_dir, val_fraction=0.1, seed=args.seed, progress=False
    )


def load_text_splits(args: argparse.Namespace) -> jz.data.TextSplits:
    """``--text FILE`` (checked against ``--sha256``) or, without it, the KJV from
    ``--data-dir``, as byte-level train / held-out splits."""
    if args.text is None:
        return jz.data.load_kjv(args.data_dir)
    name = args.text.name.removesuffix(".gz")
    source = jz.data.TextSource(name="text", file=name, sha256=args.sha256)
    return jz.data.load_text(source, args.text.parent)


def first_windows(windows: jz.data.TokenWindows, limit: int) -> jz.data.TokenWindows:
    """The first ``limit`` windows, named ``<name>[:limit]`` (all of them for 0)."""
    if not limit:
        return windows
    return jz.data.TokenWindows(
        x=windows.x[:limit],
        y=windows.y[:limit],
        vocab_size=windows.vocab_size,
        name=f"{windows.name}[:{limit}]",
    )


def cosine_optimizer(
    name: str,
    learning_rate: float,
    *,
    epochs: int,
    train_size: int,
    batch_size: int,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """The optimizer an option names (``"sgd"``: Nesterov momentum 0.9, ``"adam"``), its rate
    decayed from ``learning_rate`` to 0 by a cosine over ``epochs`` epochs of full batches,
    through the config layer's one name table (:func:`jaxzip.config.make_optimizer`;
    ``kwargs``: e.g. ``weight_decay``, L2 on the kernels only)."""
    return jz.config.make_optimizer(
        name=name,
        learning_rate=learning_rate,
        schedule="cosine",
        total_steps=max(1, epochs * (train_size // batch_size)),
        **kwargs,
    )


def default_file(path: Path | None, args: argparse.Namespace, default: Path) -> Path | None:
    """``path`` if given; else, on MNIST, ``default`` when that file exists (an earlier run's)."""
    if path is None and args.dataset == "mnist" and default.is_file():
        return default
    return path


def load_or_fit(
    path: Path | None,
    model: Any,
    train_ds: jz.data.Dataset,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    save_to: Path,
    optimizer: str = "sgd",
    learning_rate: float = 0.1,
    **kwargs: Any,
) -> tuple[jz.models.ApplyFn, Any, str]:
    """A linen ``model``'s apply function, its params and where they came from.

    The params are read from ``path`` (shaped like the model's), or initialized
    with ``key`` and trained by :func:`jaxzip.train.fit` (with ``fold_in(key, 1)``)
    with :func:`cosine_optimizer` (SGD at 0.1 unless ``optimizer`` and
    ``learning_rate`` say otherwise; ``kwargs``: its options, e.g. ``weight_decay``;
    and ``progress``) and saved to ``save_to``; where they came from is the path,
    or ``"trained here for <epochs> epochs"``."""
    apply_fn = jz.models.linen_apply_fn(model)
    init = jz.models.init_params(model, key, train_ds.x[:1])
    if path is not None:
        return apply_fn, jz.train.load_params(path, init), str(path)
    progress = kwargs.pop("progress", False)
    tx = cosine_optimizer(
        optimizer,
        learning_rate,
        epochs=epochs,
        train_size=len(train_ds),
        batch_size=batch_size,
        **kwargs,
    )
    state, _ = jz.train.fit(
        apply_fn,
        init,
        tx,
        train_ds,
        epochs=epochs,
        batch_size=batch_size,
        key=jax.random.fold_in(key, 1),
        progress=progress,
    )
    jz.train.save_params(save_to, state.params)
    return apply_fn, state.params, f"trained here for {epochs} epochs"


def distill_stacked(
    step: Callable[..., tuple[Any, Any]],
    states: Any,
    teacher_params: Any,
    train_ds: jz.data.Dataset,
    *,
    hparams: dict[str, np.ndarray],
    keys: jax.Array,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    val_errors: Callable[[Any], float],
    describe: Callable[[list[float]], str],
) -> tuple[Any, list[list[float]]]:
    """Trains stacked students with a :func:`jaxzip.distill.make_vmapped_train_step` step
    (student ``i`` with ``keys[i]`` and ``hparams[...][i]``) in :func:`jaxzip.train.run_epochs`.

    Every student sees the same batches, shuffled by ``key``; after each epoch
    ``val_errors(params)`` of each student is recorded and ``describe(errors)`` is
    logged with the epoch's seconds. Returns the final stacked states and each
    student's validation errors, one per epoch.
    """

    def evaluate(states: Any) -> dict[str, Any]:
        return {"val_errors": [val_errors(s.params) for s in jz.distill.unstack_states(states)]}

    def report(record: dict[str, Any], states: Any) -> None:
        errors, seconds = record["val_errors"], record["seconds"]
        log(f"epoch {record['epoch']}/{epochs}: {describe(errors)} ({seconds:.1f}s)")

    states, records = jz.train.run_epochs(
        lambda states, batch, _: step(states, teacher_params, batch, keys, hparams),
        states,
        train_ds,
        key=key,
        epochs=epochs,
        batch_size=batch_size,
        evaluate=evaluate,
        callbacks=[report],
    )
    return states, [list(h) for h in zip(*(r["val_errors"] for r in records), strict=True)]


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as JSON values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def record(
    args: argparse.Namespace, splits: jz.data.Splits | None = None, **fields: Any
) -> dict[str, Any]:
    """A results JSON: ``fields`` (after ``--dataset`` and the validation and test sizes
    when ``splits`` is given), then the settings, the JAX version and the backend."""
    sizes = {} if splits is None else {"val_size": len(splits.val), "test_size": len(splits.test)}
    return {
        **({} if splits is None else {"dataset": args.dataset}),
        **sizes,
        **fields,
        "settings": settings(args),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], *, markdown: bool = False
) -> str:
    """An aligned text table: the first column flush left, the others flush right, a rule
    under the header; or, with ``markdown=True``, the same cells as a Markdown table.

    Example:
      >>> print(format_table(["model", "errors"], [["teacher", 67], ["student", 146]]))
      model    errors
      -------  ------
      teacher      67
      student     146
    """
    cells = [[str(c) for c in row] for row in [header, *rows]]
    if markdown:
        rows_md = ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join([rows_md[0], "|" + "---|" * len(header), *rows_md[1:]])
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]

    def line(row: list[str]) -> str:
        out = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        return "  ".join(out).rstrip()

    return "\n".join(
        [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    )


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Any, *, dpi: int | None = None) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    return buf.getvalue()


def finish(out: Path, files: dict[str, Any], text: str) -> None:
    """Writes each of ``files`` (name -> bytes, str, or a JSON value) into ``out``
    atomically, then prints ``text`` (the table) on stdout."""
    for name, content in files.items():
        if isinstance(content, bytes):
            atomic_write_bytes(out / name, content)
        elif isinstance(content, str):
            atomic_write_text(out / name, content)
        else:
            atomic_write_json(out / name, content)
    print(text)


def main(
    argv: list[str] | None,
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    outputs: Callable[[dict[str, Any]], tuple[dict[str, Any], str]],
) -> dict[str, Any]:
    """A script's ``main``: parses ``argv``, runs, writes the files and prints the table
    that ``outputs(results)`` returns (see :func:`finish`); returns the results."""
    args = parse_args(argv)
    results = run(args)
    files, text = outputs(results)
    finish(args.out, files, text)
    return results


def log(message: str) -> None:
    """A progress line on stderr (stdout is kept for the table)."""
    print(message, file=sys.stderr, flush=True)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The median wall time of ``fn()`` over ``repeats`` calls (``fn`` must block until done)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mlp(widths: Sequence[int], num_classes: int = 10) -> tuple[Any, jz.models.ApplyFn]:
    """``jz.models.MLP(widths)`` and its apply function."""
    model = jz.models.MLP(tuple(widths), num_classes=num_classes)
    return model, jz.models.linen_apply_fn(model)


def random_batch(batch_size: int, *, num_classes: int = 10, seed: int = 0) -> dict[str, Any]:
    """A batch of uniform random 28x28x1 images and labels on the device, for benchmarks."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, 28, 28, 1), np.float32)
    y = rng.integers(0, num_classes, batch_size, np.int32)
    return {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def random_params(model: Any, example_x: Any, seed: int) -> Any:
    """Params of ``model``'s structure drawn with numpy: kernels ``N(0, 1 / fan_in)``, zero biases.

    For benchmarks, whose speed does not depend on the values: this avoids
    compiling the initializers (seconds of XLA time on a small CPU).
    """
    shapes = jax.eval_shape(lambda: jz.models.init_params(model, jax.random.key(0), example_x))
    rng = np.random.default_rng(seed)

    def draw(leaf: jax.ShapeDtypeStruct) -> jax.Array:
        if len(leaf.shape) < 2:
            return jnp.zeros(leaf.shape, leaf.dtype)
        std = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.standard_normal(leaf.shape) * std, leaf.dtype)

    return jax.tree.map(draw, shapes)
