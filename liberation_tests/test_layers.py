"""The layer rules, checked on the source: who may import whom.

- ``orchestration`` (Dagster) sits on ``core``; ``core`` never imports dagster, ``orchestration``, the CLI or
  ``stack`` (the local test stack).
- ``core.readers`` read sources; they never import ``publish`` (Kafka), ``engine``, ``outbox`` or ``verify``.
- ``core.publish`` writes Kafka; it never imports readers, contracts, engine, outbox or verify.
- No import cycle between core modules at import time (module-level imports, ``TYPE_CHECKING`` excluded).

``KNOWN`` lists what breaks a rule today and is being fixed elsewhere: an entry that no longer breaks it fails
the test, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import liberation_assets

ROOT = Path(liberation_assets.__file__).parent
PACKAGE = "liberation_assets"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "liberation_assets.core": (
        "dagster",
        "liberation_assets.orchestration",
        "liberation_assets.cli",
        "liberation_assets.stack",
    ),
    "liberation_assets.core.readers": (
        "liberation_assets.core.publish",
        "liberation_assets.core.engine",
        "liberation_assets.core.outbox",
        "liberation_assets.core.verify",
    ),
    "liberation_assets.core.publish": (
        "liberation_assets.core.readers",
        "liberation_assets.core.contract",
        "liberation_assets.core.engine",
        "liberation_assets.core.outbox",
        "liberation_assets.core.verify",
    ),
}
KNOWN: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, *, top_level_only: bool) -> set[str]:
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                if not (top_level_only and _is_type_checking(node)):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, (ast.Try, ast.With)):
                visit(node.body)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif not top_level_only:
                visit([child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)])

    visit(tree.body)
    return found


def _sources() -> dict[str, ast.Module]:
    return {_module(path): ast.parse(path.read_text()) for path in ROOT.rglob("*.py")}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_layers_import_only_downwards() -> None:
    broken = set()
    for module, tree in _sources().items():
        for imported in _imports(tree, top_level_only=False):
            for layer, forbidden in FORBIDDEN.items():
                if _within(module, layer) and any(_within(imported, f) for f in forbidden):
                    broken.add((module, imported))
    known = {(m, i) for m, i in broken if any(m == km and _within(i, ki) for km, ki in KNOWN)}
    assert broken - known == set()
    assert {k for k in KNOWN if not any(m == k[0] and _within(i, k[1]) for m, i in broken)} == set(), (
        "fixed: remove it from KNOWN"
    )


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycle_in_the_core() -> None:
    sources = _sources()
    modules = set(sources)
    graph: dict[str, set[str]] = {}
    for module, tree in sources.items():
        if not _within(module, f"{PACKAGE}.core"):
            continue
        targets = {name if name in modules else name.rsplit(".", 1)[0] for name in _imports(tree, top_level_only=True)}
        graph[module] = {
            t
            for t in targets
            if t in modules and t != module and _within(t, f"{PACKAGE}.core") and not module.startswith(t + ".")
        }  # a package's own __init__ is no cycle
    assert set(_cycles(graph)) - KNOWN_CYCLES == set()


def _package(module: str) -> str:
    """``liberation_assets.core.<package or module>``: the unit the package rule is about."""
    return ".".join(module.split(".")[:3])


def test_no_cycle_between_core_packages() -> None:
    """Packages import one way only, counting every import: lazy ones in functions and ``TYPE_CHECKING`` ones too."""
    graph: dict[str, set[str]] = {}
    for module, tree in _sources().items():
        if not _within(module, f"{PACKAGE}.core."):
            continue
        source = _package(module)
        for imported in _imports(tree, top_level_only=False):
            if _within(imported, f"{PACKAGE}.core.") and _package(imported) != source:
                graph.setdefault(source, set()).add(_package(imported))
    assert _cycles(graph) == []
