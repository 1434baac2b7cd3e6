"""refprune is layered one way: no module imports a module of a later layer.

The order below is the design (README, "Module map"); this test reads every
module's source (AST, nothing is imported) and checks each import of a refprune
module against it, module-level and function-level alike. A module may import
only modules of earlier layers. Function-level imports of refprune modules are
allowed only at the very top (the command line, the sweep), where nothing
imports the module back, so no import is deferred to dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "refprune"

LAYERS: list[tuple[str, ...]] = [
    ("_checks", "rng", "activations"),
    ("autograd",),
    ("mlp",),
    ("train",),
    ("curvature",),
    ("scores",),
    ("masks",),
    ("rescoring",),  # OBS and SynFlow pruning
    ("data", "metrics", "schedules", "sparse_approx"),
    ("lottery",),
    ("theory",),
    ("sparse.pool",),
    ("sparse.products",),
    ("sparse.plan",),
    ("sparse.forward",),
    ("sparse.train",),
    ("sparse",),
    ("",),  # refprune/__init__.py
    ("sweep.config",),
    ("sweep.job",),
    ("sweep.store",),
    ("sweep.runner",),
    ("sweep.report",),
    ("sweep.cli",),
    ("sweep",),
    ("__main__",),
]
LAYER = {("refprune." + m).rstrip("."): i for i, layer in enumerate(LAYERS) for m in layer}
#: modules whose function-level imports of refprune are start-up deferrals, not cycle dodges
DEFERRING = {"refprune.__main__"} | {m for m in LAYER if m.startswith("refprune.sweep")}


def module_name(path: Path) -> str:
    parts = ["refprune", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def refprune_imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported refprune module, line, inside a function) for every import in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    base = f"{base}.{child.module}" if child.module else base
                else:
                    base = child.module or ""
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in MODULES else base, child.lineno, inner))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return [(m, line, inner) for m, line, inner in out if m.split(".")[0] == "refprune"]


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LAYER)) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_to_earlier_layers_only(name):
    bad = [
        f"line {line}: {mod} (layer {LAYER.get(mod)}) from {name} (layer {LAYER[name]})"
        for mod, line, _ in refprune_imports(name, MODULES[name])
        if mod != name and LAYER.get(mod, len(LAYERS)) >= LAYER[name]
    ]
    assert bad == []


@pytest.mark.parametrize("name", sorted(set(MODULES) - DEFERRING))
def test_no_function_level_imports_of_refprune(name):
    found = refprune_imports(name, MODULES[name])
    assert [(mod, line) for mod, line, inner in found if inner] == []


def test_the_walk_sees_relative_and_nested_imports():
    found = refprune_imports("refprune.sparse.forward", MODULES["refprune.sparse.forward"])
    assert ("refprune.sparse.plan",) == tuple({m for m, _, _ in found if m.endswith(".plan")})
    assert "refprune.mlp" in {m for m, _, _ in found}
    deferred = refprune_imports("refprune.__main__", MODULES["refprune.__main__"])
    assert any(inner and m == "refprune.lottery" for m, _, inner in deferred)
