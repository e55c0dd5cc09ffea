"""The held-out split: a deterministic share of tasks, chosen by a key fixed by the task, that never enters ``train``.

By key (not by row order or seed) so the same task is held out in every round, every resume and every run that
plans it, whatever else changed. The key is the task id, except for coding tasks: two coding tasks (of one run,
or of two rounds of ``synth improve``) can be written around the same bank problem, and then share its reference
tests. Held out by task id, one of them could land in ``train`` while the other is evaluated, so the model would
be trained on the very tests it is scored on. A coding task's key is therefore its problem (``problem:<id>``): all
tasks of a held-out problem are held out, and no held-out problem's tests or reference reach ``train``.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from pydantic import BaseModel, Field

from synth.schemas.records import AgentRecord, TaskRecord

SALT = "synth-heldout-v1"


def stable_fraction(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by the key (and the salt, so that two uses of it pick unrelated rows)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def heldout_fraction(key: str) -> float:
    """A number in [0, 1) fixed by the key."""
    return stable_fraction(key, SALT)


def is_heldout(key: str, share: float) -> bool:
    """True for about ``share`` of all keys, always the same ones; ``share`` must lie in [0, 1)."""
    if not 0 <= share < 1:
        raise ValueError(f"held-out share must be in [0, 1), got {share}")
    return heldout_fraction(key) < share


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


def heldout_key(task: TaskRecord) -> str:
    """What decides whether ``task`` is held out: its coding problem when it has one, else its id."""
    tests = task.rubric.python_tests if task.rubric is not None else None
    return problem_key(tests) if tests else task.id


def task_is_heldout(task: TaskRecord, share: float) -> bool:
    """Whether ``task`` is held out at ``share`` (by ``heldout_key``)."""
    return is_heldout(heldout_key(task), share)


def row_heldout_key(row: dict[str, Any]) -> str:
    """``heldout_key`` for a dataset row (``task_id`` and, in the splits, ``rubric`` as an object or JSON)."""
    rubric = row.get("rubric")
    if isinstance(rubric, str):
        try:
            rubric = json.loads(rubric)
        except json.JSONDecodeError:
            rubric = None
    tests = rubric.get("python_tests") if isinstance(rubric, dict) else None
    return problem_key(tests) if isinstance(tests, str) and tests else str(row.get("task_id") or "")


class HeldoutSet(BaseModel):
    """The evaluation set a built dataset recorded: its held-out tasks (usable ones, sorted by id), the agents
    that play them and the tools those agents hold. Evaluation scores exactly these, whatever share a later
    config asks for."""

    share: float = Field(description="The held-out share the dataset was built with.")
    task_ids: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list, description="Names of the tools the held-out tasks' agents hold.")
    tasks: list[TaskRecord] = Field(default_factory=list)
    agents: list[AgentRecord] = Field(default_factory=list)

    @classmethod
    def of(cls, share: float, tasks: list[TaskRecord], agents: list[AgentRecord]) -> HeldoutSet:
        """The usable tasks of ``tasks`` held out at ``share``, with their agents."""
        held = sorted((t for t in tasks if t.error is None and task_is_heldout(t, share)), key=lambda t: t.id)
        by_id = {a.id: a for a in agents}
        playing = [by_id[i] for i in sorted({t.agent_id for t in held}) if i in by_id]
        tools = sorted({t["function"]["name"] for a in playing for t in a.tools})
        return cls(share=share, task_ids=[t.id for t in held], tools=tools, tasks=held, agents=playing)

    def first(self, n: int | None) -> HeldoutSet:
        """The first ``n`` tasks by id (ids are hashes, so any prefix mixes difficulties), with their agents."""
        if n is None or n >= len(self.tasks):
            return self
        tasks = self.tasks[:n]
        keep = {t.agent_id for t in tasks}
        agents = [a for a in self.agents if a.id in keep]
        tools = sorted({t["function"]["name"] for a in agents for t in a.tools})
        return HeldoutSet(share=self.share, task_ids=[t.id for t in tasks], tools=tools, tasks=tasks, agents=agents)

    def summary(self) -> dict[str, Any]:
        """What a stage summary shows of it (the records stay in the row)."""
        return {"share": self.share, "tasks": len(self.task_ids), "task_ids": self.task_ids, "tools": self.tools}
