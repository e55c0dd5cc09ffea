"""Episodes of the task kinds code builds: a call is forced only where one is expected, a parallel task's reply may
make all its calls, a follow-up is said by code in the next turn, and no simulator writes a user turn."""

from __future__ import annotations

import json
from typing import Any

from synth.config import RolloutsStageConfig
from synth.judge.checks import run_checks
from synth.schemas.records import TaskRecord
from synth.sim.episode import run_episode
from synth.tasks import generate_task
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.kinds import TRAVEL

FORCED = RolloutsStageConfig(max_turns=1, max_steps=2, max_calls_per_step=1, error_rate=0, timeout_rate=0,
                             empty_rate=0, partial_rate=0, real_exec=False, grounded_calls_first=True,
                             grounded_answer_after_call=True)
RESULT = {"result": {"temp_c": 21, "status": "ok"}, "patch": []}


def call(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"action": "call", "calls": [{"name": n, "arguments": a} for n, a in calls]}


def answer(text: str) -> dict[str, Any]:
    return {"action": "answer", "content": text}


async def _task(kind: str, seed: int = 3) -> TaskRecord:
    task = await generate_task(TRAVEL, kind, ScriptedPool([]), seed=seed, index=0)  # type: ignore[arg-type]
    assert task.error is None and task.rubric is not None
    return task


def _agent_schemas(pool: ScriptedPool) -> list[dict[str, Any]]:
    return [c["json_schema"] for c in pool.calls if c["role"] == "agent"]


def _can_answer(schema: dict[str, Any]) -> bool:
    return '"const": "answer"' in json.dumps(schema)


def _can_call(schema: dict[str, Any]) -> bool:
    return '"const": "call"' in json.dumps(schema)


def _max_calls(schema: dict[str, Any]) -> int:
    branches = schema.get("anyOf", [schema])
    return max(b["properties"]["calls"]["maxItems"] for b in branches if "calls" in b.get("properties", {}))


async def test_a_parallel_task_s_forced_reply_may_make_every_call() -> None:
    task = await _task("parallel")
    calls = [(c.name, c.arguments) for c in task.rubric.checks[0].calls]  # type: ignore[union-attr]
    pool = ScriptedPool([call(*calls), *[RESULT] * len(calls), answer("Both came back at 21.")])
    traj = await run_episode(task, TRAVEL, pool, FORCED, seed=1)
    assert traj.error is None and traj.required_first_call == "*" and traj.forced_answer_step == 1
    first, second = _agent_schemas(pool)
    # max_calls_per_step=1 would make it one call: this task expects len(calls) in one reply.
    assert not _can_answer(first) and _max_calls(first) == len(calls) >= 2
    assert not _can_call(second)
    assert all(r.passed for r in run_checks(traj, task.rubric))  # type: ignore[arg-type]
    # Nothing forced, the bound is still the task's.
    pool = ScriptedPool([call(*calls), *[RESULT] * len(calls), answer("Both came back at 21.")])
    free = FORCED.model_copy(update={"grounded_calls_first": False})
    traj = await run_episode(task, TRAVEL, pool, free, seed=1)
    assert traj.required_first_call is None and _can_answer(_agent_schemas(pool)[0])
    assert _max_calls(_agent_schemas(pool)[0]) == len(calls)


async def test_a_no_tool_task_is_never_made_to_call() -> None:
    task = await _task("no_tool")
    topic = task.rubric.checks[0].value[0]  # type: ignore[union-attr]
    pool = ScriptedPool([answer(f"Here is what I know about {topic}, in a few words.")])
    traj = await run_episode(task, TRAVEL, pool, FORCED.model_copy(update={"max_turns": 3}), seed=2)
    assert traj.error is None and traj.required_first_call is None and traj.forced_answer_step is None
    (schema,) = _agent_schemas(pool)
    assert _can_answer(schema) and _can_call(schema)
    # The user is code's: nothing more to say after the answer, and no simulator call for it.
    assert traj.stop_reason == "user_stop" and [c["role"] for c in pool.calls] == ["agent"]
    assert traj.messages[1].content == task.opening
    assert all(r.passed for r in run_checks(traj, task.rubric))  # type: ignore[arg-type]


async def test_a_follow_up_is_said_by_code_and_its_turn_is_forced_too() -> None:
    task = await _task("follow_up")
    first, second = [(c.tool, c.arguments) for c in task.rubric.checks[:2]]  # type: ignore[union-attr]
    pool = ScriptedPool([call(first), RESULT, answer("It came back at 21."),
                         call(second), RESULT, answer("That one is 21 too.")])
    traj = await run_episode(task, TRAVEL, pool, FORCED, seed=3)  # max_turns=1: the script still runs
    assert traj.error is None and traj.turns == 2 and traj.stop_reason == "user_stop"
    assert [m.content for m in traj.messages if m.role == "user"] == [task.opening, *task.follow_ups]  # type: ignore[misc]
    assert "user_sim" not in [c["role"] for c in pool.calls]
    schemas = _agent_schemas(pool)
    assert [_can_answer(s) for s in schemas] == [False, True, False, True]
    assert [_can_call(s) for s in schemas] == [True, False, True, False]
    assert all(r.passed for r in run_checks(traj, task.rubric))  # type: ignore[arg-type]


async def test_a_single_task_is_forced_like_a_grounded_one() -> None:
    task = await _task("single")
    (name, args) = next((c.tool, c.arguments) for c in task.rubric.checks if c.kind == "call_made_with")  # type: ignore[union-attr]
    pool = ScriptedPool([call((name, args)), RESULT, answer("Done: 21.")])
    traj = await run_episode(task, TRAVEL, pool, FORCED, seed=4)
    assert traj.required_first_call == "*" and traj.forced_answer_step == 1 and traj.stop_reason == "user_stop"
    assert _max_calls(_agent_schemas(pool)[0]) == 1
