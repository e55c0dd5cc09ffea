"""No import cycles between synth's modules, lazy (function-level) imports included: a cycle hidden behind a lazy
import is still two modules that cannot be read or tested alone. Type-only imports (``if TYPE_CHECKING:``) are
not cycles at run time and are left out."""

from __future__ import annotations

import ast
from pathlib import Path

from synth.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "synth"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = path
    return mods


def _runtime_imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    packages = {m for m, p in mods.items() if p.name == "__init__.py"}  # re-exports, not dependencies
    graph: dict[str, set[str]] = {m: set() for m in mods if m not in packages}
    for mod in graph:
        for node in _runtime_imports(ast.parse(mods[mod].read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synth"):
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[mod].update(t for t in targets if t in graph and t != mod)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for mod in sorted(graph):
        if mod not in state and (found := dfs(mod)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checker_sees_a_lazy_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    tree = ast.parse("def f():\n    from synth.x import y\nif TYPE_CHECKING:\n    from synth.z import w\n")
    assert [n.module for n in _runtime_imports(tree)] == ["synth.x"]
