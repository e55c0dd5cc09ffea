"""A row id is computed in one place: every stage plans its rows with a function of ``synth.schemas.ids``, the
code that builds a row (the task generator, the episode) uses the same function, and the formulas keep the ids
runs already hold (resume depends on it)."""

from __future__ import annotations

import ast
from pathlib import Path

from synth.paths import REPO_ROOT
from synth.schemas import ids
from synth.schemas.ids import stable_id
from synth.schemas.records import AgentRecord

IDS = REPO_ROOT / "synth" / "schemas" / "ids.py"
NOT_ROWS = {"tool", "seed"}  # stable_id also names tools and derives sampling seeds: not row ids


def _sources() -> list[Path]:
    return sorted(p for p in (REPO_ROOT / "synth").rglob("*.py") if p != IDS)


def _imported_from_ids(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "synth.schemas.ids":
            names |= {a.asname or a.name for a in node.names}
    return names


def test_stable_id_outside_ids_never_makes_a_row_id() -> None:
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "stable_id":
                prefix = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
                if prefix not in NOT_ROWS:
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} stable_id({prefix!r}, ...)")
    assert not offenders, "row ids are made in synth/schemas/ids.py only:\n" + "\n".join(offenders)


def test_every_planned_work_item_gets_its_id_from_ids() -> None:
    """Each ``WorkItem(id=...)`` a stage plans is a call of a function of ``synth.schemas.ids``."""
    checked, offenders = 0, []
    for path in _sources():
        tree = ast.parse(path.read_text())
        from_ids = _imported_from_ids(tree) - {"stable_id"}  # the bare hash is no row-id formula
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "WorkItem"):
                continue
            value = next((k.value for k in node.keywords if k.arg == "id"), None)
            fn = value.func if isinstance(value, ast.Call) else None
            ok = (isinstance(fn, ast.Name) and fn.id in from_ids) or (
                isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id == "ids")
            if path.name == "rollouts.py" and isinstance(fn, ast.Name) and fn.id == "sample_id":
                ok = True  # a documented alias of ids.trajectory_id, checked below
            checked += 1
            if not ok:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert checked >= 7  # tools, agents, tasks, rollouts, judge, dataset, publish
    assert not offenders, offenders


def test_builders_and_planners_agree() -> None:
    from synth.stages.rollouts import sample_id
    from synth.tasks.generate import task_id as generator_task_id

    agent = AgentRecord(id="agent-x")
    assert generator_task_id(agent, 2, "coding", 7) == ids.task_id("agent-x", 2, "coding", 7)
    assert [sample_id("task-x", 5, k) for k in range(3)] == [ids.trajectory_id("task-x", 5, k) for k in range(3)]


def test_formulas_keep_the_ids_existing_runs_hold() -> None:
    # The formulas as they were before they moved here: a changed one would redo every row of every run.
    payload = {"leaf": ["a", "b"], "generations": 2}
    assert ids.leaf_id(payload, 3) == stable_id("leaf", payload, 3)
    assert ids.agent_id(payload, 3) == stable_id("agent", payload, 3)
    assert ids.task_id("agent-x", 1, "single_call", 9) == stable_id("task", "agent-x", 1, "single_call", 9)
    assert ids.trajectory_id("task-x", 9) == stable_id("traj", "task-x", 9)
    assert ids.trajectory_id("task-x", 9, 2) == stable_id("traj", "task-x", 9, 2)
    assert ids.episode_id("task-x", "agent-x", 9, "schema") == stable_id("traj", "task-x", "agent-x", 9, "schema")
    assert ids.verdict_id("traj-1") == "traj-1"
    assert ids.eval_id("base", "abc", "task-x", 9) == stable_id("eval", "base", "abc", "task-x", 9)
