"""Loading an exported model: every part of the file checked before it is trusted."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxzip import codec
from jaxzip.deploy._format import MAX_FILE_BYTES, ExportInfo, parse

# The custom calls an exported function may use: the ones jax.export itself emits for
# shape assertions and sharding. Anything else (a native kernel, a host callback) is refused
# at load: the file would need code that is not in it, or run code it should not.
ALLOWED_CUSTOM_CALLS = frozenset(
    (
        "shape_assertion",
        "Sharding",
        "SPMDFullToShardShape",
        "SPMDShardToFullShape",
        "annotate_device_placement",
    )
)
_CUSTOM_CALL = re.compile(r'stablehlo\.custom_call\s*@("(?:[^"\\]|\\.)*"|[\w.$-]+)')


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Collects what native code writes to file descriptor 2 (MLIR's diagnostics)."""
    out: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to capture
        yield out
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.extend(tmp.read(4096).decode("utf-8", "replace").splitlines())


PROBE_TIMEOUT_S = 120.0
"""How long the child process that deserializes an exported module first may take."""

_PROBE = """
import sys
import jax
try:
    exported = jax.export.deserialize(bytearray(sys.stdin.buffer.read()))
except Exception as e:
    print("function", type(e).__name__)
    sys.exit(3)
try:
    exported.mlir_module()
except Exception as e:
    print("module", (str(e).splitlines() or [type(e).__name__])[0])
    sys.exit(3)
"""


def _probe(hlo: bytes) -> None:
    """Deserializes the section and its StableHLO module in a child process.

    JAX's deserializer is native code, and a crafted module can corrupt its heap (the
    fuzz campaign found one that aborts the process, even after the deserializer has
    returned an error; ``docs/security.md``) or keep it busy. So only a module that the
    child deserialized and exited cleanly after is deserialized in this process.

    Raises:
      FormatError: the section is not a serialized function, its module does not
        deserialize (the first error MLIR reported), the child was killed by a signal, or
        it ran past :data:`PROBE_TIMEOUT_S`.
      OSError: the child could not do its work for a reason of its own (say, the
        interpreter cannot import jax): not a fault of the file.
    """
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # it only deserializes: no accelerator
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE],
            input=hlo,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise codec.FormatError(
            f"hlo section: deserializing the StableHLO module took over {PROBE_TIMEOUT_S:g} s"
        ) from None
    out = r.stdout.decode("utf-8", "replace").strip()
    if r.returncode < 0:
        raise codec.FormatError(
            f"hlo section: the StableHLO module crashes JAX's deserializer (signal "
            f"{-r.returncode} in a child process); the file is damaged or crafted"
        )
    if r.returncode == 3 and out.startswith("function "):
        raise codec.FormatError(
            f"hlo section: not a serialized jax.export StableHLO function ({out[9:]})"
        )
    diag = r.stderr.decode("utf-8", "replace").splitlines()
    if r.returncode == 3:  # the probe's own status: the module did not deserialize
        first = next((line for line in diag if "error" in line), out.removeprefix("module "))
        raise codec.FormatError(
            f"hlo section: the StableHLO module does not deserialize ({first.strip()[:200]})"
        )
    if r.returncode != 0:  # the probe itself failed (no jax for this interpreter, ...)
        last = diag[-1].strip()[:200] if diag else "no output"
        raise OSError(
            f"exported model: the child process that deserializes the module first "
            f"({sys.executable} -c ...) exited with status {r.returncode}: {last}"
        )


def _module_text(hlo: bytes) -> tuple[jax.export.Exported, str]:
    """Deserializes the section and its StableHLO module once a child process has done so
    safely (:func:`_probe`); ``FormatError`` if either fails."""
    _probe(hlo)
    with _captured_stderr() as diag:
        try:
            exported = jax.export.deserialize(bytearray(hlo))
        except Exception as e:  # any failure here means a malformed section
            raise codec.FormatError(
                f"hlo section: not a serialized jax.export StableHLO function ({type(e).__name__})"
            ) from None
        try:
            text = exported.mlir_module()
        except Exception as e:  # the flatbuffer is fine, the module bytecode is not
            first = next((line for line in diag if "error" in line), str(e).splitlines()[0])
            raise codec.FormatError(
                f"hlo section: the StableHLO module does not deserialize ({first.strip()[:200]})"
            ) from None
    return exported, text


def _check_custom_calls(text: str) -> None:
    names = [m.strip('"') for m in _CUSTOM_CALL.findall(text)]
    if text.count("stablehlo.custom_call") != len(names):
        raise codec.FormatError("hlo section: a custom call whose target cannot be read")
    bad = sorted(set(names) - ALLOWED_CUSTOM_CALLS)
    if bad:
        raise codec.FormatError(
            f"hlo section: the StableHLO uses custom call {bad[0]!r}, not one of the allowed "
            f"{sorted(ALLOWED_CUSTOM_CALLS)}"
        )


def _check_signature(exported: jax.export.Exported, info: ExportInfo, leaves: list) -> None:
    avals = exported.in_avals
    if len(leaves) != info.num_weights or len(avals) != len(leaves) + 1:
        raise codec.FormatError(
            f"weights: {len(leaves)} arrays, the function takes {len(avals) - 1}"
        )
    for i, (leaf, aval) in enumerate(zip(leaves, avals, strict=False)):
        if leaf.shape != aval.shape or leaf.dtype != aval.dtype:
            raise codec.FormatError(
                f"weights: array {i} is {leaf.dtype}{list(leaf.shape)}, "
                f"the function expects {aval.dtype}{list(aval.shape)}"
            )

    def same(aval: Any, shape: tuple[int | None, ...], dtype: str) -> bool:
        dims = [d if isinstance(d, int) else None for d in aval.shape]
        return dims == list(shape) and np.dtype(aval.dtype).name == dtype

    outs = exported.out_avals
    if (
        not same(avals[-1], info.input_shape, info.input_dtype)
        or len(outs) != 1
        or not same(outs[0], info.output_shape, info.output_dtype)
    ):
        raise codec.FormatError(
            "info: the declared input/output shapes and dtypes differ from the function's"
        )


def _open(path: str | os.PathLike[str]) -> tuple[ExportInfo, list[jax.Array], Any, Any]:
    """Reads and checks an exported model: ``(info, weights, compiled or None, exported)``.

    Checks, in order: the framing and checksums; the info; the weights' codec file;
    that the StableHLO deserializes and uses only allowed custom calls; that the
    function's parameters match the weights and the info; and that it compiles for
    this backend (a fixed input shape is compiled once, here, and reused).
    """
    p = Path(path)
    if p.is_dir():
        raise codec.FormatError(f"{p}: is a directory, not an exported model")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise codec.FormatError(f"{p}: {p.stat().st_size} bytes is over the cap")
    try:
        info, hlo = parse(p.read_bytes())
        leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(codec.decode(info.weights))]
        exported, text = _module_text(hlo)
        _check_custom_calls(text)
        _check_signature(exported, info, leaves)
        backend = jax.default_backend()
        if backend not in exported.platforms:
            raise codec.FormatError(
                f"exported for platforms {list(exported.platforms)}, this JAX runs on {backend!r}"
            )
        fixed = None not in info.input_shape
        shape = tuple(1 if d is None else d for d in info.input_shape)
        x = jax.ShapeDtypeStruct(shape, info.input_dtype)
        specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
        with _captured_stderr() as diag:
            try:
                compiled = jax.jit(exported.call).lower(specs, x).compile()
            except Exception as e:  # the module is not what its signature says
                first = next((ln for ln in diag if "error" in ln), str(e).splitlines()[0])
                raise codec.FormatError(
                    f"hlo section: the StableHLO does not compile ({first.strip()[:200]})"
                ) from None
    except codec.FormatError as e:
        raise codec.FormatError(f"{p}: {e}") from None
    return info, leaves, compiled if fixed else None, exported


def check_exported(path: str | os.PathLike[str]) -> ExportInfo:
    """Validates an exported-model file exactly as :func:`load_exported` does.

    Args:
      path: the exported file.

    Returns:
      Its :class:`ExportInfo` (the weights still compressed).

    Raises:
      FormatError: anything :func:`load_exported` refuses.
      FileNotFoundError: ``path`` does not exist.

    Example:
      >>> import tempfile, pathlib, jax.numpy as jnp
      >>> from jaxzip.deploy import export
      >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jzx"
      >>> _ = export(lambda params, x, *, train, key: x + params["b"], {"b": jnp.ones(2)},
      ...            jnp.ones((1, 2)), p)
      >>> check_exported(p).output_shape
      (1, 2)
    """
    return _open(path)[0]


def load_exported(path: str | os.PathLike[str]) -> Callable[[ArrayLike], jax.Array]:
    """Loads a file written by :func:`export`; returns ``f(x) -> logits``.

    Everything is validated before use: framing, checksums, the info (JSON with
    finite numbers only), the weights' codec file, that the StableHLO module
    deserializes and calls no custom call outside :data:`ALLOWED_CUSTOM_CALLS`,
    that the function's parameters match the weights and the info, and that it
    compiles. No model source code is needed: the function is the serialized
    StableHLO. That module is deserialized by JAX's native code, which a crafted
    module can crash (heap corruption; ``docs/security.md``, "Fuzzing"), so it is
    deserialized in a child process first (about a second): a crash there is a
    ``FormatError`` here. Load files only from sources you trust, as you would run
    their code: a module can be malformed in ways no check sees.

    Args:
      path: the exported file.

    Returns:
      A function of one input batch (the exported shape and dtype); it raises
      ``ValueError`` for an input of another shape or dtype.

    Raises:
      FormatError: the file is malformed, or ``path`` is a directory or too large.
      FileNotFoundError: ``path`` does not exist.

    Example:
      >>> load_exported("missing.jzx")
      Traceback (most recent call last):
      ...
      FileNotFoundError: [Errno 2] No such file or directory: 'missing.jzx'
    """
    info, leaves, compiled, exported = _open(path)
    want = info.input_shape
    run = compiled if compiled is not None else jax.jit(exported.call)

    def call(x: ArrayLike) -> jax.Array:
        x = jnp.asarray(x)
        fits = len(x.shape) == len(want) and all(
            w is None or w == s for w, s in zip(want, x.shape, strict=True)
        )
        if not fits or x.dtype.name != info.input_dtype:
            shown = ["N" if w is None else w for w in want]
            raise ValueError(
                f"x: expected shape {shown} and dtype {info.input_dtype}, "
                f"got {list(x.shape)} {x.dtype.name}"
            )
        return run(leaves, x)

    return call
