"""The package graph is the one ``docs/architecture.md`` draws: every import of a synth package (lazy imports in
functions included) is one the table allows, and the table only allows imports from lower layers, so no cycle
between packages can form. Module-level cycles inside a package are checked too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from synth.paths import REPO_ROOT
from tests.fixtures.imports import imports_by_file, runtime_imports

PACKAGE = REPO_ROOT / "synth"
ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\| `(?P<pkg>[\w_]+)` \| (?P<layer>\d+) \|(?P<deps>[^|]*)\|\s*$")


def allowed() -> dict[str, tuple[int, set[str]]]:
    table = {}
    for line in ARCHITECTURE.read_text().splitlines():
        if m := ROW.match(line):
            deps = {d.strip() for d in m["deps"].split(",") if d.strip()}
            table[m["pkg"]] = (int(m["layer"]), deps)
    return table


def package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def actual() -> dict[str, dict[str, str]]:
    """package -> {imported package: one module that imports it}."""
    graph: dict[str, dict[str, str]] = {}
    for path in sorted(imports_by_file(PACKAGE)):
        if path == PACKAGE / "__init__.py":
            continue
        pkg = package_of(path)
        graph.setdefault(pkg, {})
        for entry in imports_by_file(PACKAGE)[path]:
            for name in entry["modules"]:
                if name.startswith("synth.") and (dep := name.split(".")[1]) != pkg:
                    graph[pkg].setdefault(dep, str(path.relative_to(REPO_ROOT)))
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_every_package_is_drawn() -> None:
    missing = sorted(set(actual()) - set(allowed()))
    assert not missing, f"packages missing from docs/architecture.md's table: {missing}"


def test_imports_follow_the_drawn_layers() -> None:
    table = allowed()
    wrong = [
        f"{pkg} imports {dep} ({where})"
        for pkg, deps in actual().items()
        for dep, where in deps.items()
        if dep not in table.get(pkg, (0, set()))[1]
    ]
    assert not wrong, "imports docs/architecture.md does not allow:\n" + "\n".join(wrong)


def test_the_drawing_only_points_down() -> None:
    table = allowed()
    upward = [
        f"{pkg} (layer {layer}) may import {dep} (layer {table[dep][0]})"
        for pkg, (layer, deps) in table.items()
        for dep in deps
        if dep not in table or table[dep][0] >= layer
    ]
    assert not upward, "\n".join(upward)
    assert cycle({p: d for p, (_, d) in table.items()}) is None


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def test_no_module_cycles() -> None:
    mods = _modules()
    inits = {m for m, p in mods.items() if p.name == "__init__.py"}  # re-exports, not dependencies
    graph: dict[str, set[str]] = {m: set() for m in mods if m not in inits}
    for mod in graph:
        for entry in imports_by_file(PACKAGE)[mods[mod]]:
            names = entry["modules"] + entry["members"]
            graph[mod].update(n for n in names if n in graph and n != mod)
    found = cycle(graph)
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_the_checkers_see_what_they_must() -> None:
    assert cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    tree = ast.parse("def f():\n    from synth.x import y\nif TYPE_CHECKING:\n    from synth.z import w\n")
    assert [n.module for n in runtime_imports(tree)] == ["synth.x"]
    assert ROW.match("| `sim` | 5 | agents, tools |")


@pytest.mark.parametrize("pkg", ["stages", "sim", "judge"])
def test_the_table_is_read(pkg: str) -> None:
    assert allowed()[pkg][1], f"{pkg}'s row in docs/architecture.md was not parsed"
