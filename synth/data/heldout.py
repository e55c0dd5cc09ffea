"""The held-out split: the tasks evaluation scores, on tools that no training row uses.

The unit of the split is a **tool group**, not a task: a task held out by its id alone can use the very tool (same
name, same schema, same toolset) a training task used, and then "held out" measures recall, not use of a new tool.
A tool's group is where it came from (``tool_group``): an MCP tool's server, a synthetic tool's domain leaf (its
whole domain path), a builtin's own name. A share of the groups (``is_heldout`` on the group's key: stable by the
key and the salt, so the same groups are held out in every round, every resume and every run) is held out.

A task's side follows from the groups of its agent's tools (``split_keys``, ``side_of``): all of them held out,
the task is held out; none, it is a training task; some of each, it goes to neither side (``excluded``) and is
counted. Whole agents could be built from one side only instead, but that needs the agents stage to know the
split before it draws a toolset; deciding per task keeps every agent as drawn, and costs little: a toolset is
mostly one group (``ToolRegistry.sample_toolset``), so few tasks mix the two sides (a few percent of the
agents). Tools of two groups may share a name: a training task holding a tool named as a held-out
tool is excluded too (``TaskSplit.of``), so "no training row holds a held-out tool" holds by name as well.

Coding tasks keep their own rule. Their tool is the sandbox (``run_python``), which every coding task holds, so
their unit is the problem instead: two coding tasks (of one run, or of two rounds of ``synth improve``) can be
written around the same bank problem and share its reference tests, so a coding task's key is its problem
(``problem:<id>``), and no held-out problem's tests or reference reach ``train``. The sandbox itself is never held
out (a task other than coding that holds it is on the training side). A task whose agent holds no tool has no tool
to hold out: its key is its own id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field

from synth.schemas.records import AgentRecord, TaskRecord, ToolBatchRecord
from synth.schemas.tools import ToolSpec
from synth.tools.builtin import BUILTIN_TOOLS, RUN_PYTHON

SALT = "synth-heldout-v1"
RULE = "tool-group"
"""How the split was chosen, recorded with it: evaluation refuses a dataset recorded under another rule."""
SANDBOX = RUN_PYTHON.function.name
Side = Literal["train", "heldout", "excluded"]


def stable_fraction(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by the key (and the salt, so that two uses of it pick unrelated rows)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_fraction(key: str) -> float:
    """A number in [0, 1) fixed by the key."""
    return stable_fraction(key, SALT)


def is_heldout(key: str, share: float) -> bool:
    """True for about ``share`` of all keys, always the same ones; ``share`` must lie in [0, 1). Builtin tools'
    groups are never held out (see the module docstring)."""
    if not 0 <= share < 1:
        raise ValueError(f"held-out share must be in [0, 1), got {share}")
    return not key.startswith("builtin:") and heldout_fraction(key) < share


def tool_group(spec: ToolSpec) -> str:
    """The group ``spec`` is held out with: ``mcp:<server>``, ``synthetic:<domain path>``, ``builtin:<name>``."""
    p = spec.provenance
    if p.source == "mcp" and p.server:
        return f"mcp:{p.server}"
    if p.source == "synthetic" and p.domain_path:
        return "synthetic:" + "/".join(p.domain_path)
    if p.source == "builtin":
        return f"builtin:{spec.function.name}"
    return f"tool:{spec.function.name}"


@cache
def _registry_groups() -> dict[str, str]:
    """Tool id -> group of the committed MCP tools (read once per process: loading validates every one)."""
    from synth.tools.registry import ToolRegistry

    return {s.id: tool_group(s) for s in ToolRegistry.load().specs}


class ToolGroups:
    """Which group each tool of a run belongs to, by tool id: the run's synthetic tools (the tools stage's rows),
    the builtins and, looked up when first needed, the committed MCP tools. A tool known by none of these (an id
    from a registry that changed since, or a hand-made agent without ids) is a group of its own, by its name."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._known = {s.id: tool_group(s) for s in [*BUILTIN_TOOLS.values(), *specs]}

    @classmethod
    def of_batches(cls, batches: Iterable[ToolBatchRecord]) -> ToolGroups:
        """The groups of the synthetic tools the tools stage grew (every one, near-duplicates too)."""
        return cls(spec for b in batches if b.error is None for spec in b.tools)

    def group(self, tool_id: str | None, name: str, server: str | None = None) -> str:
        """The group of the tool ``tool_id`` named ``name``; ``server``: the MCP server that runs it for real."""
        if tool_id and tool_id in self._known:
            return self._known[tool_id]
        if server:
            return f"builtin:{name}" if server == "builtin" else f"mcp:{server}"
        if tool_id and (found := _registry_groups().get(tool_id)):
            return found
        return f"tool:{name}"

    def of_agent(self, agent: AgentRecord) -> dict[str, str]:
        """Tool name -> group, for every tool ``agent`` holds."""
        names = [t["function"]["name"] for t in agent.tools]
        ids: list[str | None] = list(agent.tool_ids) if len(agent.tool_ids) == len(names) else [None] * len(names)
        return {n: self.group(i, n, agent.real_tools.get(n)) for i, n in zip(ids, names, strict=True)}


@cache
def _problem_ids() -> dict[str, str]:
    """Reference tests -> problem id, for the repository's bank (read once per process)."""
    from synth.tasks.rubrics import default_library

    return {p.tests: p.id for p in default_library().coding_problems}


def problem_key(tests: str) -> str:
    """The held-out key of a coding problem, from the tests a task carries: ``problem:<id>`` for a bank problem,
    else a hash of the tests (a problem no longer in the bank still keeps one key for all its tasks)."""
    pid = _problem_ids().get(tests)
    if pid is not None:
        return f"problem:{pid}"
    return "tests:" + hashlib.sha256(tests.strip().encode()).hexdigest()[:16]


def _tests(task: TaskRecord) -> str | None:
    return task.rubric.python_tests if task.rubric is not None else None


def split_keys(task: TaskRecord, groups: Mapping[str, str]) -> list[str]:
    """What decides ``task``'s side: the groups of its agent's tools (``groups``: tool name -> group), a coding
    task's problem in place of the sandbox, or, with no tool at all, its own id."""
    tests = _tests(task)
    keys = {g for name, g in groups.items() if not (tests and name == SANDBOX)}
    if tests:
        keys.add(problem_key(tests))
    return sorted(keys) or [task.id]


def side_of(keys: Iterable[str], share: float) -> Side:
    """Held out when every key is, training when none is, else neither (a toolset that mixes the two sides)."""
    held = [is_heldout(k, share) for k in keys]
    return "heldout" if held and all(held) else "excluded" if any(held) else "train"


def row_side(row: Mapping[str, Any], share: float) -> Side:
    """The side of a dataset row at ``share``, from the keys the dataset recorded on it (``split_keys``); a row of
    a dataset built before it recorded them is keyed by its coding problem or task id, as that dataset split it."""
    keys = row.get("split_keys")
    if isinstance(keys, list) and keys:
        return side_of(keys, share)
    rubric = row.get("rubric")
    if isinstance(rubric, str):
        try:
            rubric = json.loads(rubric)
        except json.JSONDecodeError:
            rubric = None
    tests = rubric.get("python_tests") if isinstance(rubric, dict) else None
    key = problem_key(tests) if isinstance(tests, str) and tests else str(row.get("task_id") or "")
    return "heldout" if is_heldout(key, share) else "train"


def _names(agent: AgentRecord | None, task: TaskRecord) -> set[str]:
    """The tools ``task`` is split by, by name (a coding task's sandbox is not: its problem is)."""
    names = {t["function"]["name"] for t in agent.tools} if agent is not None else set()
    return names - {SANDBOX} if _tests(task) else names


class TaskSplit(BaseModel):
    """Every usable task of a run on its side, with why the excluded ones are on neither."""

    share: float
    keys: dict[str, list[str]] = Field(default_factory=dict, description="Task id -> its split keys.")
    sides: dict[str, Side] = Field(default_factory=dict, description="Task id -> its side.")
    reasons: dict[str, str] = Field(default_factory=dict, description="Excluded task id -> why.")
    groups: list[str] = Field(default_factory=list, description="The held-out tasks' tool groups.")
    problems: list[str] = Field(default_factory=list, description="The held-out coding tasks' problems.")
    tools: list[str] = Field(default_factory=list, description="Names of the tools the held-out tasks hold (a "
                             "coding task's sandbox aside).")

    @classmethod
    def of(cls, share: float, tasks: Iterable[TaskRecord], agents: Iterable[AgentRecord],
           index: ToolGroups | None = None) -> TaskSplit:
        index = index or ToolGroups()
        by_agent = {a.id: a for a in agents}
        usable = sorted((t for t in tasks if t.error is None), key=lambda t: t.id)
        split = cls(share=share)
        names: dict[str, set[str]] = {}
        for t in usable:
            agent = by_agent.get(t.agent_id)
            keys = split_keys(t, index.of_agent(agent) if agent is not None else {})
            split.keys[t.id], split.sides[t.id] = keys, side_of(keys, share)
            names[t.id] = _names(agent, t)
            if split.sides[t.id] == "excluded":
                held = [k for k in keys if is_heldout(k, share)]
                split.reasons[t.id] = f"mixes held-out {', '.join(held)} with training " + ", ".join(
                    k for k in keys if k not in held)
        held = [t for t in usable if split.sides[t.id] == "heldout"]
        split.tools = sorted({n for t in held for n in names[t.id]})
        split.groups = sorted({k for t in held for k in split.keys[t.id] if ":" in k and not k.startswith(
            ("problem:", "tests:"))})
        split.problems = sorted({k for t in held for k in split.keys[t.id] if k.startswith(("problem:", "tests:"))})
        shared = set(split.tools)
        for t in usable:
            if split.sides[t.id] == "train" and (same := names[t.id] & shared):
                split.sides[t.id] = "excluded"
                split.reasons[t.id] = f"holds {', '.join(sorted(same))}, named as a held-out tool of another group"
        return split

    def side(self, task_id: str) -> Side | None:
        return self.sides.get(task_id)

    def ids(self, side: Side) -> list[str]:
        return sorted(t for t, s in self.sides.items() if s == side)

    def excluded_by(self) -> dict[str, int]:
        """Excluded tasks by kind of reason."""
        out: dict[str, int] = {}
        for why in self.reasons.values():
            kind = "mixed groups" if why.startswith("mixes") else "shared tool name"
            out[kind] = out.get(kind, 0) + 1
        return out


class HeldoutSet(BaseModel):
    """The evaluation set a built dataset recorded: its held-out tasks (usable ones, sorted by id), the agents
    that play them, the tool groups and tools they hold out. Evaluation scores exactly these, whatever share a
    later config asks for."""

    share: float = Field(description="The held-out share the dataset was built with.")
    rule: str = Field(default="task-id", description="How the tasks were chosen: 'tool-group' (RULE), or "
                      "'task-id' for a dataset built before the split was by tool.")
    task_ids: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list, description="Names of the tools held out: those the held-out "
                             "tasks' agents hold (a coding task's sandbox aside); no training row holds one.")
    groups: list[str] = Field(default_factory=list, description="The tool groups held out (MCP servers, "
                              "synthetic domain leaves) that the held-out tasks hold.")
    problems: list[str] = Field(default_factory=list, description="The coding problems held out.")
    seen: list[str] | None = Field(default=None, description="Held-out tasks holding a tool (by name) that a "
                                   "training task holds: none by construction under 'tool-group'; None: not "
                                   "recorded.")
    excluded: dict[str, int] = Field(default_factory=dict, description="Tasks on neither side, by reason.")
    tasks: list[TaskRecord] = Field(default_factory=list)
    agents: list[AgentRecord] = Field(default_factory=list)

    @classmethod
    def of(cls, split: TaskSplit, tasks: list[TaskRecord], agents: list[AgentRecord]) -> HeldoutSet:
        """The held-out tasks of ``split``, with their agents."""
        held = sorted((t for t in tasks if split.side(t.id) == "heldout"), key=lambda t: t.id)
        by_id = {a.id: a for a in agents}
        playing = [by_id[i] for i in sorted({t.agent_id for t in held}) if i in by_id]
        train_names = {n for t in tasks if split.side(t.id) == "train"
                       for n in _names(by_id.get(t.agent_id), t)}
        seen = [t.id for t in held if _names(by_id.get(t.agent_id), t) & train_names]
        return cls(share=split.share, rule=RULE, task_ids=[t.id for t in held], tools=split.tools,
                   groups=split.groups, problems=split.problems, seen=seen, excluded=split.excluded_by(),
                   tasks=held, agents=playing)

    def first(self, n: int | None) -> HeldoutSet:
        """The first ``n`` tasks by id (ids are hashes, so any prefix mixes difficulties), with their agents."""
        if n is None or n >= len(self.tasks):
            return self
        tasks = self.tasks[:n]
        keep = {t.agent_id for t in tasks}
        agents = [a for a in self.agents if a.id in keep]
        held = {t["function"]["name"] for a in agents for t in a.tools}
        seen = None if self.seen is None else [t for t in self.seen if t in {x.id for x in tasks}]
        return self.model_copy(update={"task_ids": [t.id for t in tasks], "tools": sorted(set(self.tools) & held),
                                       "seen": seen, "tasks": tasks, "agents": agents})

    def summary(self) -> dict[str, Any]:
        """What a stage summary shows of it (the records stay in the row)."""
        return {"share": self.share, "rule": self.rule, "tasks": len(self.task_ids), "task_ids": self.task_ids,
                "tools": self.tools, "groups": self.groups, "problems": self.problems, "seen": self.seen,
                "excluded": self.excluded}
