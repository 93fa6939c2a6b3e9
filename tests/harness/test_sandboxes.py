"""The sandbox interface (issue 29 item 2): one implementation per kind behind :class:`Sandbox`, picked once by
:func:`sandbox_for`; the process runner knows nothing of sandboxes, and no module of either imports inside a function
or in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.sandboxes.base import Sandbox, SandboxKind
from harness.sandboxes.bwrap import BwrapSandbox
from harness.sandboxes.docker import ContainerSandbox
from harness.sandboxes.factory import sandbox_for
from harness.sandboxes.plain import PlainSandbox

ROOT = Path(__file__).resolve().parents[2]
MODULES = [ROOT / "harness" / "process.py", ROOT / "harness" / "records.py",
           *sorted((ROOT / "harness" / "sandboxes").glob("*.py"))]


def test_each_kind_has_one_implementation_picked_by_kind_or_name() -> None:
    assert isinstance(sandbox_for(SandboxKind.NONE), PlainSandbox)
    for asked in (SandboxKind.AUTO, "bwrap"):
        chosen = sandbox_for(asked)
        assert isinstance(chosen, BwrapSandbox) and chosen.kind is SandboxKind.BWRAP
    docker, gvisor = sandbox_for(SandboxKind.DOCKER), sandbox_for("gvisor")
    assert isinstance(docker, ContainerSandbox) and isinstance(gvisor, ContainerSandbox)
    assert (docker.kind, docker.runtime, gvisor.kind, gvisor.runtime) == (SandboxKind.DOCKER, "runc",
                                                                          SandboxKind.GVISOR, "runsc")
    assert all(isinstance(sandbox_for(kind), Sandbox) for kind in SandboxKind)
    with pytest.raises(ValueError, match="not a container sandbox"):
        ContainerSandbox(SandboxKind.NONE)


def test_an_unknown_kind_is_one_line_naming_the_closest_kind() -> None:
    with pytest.raises(ValueError) as info:
        sandbox_for("bwarp")
    assert str(info.value) == ("unknown sandbox 'bwarp' — did you mean 'bwrap'? "
                               "(one of auto, bwrap, none, docker, gvisor)")
    with pytest.raises(ValueError) as info:
        sandbox_for("kvm")
    assert str(info.value) == "unknown sandbox 'kvm' (one of auto, bwrap, none, docker, gvisor)"


def _harness_imports(path: Path) -> tuple[set[str], list[str]]:
    """(harness modules ``path`` imports, "line: module" of each import below module level)."""
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    nested: list[str] = []
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        names = [name for name in names if name.startswith("harness")]
        imported.update(names)
        if names and id(node) not in top:
            nested.append(f"{node.lineno}: {names[0]}")
    return imported, nested


def test_the_process_runner_and_the_sandboxes_import_at_module_level_without_a_cycle() -> None:
    graph = {}
    for path in MODULES:
        imported, nested = _harness_imports(path)
        assert not nested, f"{path.relative_to(ROOT)} imports inside a function: {nested}"
        graph[".".join(path.relative_to(ROOT).with_suffix("").parts)] = imported
    assert not {name for name in graph["harness.process"] if name.startswith("harness.sandboxes")}
    assert graph["harness.sandboxes.__init__"] == set()  # importing one kind never imports the others

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(name == goal or (name in graph and name not in seen and reaches(name, goal, seen | {name}))
                   for name in graph.get(start, ()))
    assert not [name for name in graph if reaches(name, name, set())]
