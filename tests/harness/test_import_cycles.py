"""The referee's modules import each other without a cycle, and none imports another's private name.

Every module of ``harness/`` (``harness/html_report/`` included) is parsed with :mod:`ast`; every import counts,
wherever it stands: at module level, inside a function, under ``if TYPE_CHECKING:``. ``from harness.x import y``
depends on ``harness.x.y`` when that is a module, else on ``harness.x``; importing ``harness.a.b`` also runs the
package ``harness.a`` (unless the importer is inside it).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

def module_names(root: Path, package: str = "harness") -> dict[str, Path]:
    """Dotted name → file of every module of ``package`` under ``root`` (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, source: str, modules: set[str], *, is_package: bool = False) -> tuple[set[str], list[str]]:
    """The modules of ``modules`` that module ``name`` imports, and the private names it imports from them.

    Args:
        name: The importing module's dotted name (a package's name for its ``__init__.py``).
        source: Its source text.
        modules: Every module of the graph.
        is_package: ``name`` is a package (its ``__init__.py``): relative imports start from it.

    Returns:
        (imported modules, ``"module.name"`` of each private name it imports from another module).
    """
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    private: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                qualified = f"{module}.{alias.name}"
                targets.add(qualified if qualified in modules else module)
                if _private(alias.name) and module in modules:
                    private.append(qualified)
    imported = set()
    for target in targets:
        parts = target.split(".")
        for end in range(1, len(parts) + 1):  # importing a.b.c runs a.b (and a) first
            ancestor = ".".join(parts[:end])
            own_package = name == ancestor or name.startswith(ancestor + ".")
            if ancestor in modules and ancestor != name and (end == len(parts) or not own_package):
                imported.add(ancestor)
    return imported, private


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Module → the referee modules it imports; and every private name imported across modules (``"in: name"``)."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {}
    private: list[str] = []
    for name, path in modules.items():
        graph[name], names = imports_of(name, path.read_text(), set(modules), is_package=path.name == "__init__.py")
        private += [f"{name}: {imported}" for imported in names]
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each group of mutually importing modules (strongly connected
    components with more than one module, or a module importing itself), in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph has a few dozen modules
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in sorted(groups, key=sorted)]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the first module of ``group`` (breadth-first inside the group)."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for other in sorted(graph[node] & group):
                if other == start:
                    return paths[node] + [start]
                if other not in paths:
                    paths[other] = paths[node] + [other]
                    following.append(other)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


# -- the checker itself -------------------------------------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / "harness" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_every_kind_of_import_counts(tmp_path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "def f():\n    from harness import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import harness.c\n",
        "c.py": "from .sub.d import thing\n",
        "sub/__init__.py": "from harness.sub import e\n",
        "sub/d.py": "from .. import a\n",
        "sub/e.py": "from . import d\nfrom ..c import _hidden, __version__\n",
    })
    graph, private = import_graph(root)
    assert graph["harness.a"] == {"harness.b"}
    assert graph["harness.b"] == {"harness.c"}
    assert graph["harness.c"] == {"harness.sub", "harness.sub.d"}  # the package runs first
    assert graph["harness.sub"] == {"harness.sub.e"}
    assert graph["harness.sub.d"] == {"harness.a"}
    assert graph["harness.sub.e"] == {"harness.sub.d", "harness.c"}  # not its own package
    assert private == ["harness.sub.e: harness.c._hidden"]
    assert cycles(graph) == [["harness.a", "harness.b", "harness.c", "harness.sub.d", "harness.a"]]


def test_a_graph_without_cycles_has_none():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"a"}}) == [["a", "a"]]


# -- the referee ------------------------------------------------------------------------------------------
def test_referee_modules_import_each_other_without_a_cycle():
    graph, _ = import_graph(ROOT)
    assert {"harness.cli", "harness.execution", "harness.html_report.build", "harness.errors"} <= set(graph)
    found = cycles(graph)
    assert not found, "import cycles among referee modules: " + "; ".join(" -> ".join(c) for c in found)


def test_no_private_name_is_imported_across_referee_modules():
    _, private = import_graph(ROOT)
    assert not private, f"private names imported across modules: {private}"


def test_errors_is_a_leaf():
    graph, _ = import_graph(ROOT)
    assert graph["harness.errors"] == set()
