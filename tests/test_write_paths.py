"""Every file jaxzip writes goes through jaxzip/_io.py; nothing loads pickles or evaluates code.

An AST scan of ``jaxzip/**/*.py`` (docstrings are strings, so their examples are not scanned).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jaxzip"
IO_MODULE = PACKAGE / "_io.py"
WRITE_MODES = set("wax+")
# np.save*(target) / fig.savefig(target) are fine when target is an atomic_open file or a BytesIO
ARRAY_WRITERS = {"save", "savez", "savez_compressed", "savetxt"}
FS_MODULES = {"os", "shutil"}
FS_CALLS = {
    "rename",
    "replace",
    "renames",
    "link",
    "symlink",
    "truncate",
    "copy",
    "copy2",
    "copyfile",
    "copytree",
    "move",
    "copyfileobj",
    "open",
    "fdopen",
    "mkstemp",
}
EVERYWHERE = {"eval", "exec", "compile", "__import__"}
BANNED_MODULES = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}


def _const_modes(call: ast.Call) -> list[str]:
    args = [*call.args, *(kw.value for kw in call.keywords if kw.arg == "mode")]
    return [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def _safe_sinks(tree: ast.AST) -> set[str]:
    """Names bound by ``with atomic_open(...) as name`` or ``name = io.BytesIO()``."""
    safe = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            call = node.context_expr
            if isinstance(call, ast.Call) and _name(call.func) == "atomic_open":
                safe.add(node.optional_vars.id)
        call = node.value if isinstance(node, ast.Assign) else None
        if isinstance(call, ast.Call) and _name(call.func) == "BytesIO":
            safe.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return safe


def _name(func: ast.expr) -> str:
    return (
        func.id
        if isinstance(func, ast.Name)
        else func.attr
        if isinstance(func, ast.Attribute)
        else ""
    )


def _owner(func: ast.expr) -> str:
    return (
        func.value.id
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
        else ""
    )


def violations(path: Path, source: str) -> list[str]:
    """Direct file writes (outside _io.py), pickle, eval/exec and allow_pickle=True in a module."""
    out, tree, is_io = [], ast.parse(source), path == IO_MODULE
    rel, safe = path.relative_to(PACKAGE.parent), _safe_sinks(tree)
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if any(n.split(".")[0] in BANNED_MODULES for n in names):
                out.append(f"{where}: imports {names}")
        imported = {a.name for a in node.names} if isinstance(node, ast.ImportFrom) else set()
        if imported & FS_CALLS and node.module in FS_MODULES and not is_io:
            out.append(f"{where}: from {node.module} import {[a.name for a in node.names]}")
        value = node.value if isinstance(node, ast.keyword) else None
        if getattr(node, "arg", None) == "allow_pickle" and not (
            isinstance(value, ast.Constant) and value.value is False
        ):
            out.append(f"{where}: allow_pickle is not the constant False")
        if not isinstance(node, ast.Call):
            continue
        func, name, owner = node.func, _name(node.func), _owner(node.func)
        if name in EVERYWHERE and (isinstance(func, ast.Name) or owner == "builtins"):
            out.append(f"{where}: calls {name}()")
        if is_io:
            continue
        first = node.args[0] if node.args else None
        to_safe = isinstance(first, ast.Name) and first.id in safe
        if isinstance(func, ast.Name) and name == "open":
            kw = [k.value for k in node.keywords if k.arg == "mode"]
            mode = node.args[1] if len(node.args) > 1 else kw[0] if kw else ast.Constant("r")
            if not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
                out.append(f"{where}: open() with a non-constant mode")
            elif WRITE_MODES & set(mode.value):
                out.append(f"{where}: open(..., {mode.value!r})")
        elif owner in FS_MODULES and name in FS_CALLS:
            out.append(f"{where}: {owner}.{name}(...)")
        elif isinstance(func, ast.Attribute) and name == "open":
            if any(WRITE_MODES & set(m) for m in _const_modes(node)):
                out.append(f"{where}: .open(..., write mode)")
        elif name in ("write_text", "write_bytes", "tofile", "symlink_to", "hardlink_to"):
            out.append(f"{where}: .{name}(...)")
        elif name in ARRAY_WRITERS and owner in ("np", "numpy", "jnp") and not to_safe:
            out.append(f"{where}: {owner}.{name}(...) to a path")
        elif name == "savefig" and not to_safe:
            out.append(f"{where}: .savefig(...) to a path")
    return out


def test_no_direct_writes_pickle_or_eval_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(path, path.read_text(encoding="utf-8"))
    assert found == [], "\n".join(found)


def test_the_scan_catches_each_kind_of_violation():
    src = """
import pickle
from shutil import copy
import numpy as np
open(p, "w"); open(p, mode="ab"); open(p, "r+"); Path(p).write_text("x"); p.write_bytes(b"")
np.save(p, x); np.savez(p, a=x); np.savez_compressed(p); shutil.copy(a, b); shutil.move(a, b)
os.rename(a, b); os.replace(a, b); eval("1"); exec("x"); np.load(p, allow_pickle=True)
fig.savefig(p); os.open(p, os.O_WRONLY); open(p, m); path.open("w")
"""
    found = violations(PACKAGE / "fake.py", src)
    for needle in (
        "imports ['pickle']",
        "from shutil import ['copy']",
        "open(..., 'w')",
        "open(..., 'ab')",
        "open(..., 'r+')",
        ".write_text",
        ".write_bytes",
        "np.save(",
        "np.savez(",
        "np.savez_compressed",
        "shutil.copy(",
        "shutil.move(",
        "os.rename(",
        "os.replace(",
        "eval()",
        "exec()",
        "allow_pickle",
        ".savefig",
        "os.open",
        "non-constant",
        ".open(..., write mode)",
    ):
        assert any(needle in f for f in found), (needle, found)
    fine = """
open(p); open(p, "rb"); np.load(p, allow_pickle=False); re.compile("x"); s.replace("a", "b")
z.open(name); codec.save(p, t); buf = io.BytesIO(); fig.savefig(buf); x.copy()
with atomic_open(p, "wb") as f:
    np.savez(f, a=x)
"""
    assert violations(PACKAGE / "fake.py", fine) == []
    # the writes themselves are allowed in _io.py, eval is not
    assert violations(IO_MODULE, 'os.replace(a, b)\nopen(p, "wb")\n') == []
    assert violations(IO_MODULE, "eval('1')\n") != []
