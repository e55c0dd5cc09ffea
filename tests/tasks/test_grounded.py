"""Grounded tasks: code picks the call and its values, the opening states them, the check holds the agent to them."""

from __future__ import annotations

import random

import pytest

from synth.judge.checks import run_check
from synth.schemas.messages import Message
from synth.schemas.records import CallRecord, TaskRecord, TrajectoryRecord
from synth.schemas.rubric import CodeCheck
from synth.sim.user import verbatim_opening
from synth.tasks import generate_task
from synth.tasks.grounded import ground_call, state_values, value_for
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.tasks import AGENT, draft


@pytest.mark.parametrize(("param", "schema", "expect"), [
    ("reason", {"type": "string", "enum": ["late", "other"]}, {"late", "other"}),
    ("nights", {"type": "integer", "minimum": 2, "maximum": 4}, {2, 3, 4}),
    ("flag", {"type": "boolean"}, {True, False}),
])
def test_values_come_from_the_schema(param: str, schema: dict, expect: set) -> None:
    got = {value_for(param, schema, random.Random(i)) for i in range(40)}
    assert got == expect


def test_string_values_follow_format_and_name() -> None:
    rng = random.Random(0)
    assert len(value_for("check_in", {"type": "string", "format": "date"}, rng)) == 10
    assert value_for("destinationCity", {"type": "string"}, rng) in {
        "Lisbon", "Osaka", "Denver", "Nairobi", "Krakow", "Toronto", "Seville", "Melbourne"}
    order = value_for("order_id", {"type": "string"}, rng)
    assert order.startswith("O-") and order[2:].isdigit()
    # What code cannot choose well stays free: a pattern, prose, an object, a value the schema rules out.
    assert value_for("sku", {"type": "string", "pattern": "^[A-Z]{3}$"}, rng) is None
    assert value_for("description", {"type": "string"}, rng) is None
    assert value_for("filters", {"type": "object"}, rng) is None
    assert value_for("order_id", {"type": "string", "maxLength": 3}, rng) is None


def test_ground_call_skips_tools_whose_required_arguments_code_cannot_fill() -> None:
    tools = {
        "send_note": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "get_weather": {"type": "object", "properties": {"city": {"type": "string"},
                                                          "units": {"enum": ["C", "F"]}}, "required": ["city"]},
    }
    for seed in range(10):
        name, args = ground_call(tools, random.Random(seed))
        assert name == "get_weather" and set(args) == {"city", "units"}
    assert ground_call(tools, random.Random(3)) == ground_call(tools, random.Random(3))
    assert ground_call({"send_note": tools["send_note"]}, random.Random(0)) is None


def test_request_states_every_value_as_a_whole_word() -> None:
    assert state_values("Weather in Osaka please", {"city": "Osaka"}) == "Weather in Osaka please"
    # "5" inside "15" is not the value stated.
    out = state_values("Book 15 seats in Osaka.", {"city": "Osaka", "seats": 5})
    assert out == "Book 15 seats in Osaka. Details: seats: 5."


async def test_single_call_task_is_grounded() -> None:
    pool = ScriptedPool([draft(expected_calls=[], expected_state=[], report_values=[])])
    task = await generate_task(AGENT, "single_call", pool, seed=0, index=0)
    assert task.error is None and task.rubric is not None
    call = next(c for c in task.rubric.checks if c.kind == "tool_called_with")
    assert call.tool in {"get_order", "cancel_order"} and call.arguments
    # The opening, written by code, states every value the check asks for; the generator was told them.
    assert task.opening == task.user_goal and verbatim_opening(task) == task.opening
    assert all(str(v) in task.opening for v in call.arguments.values())
    sent = pool.calls[0]
    assert call.tool in sent["messages"][-1]["content"]
    assert sent["json_schema"]["properties"]["expected_calls"]["maxItems"] == 0
    assert [c.kind for c in task.rubric.checks] == ["tool_called_with", "reports_result", "calls_at_most"]
    # The generator's guesses about the world's end state are not turned into checks.
    assert not [c for c in task.rubric.checks if c.kind in ("state_equals", "final_mentions")]


async def test_code_opening_asks_what_the_tool_does_with_every_value() -> None:
    """tasks.grounded_opening=code: the generator's garbled request is not the opening; code's is, and it states
    each checked value word for word (so a correct call is always possible) without naming the tool."""
    garbled = "get_order with order_id(. Details"
    pool = ScriptedPool([draft(user_goal=garbled, expected_calls=[], expected_state=[], report_values=[])])
    task = await generate_task(AGENT, "single_call", pool, seed=0, index=0, grounded_opening="code")
    assert task.error is None and task.rubric is not None
    call = next(c for c in task.rubric.checks if c.kind == "tool_called_with")
    assert garbled not in task.opening and task.opening == task.user_goal
    assert f"{call.tool} tool" in task.opening  # the tool's description, as a request
    for name, value in call.arguments.items():
        assert f"The {name.replace('_', ' ')} is {value}." in task.opening
    # The same task twice: the same opening (seeded), so a resumed run plans the same rows.
    again = await generate_task(AGENT, "single_call", ScriptedPool([draft(
        user_goal=garbled, expected_calls=[], expected_state=[], report_values=[])]), seed=0, index=0,
        grounded_opening="code")
    assert again.opening == task.opening


async def test_code_draft_builds_a_grounded_task_without_the_generator() -> None:
    """tasks.grounded_draft=code: no generator request, the same opening and checks as a code opening over a
    generated draft, an empty world; a task code cannot ground still asks the generator."""
    from synth.config import TasksStageConfig
    from synth.tasks.generate import CODE_PERSONA

    pool = ScriptedPool([])  # any generator call would find no scripted reply and fail
    task = await generate_task(AGENT, "single_call", pool, seed=0, index=0, grounded_opening="code",
                               grounded_draft="code")
    assert task.error is None and not pool.calls and task.usage.generator.calls == 0
    generated = await generate_task(AGENT, "single_call", ScriptedPool([draft(
        expected_calls=[], expected_state=[], report_values=[])]), seed=0, index=0, grounded_opening="code")
    assert task.opening == generated.opening and task.persona == CODE_PERSONA and task.initial_state == {}
    assert [(c.kind, c.tool, c.arguments) for c in task.rubric.checks] == [
        (c.kind, c.tool, c.arguments) for c in generated.rubric.checks]
    # No tool code can fill: the generator writes the task as before.
    prose = AGENT.model_copy(update={"tools": [{"type": "function", "function": {
        "name": "send_note", "description": "Send a note.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]})
    pool = ScriptedPool([draft(expected_calls=[{"name": "send_note", "arguments": {"text": "hi"}}],
                               expected_state=[], report_values=[])])
    await generate_task(prose, "single_call", pool, seed=0, index=0, grounded_opening="code", grounded_draft="code")
    assert len(pool.calls) == 1
    with pytest.raises(ValueError, match="grounded_opening=code"):
        TasksStageConfig(grounded_draft="code")


def test_code_opening_takes_the_first_sentence_of_the_description() -> None:
    from synth.tasks.grounded import code_opening

    text = code_opening("Convert time between timezones. Uses IANA names.\nMore.", {"time": "14:30"},
                        random.Random(0))
    assert "convert time between timezones" in text and "IANA" not in text and text.endswith("The time is 14:30.")
    assert "help me with this" in code_opening("", {"time": "14:30"}, random.Random(0))


def _episode(answer: str, result: str, ok: bool = True) -> TrajectoryRecord:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Osaka"}'}}
    return TrajectoryRecord(id="t", task_id="x", messages=[
        Message(role="user", content="Weather in Osaka?"),
        Message(role="assistant", content=None, tool_calls=[call]),
        Message(role="tool", tool_call_id="c1", content=result),
        Message(role="assistant", content=answer),
    ], calls=[CallRecord(tool_call_id="c1", name="get_weather", mode="simulated", ok=ok)])


CHECK = CodeCheck(id="r", kind="reports_result", tool="get_weather")


@pytest.mark.parametrize(("answer", "result", "ok", "passed"), [
    ("It is 18 degrees and sunny in Osaka.", '{"city": "Osaka", "temp_c": 18, "sky": "sunny"}', True, True),
    # Echoing the request proves nothing: Osaka was the argument.
    ("Here is the weather in Osaka.", '{"city": "Osaka", "temp_c": 18, "sky": "sunny"}', True, False),
    # An invented reading is not the result.
    ("It is 25 degrees in Osaka.", '{"city": "Osaka", "temp_c": 18}', True, False),
    ("Done.", '{"city": "Osaka", "ok": true}', True, True),  # nothing to report beyond the request
    ("It is 18 degrees.", '{"temp_c": 18}', False, False),  # a failed call has no result to report
])
def test_reports_result(answer: str, result: str, ok: bool, passed: bool) -> None:
    assert run_check(CHECK, _episode(answer, result, ok)).passed is passed


def test_plain_tasks_keep_the_simulated_opening() -> None:
    assert verbatim_opening(TaskRecord(id="t", user_goal="Cancel A12")) is None


def _repeated(n_ok: int, n_failed: int) -> TrajectoryRecord:
    calls, msgs, records = [], [Message(role="user", content="Weather in Osaka?")], []
    for i in range(n_ok + n_failed):
        cid = f"c{i}"
        call = {"id": cid, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Osaka"}'}}
        msgs += [Message(role="assistant", content=None, tool_calls=[call]),
                 Message(role="tool", tool_call_id=cid, content='{"temp_c": 18}')]
        records.append(CallRecord(tool_call_id=cid, name="get_weather", mode="simulated", ok=i >= n_failed))
        calls.append(call)
    msgs.append(Message(role="assistant", content="18 degrees."))
    return TrajectoryRecord(id="t", task_id="x", messages=msgs, calls=records)


@pytest.mark.parametrize(("n_ok", "n_failed", "passed"), [(1, 0, True), (1, 2, True), (2, 0, False), (3, 0, False)])
def test_call_budget_rejects_repeated_work_not_retries(n_ok: int, n_failed: int, passed: bool) -> None:
    check = CodeCheck(id="b", kind="calls_at_most", value=1)
    assert run_check(check, _repeated(n_ok, n_failed)).passed is passed


def test_grounded_only_plans_no_task_code_cannot_ground(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """tasks.grounded_only: an agent with no tool code can fill gets no task, nor does a difficulty that is not
    grounded; with nothing left the plan says what to change instead of making an empty run."""
    from synth.config import PipelineConfig
    from synth.stages import tasks as stage
    from synth.stages.base import StageContext

    prose = AGENT.model_copy(update={"id": "agent-prose", "tools": [{"type": "function", "function": {
        "name": "send_note", "description": "Send a note.",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]})
    agents = [AGENT, prose]
    monkeypatch.setattr(stage, "kept_agents", lambda ctx: agents)

    def plan(**tasks) -> list:
        cfg = PipelineConfig.model_validate({"run": "g", "runs_dir": str(tmp_path), "tasks": tasks})
        return stage.TasksStage().plan(StageContext(config=cfg))

    every = plan(per_agent=2, difficulties=["single_call", "clarify"])
    assert {i.payload["agent_id"] for i in every} == {AGENT.id, prose.id} and len(every) == 4
    only = plan(per_agent=2, difficulties=["single_call", "clarify"], grounded_only=True)
    assert [(i.payload["agent_id"], i.payload["difficulty"]) for i in only] == [(AGENT.id, "single_call")] * 2
    assert stage.can_ground(AGENT, "single_call") and not stage.can_ground(prose, "single_call")
    agents = [prose]
    with pytest.raises(ValueError, match="grounded_only"):
        plan(difficulties=["single_call"], grounded_only=True)
