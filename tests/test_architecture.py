"""The import rules of docs/architecture.md, checked on the source (no module is imported).

1. Layers: a module of jaxzip imports jaxzip only from its own unit (subpackage
   or top-level module) or from a unit of a lower layer (:data:`LAYERS`), so the
   units form no cycle and the library never reaches up into the orchestration.
2. The experiment scripts use the public API only: no ``jaxzip._x`` or
   ``jaxzip.x._y`` import (the codec fuzzers test the internals on purpose).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxzip"

LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "_types _errors",  # type aliases, exceptions
        "_keys _io paths",  # PRNG key checks; atomic writes; where=, the one selection mechanism
        "io _finite layout data models",  # public io; NaN checks; kernel layouts; data; models
        "calib train",  # calibration statistics; the train step, loop and params files
        "quant",  # QArray, PTQ, QAT, k-means, GPTQ/AWQ/SmoothQuant/W8A8
        "prune codec",  # masks, schedules, SparseGPT/Wanda; the compressed file
        "distill deploy",  # distillation losses and steps; jax.export files
        "auto",  # sensitivity, accuracy-bounded search, students
        "config",  # TOML configs -> validated sections; the one name -> object table
        "pipeline",  # the run of steps over a typed state, its cache; jaxzip auto's run
        "_cli_auto _cli_deploy",  # the subcommands
        "cli",  # the jaxzip command
        "__main__",  # python -m jaxzip
    )
)
"""Lowest first. ``jaxzip/__init__.py`` (the package root, importing every unit) is exempt."""

LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
FUZZERS = ("fuzz_",)
"""Scripts allowed to import private modules: they attack the decoders' internals."""


def unit_of(path: Path, package: Path = PACKAGE) -> str:
    """``jaxzip/prune/_masks.py`` -> ``prune``; ``jaxzip/_io.py`` -> ``_io``."""
    parts = path.relative_to(package).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def jaxzip_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted module)`` of every absolute import of jaxzip in ``path``, including
    those under ``if TYPE_CHECKING:`` and inside functions; ``from jaxzip import x`` gives
    ``jaxzip.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("jaxzip")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "jaxzip":
                found += [(node.lineno, f"jaxzip.{a.name}") for a in node.names]
            elif node.module.startswith("jaxzip."):
                found.append((node.lineno, node.module))
    return found


def layer_violations(path: Path, package: Path = PACKAGE) -> list[str]:
    """Each import of ``path`` that breaks the layer rule, as ``file:line: ...``."""
    source = unit_of(path, package)
    out = []
    for line, module in jaxzip_imports(path):
        target = module.split(".")[1] if "." in module else "__init__"
        if target in (source, "__version__"):
            continue
        where = f"{path.relative_to(package.parent)}:{line}"
        if target not in LAYER_OF:
            out.append(f"{where}: {module}: unit {target!r} is in no layer (add it to LAYERS)")
        elif LAYER_OF[target] >= LAYER_OF[source]:
            out.append(
                f"{where}: {source} (layer {LAYER_OF[source]}) imports {module} "
                f"(layer {LAYER_OF[target]}): only lower layers may be imported"
            )
    return out


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in package_files()}
    assert units - set(LAYER_OF) == set(), "units missing from LAYERS"


MAX_LINES = 400
"""STYLE.md 10: small files, one concept each; split past 400 lines."""


def test_no_module_is_longer_than_400_lines():
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in package_files()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    ]
    assert long == [], "split these modules:\n" + "\n".join(long)


def test_the_package_imports_only_downwards():
    violations = [v for p in package_files() for v in layer_violations(p)]
    assert violations == [], "\n".join(violations)


def test_layer_rule_by_hand(tmp_path):
    # quant importing distill and prune (higher layers, one inside a function) breaks the
    # rule; paths (lower), its own modules and the version string do not
    module = tmp_path / "jaxzip" / "quant" / "_x.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from jaxzip import __version__, paths\n"
        "from jaxzip.quant._spec import QuantSpec\n"
        "import jaxzip.distill\n"
        "def f():\n"
        "    from jaxzip.prune import apply_mask\n"
    )
    found = layer_violations(module, tmp_path / "jaxzip")
    assert found == [
        "jaxzip/quant/_x.py:3: quant (layer 4) imports jaxzip.distill (layer 6): "
        "only lower layers may be imported",
        "jaxzip/quant/_x.py:5: quant (layer 4) imports jaxzip.prune (layer 5): "
        "only lower layers may be imported",
    ]
    module.write_text("import jaxzip.newthing\n")
    assert layer_violations(module, tmp_path / "jaxzip") == [
        "jaxzip/quant/_x.py:1: jaxzip.newthing: unit 'newthing' is in no layer (add it to LAYERS)"
    ]


def experiment_scripts() -> list[Path]:
    scripts = sorted((ROOT / "experiments").rglob("*.py"))
    return [p for p in scripts if not p.name.startswith(FUZZERS)]


@pytest.mark.parametrize("script", experiment_scripts(), ids=lambda p: p.name)
def test_experiments_use_the_public_api_only(script):
    rel = str(script.relative_to(ROOT))
    private = {
        module
        for _, module in jaxzip_imports(script)
        if any(part.startswith("_") for part in module.split(".")[1:])
    }
    assert private == set(), f"{rel} imports private modules"
