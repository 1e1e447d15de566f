"""The package's shape: no import circle in python/mullama, and no module (tests included) reads
another module's underscored names. Both are read from the source with `ast`, so a circle hidden
in a function body or behind TYPE_CHECKING counts as much as a module-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from needs import REPO_ROOT

PYTHON = REPO_ROOT / "python"
PACKAGE = PYTHON / "mullama"
TESTS = REPO_ROOT / "tests"

ALLOWED_PRIVATE = {
    "_core",  # the Rust extension: a module with a checked stub (_core.pyi), not a reach-in
    "_exit",  # os._exit
    "_register_atexit",  # threading's pre-finalization hook (as concurrent.futures uses it)
}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PYTHON).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" for alias in node.names] + [source]


def _import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line}, every import statement wherever it is."""
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _imported(module, is_package, node):
                target = known(name)
                # A submodule importing its own package is not a circle: the package's
                # __init__ has always run first.
                if target and target != module and not module.startswith(target + "."):
                    graph.setdefault(module, {}).setdefault(target, node.lineno)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_the_package() -> None:
    graph = _import_graph()
    described = []
    for component in _cycles(graph):
        edges = [
            f"{a} -> {b} ({_modules()[a][0].relative_to(REPO_ROOT)}:{line})"
            for a in component
            for b, line in sorted(graph.get(a, {}).items())
            if b in component
        ]
        described.append("\n  ".join(edges))
    assert not described, "import circles:\n  " + "\n\n  ".join(described)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_private_names(tree: ast.Module) -> set[str]:
    """The underscored names a file defines itself: functions, classes, attributes it assigns
    (self._x = ..., obj._x = ...) and names it binds."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if _private(name)}


def _reach_ins(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = _own_private_names(tree) | ALLOWED_PRIVATE
    where = path.relative_to(REPO_ROOT)
    internals: set[int] = set()  # lines of tests whose name says they test internals
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and "internal" in node.name:
            internals.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    found = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in internals:
            continue
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            found += [
                f"{where}:{node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if _private(alias.name) and alias.name not in ALLOWED_PRIVATE
            ]
    return found


@pytest.mark.parametrize("folder", [PACKAGE, TESTS], ids=["package", "tests"])
def test_no_module_reads_another_modules_underscored_names(folder: Path) -> None:
    found = [hit for path in sorted(folder.rglob("*.py")) for hit in _reach_ins(path)]
    assert not found, "underscored names read from another module:\n" + "\n".join(found)
