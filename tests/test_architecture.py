"""The house rules, read off the source with `ast` (nothing is imported or run).

- Imports point one way: no cycle between modules of `src/flux2_int8`, lazy imports included,
  and no import from a floor (a top-level module or folder) to one on a higher rung of `FLOORS`
  or beside it on the same rung, so two floors never lean on each other even without a cycle
  of modules (nano -> quantization while quantization -> nano was one).
- `formats/` (header-only files) imports nothing above it, and `int8/` and `planning/` nothing above `formats/`.
- The product never imports the test kit: only `testing/` itself imports `flux2_int8.testing`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "flux2_int8"
# What each low floor may import from the package (besides itself).
ALLOWED_BELOW = {
    "formats": {"errors", "variants", "lazy", "version", "textfiles"},
    "int8": {"errors", "variants", "lazy", "version", "textfiles", "formats"},
    "planning": {"errors", "variants", "lazy", "version", "textfiles", "formats"},  # header-only: `flux2-int8 plan` imports no torch
}

# The floors from the ground up; a floor imports only floors on lower rungs. Every floor of the
# package must be placed here, so a new one is placed on purpose.
FLOORS: list[set[str]] = [
    {"errors", "version", "lazy", "charts", "signals"},
    {"variants", "textfiles", "jsonlines", "limits", "outputs", "provenance"},
    {"formats", "threads"},
    {"int8", "planning", "tiny", "channels"},
    {"lora", "nano"},
    {"loading"},
    {"generate"},
    {"quantization", "evaluate"},
    {"bench", "scale_out", "demo"},
    {"serve", "testing", ""},  # "": the package's face, flux2_int8/__init__.py
    {"commands"},
    {"cli"},
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in (SOURCE / PACKAGE).rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every package module `name` imports, at any depth in the file (function-level too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.module, node.level)
            for alias in node.names:
                # `from . import triton_w8a8` imports a module; `from .linear import Int8Linear` a name.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {target for target in found if target in modules and target != name}


def _resolve(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_is_read(graph):
    assert "flux2_int8.int8.backends" in graph["flux2_int8.int8.linear"]
    assert "flux2_int8.tiny.pipeline" in graph["flux2_int8.tiny"]


def test_no_import_cycle(graph):
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target] if target in trail else [module, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("floor", sorted(ALLOWED_BELOW))
def test_low_floors_import_nothing_above_them(graph, floor):
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if _floor(module) == floor
        for target in targets
        if _floor(target) not in ALLOWED_BELOW[floor] | {floor}
    )
    assert not upward, upward


def test_every_floor_is_placed(graph):
    placed = set().union(*FLOORS)
    assert sum(len(rung) for rung in FLOORS) == len(placed), "a floor is on two rungs"
    assert {_floor(module) for module in graph} <= placed, sorted({_floor(m) for m in graph} - placed)


def test_no_floor_imports_one_beside_or_above_it(graph):
    rung = {floor: index for index, floors in enumerate(FLOORS) for floor in floors}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if _floor(target) != _floor(module) and rung.get(_floor(target), len(FLOORS)) >= rung.get(_floor(module), -1)
    )
    assert not upward, upward


def test_only_the_test_kit_imports_the_test_kit(graph):
    offenders = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if _floor(module) != "testing"
        for target in targets
        if _floor(target) == "testing"
    )
    assert not offenders, offenders
