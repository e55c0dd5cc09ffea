"""Seed problems for coding tasks (``rubrics/coding_problems.yaml``).

A coding task is only as good as its tests. Tests a model writes for a task it invented are often wrong or do
not compile (a 135M generator wrote ``assert iremfromlac2222223242(9) == 123``), so the tests come from a
curated bank with a reference solution each, checked by the unit tests; the generator writes the user around
the problem. The bank is data: add problems to the YAML file.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CodingProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    function: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The name the tests call.")
    request: str = Field(min_length=10, description="What the user asks for; names the function.")
    reference: str = Field(description="A correct solution (Python source).")
    tests: str = Field(description="Assert statements that a correct solution passes.")
    forbidden: list[str] = Field(
        default_factory=list,
        description="Names the request rules out ('without using bin()'): builtins or methods the program may not "
        "name, modules it may not import. Asserts cannot see how a value was computed, so the judge checks these "
        "on the program's syntax tree (synth.tasks.coding.forbidden_uses).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CodingProblem:
        if self.function not in self.request:
            raise ValueError(f"request must name the function {self.function!r}, or the user never asks for it")
        for name, source in (("reference", self.reference), ("tests", self.tests)):
            try:
                ast.parse(source)
            except SyntaxError as exc:
                raise ValueError(f"{name}: not valid Python ({exc.msg}, line {exc.lineno})") from exc
        tree = ast.parse(self.tests)
        if not tree.body or not all(isinstance(node, ast.Assert) for node in tree.body):
            raise ValueError("tests: must be assert statements only")
        called = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        if self.function not in called:
            raise ValueError(f"tests: no assert calls {self.function!r}; nothing would be tested")
        defined = {n.name for n in ast.parse(self.reference).body if isinstance(n, ast.FunctionDef)}
        if self.function not in defined:
            raise ValueError(f"reference: does not define {self.function!r}")
        if used := forbidden_uses(self.reference, self.forbidden):
            raise ValueError(f"reference: uses what the problem forbids: {', '.join(used)}")
        return self


def forbidden_uses(source: str, forbidden: list[str]) -> list[str]:
    """Where ``source`` names something in ``forbidden``: a name (``bin``), an attribute (``.sort``) or an
    imported module (``math``), as ``'bin' at line 3``. A program that does not parse gives none (its tests fail
    anyway). Static, so it catches what a model writes, not a program set on hiding a call (``getattr``)."""
    if not forbidden:
        return []
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    banned = set(forbidden)
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module.split(".")[0]]
        found += [f"{name!r} at line {node.lineno}" for name in names if name in banned]
    return list(dict.fromkeys(found))


def problem_for_tests(problems: list[CodingProblem], tests: str) -> CodingProblem | None:
    """The bank problem whose reference tests are ``tests`` (a task carries the tests, not the problem id)."""
    return next((p for p in problems if p.tests == tests), None)


def pick_problem(problems: list[CodingProblem], seed: int) -> CodingProblem:
    """The problem for a task's sampling seed (stable across runs, spread over the bank)."""
    if not problems:
        raise ValueError("no coding problems loaded; add some to rubrics/coding_problems.yaml")
    return problems[seed % len(problems)]


def problems_path(root: Path) -> Path:
    return root / "coding_problems.yaml"
