"""The import graph of the bundle's ``scripts`` package, read from the source with ``ast`` (nothing is imported).

Every import statement counts, wherever it stands: at module level, inside a function (a lazy import) or under
``if TYPE_CHECKING:``. A reader meets all of them, and a cycle through a lazy import is still a cycle in the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = "scripts"


def module_names(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file under ``package_dir``; a package is its ``__init__``."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """Modules of ``modules`` one import statement imports (``from a import b``: ``a.b`` if a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:  # relative: resolve against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    found = set()
    for alias in node.names:
        if f"{source}.{alias.name}" in modules:
            found.add(f"{source}.{alias.name}")
        elif source in modules:
            found.add(source)
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module under ``package_dir`` (``bundle/scripts``)."""
    names = module_names(package_dir)
    known = set(names)
    graph = {}
    for module, path in names.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            edges |= _imported(node, module, is_package, known)
        graph[module] = edges - {module}
    return graph


def subpackage(module: str) -> str:
    """``scripts.data.loading`` -> ``data``; the top-level ``scripts`` package -> ``scripts``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def subpackage_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed onto subpackages, without self-edges."""
    collapsed: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = collapsed.setdefault(subpackage(module), set())
        edges |= {subpackage(t) for t in targets} - {subpackage(module)}
    return collapsed


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of a directed graph, or None when it is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None
