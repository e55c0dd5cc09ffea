"""Task generation with a scripted pool: the schema sent, the rubric built, bad replies kept as error rows."""

from typing import Any

import pytest

from synth.llm.client import ReplyInvalid
from synth.schemas.ids import stable_id
from synth.schemas.usage import UsageByRole
from synth.sim.tool_sim import RUN_PYTHON_TOOL
from synth.tasks import generate_task
from synth.tasks.draft import draft_json_schema
from synth.tasks.rubrics import default_library
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.tasks import AGENT, draft, tool


async def test_multi_call_task_gets_rubric_with_code_checks() -> None:
    pool = ScriptedPool([draft()])
    usage = UsageByRole()
    task = await generate_task(AGENT, "multi_call", pool, seed=3, index=1, usage=usage)
    assert task.error is None
    assert task.id == stable_id("task", "agent-shop", 1, "multi_call", 3)
    assert task.agent_id == "agent-shop" and task.difficulty == "multi_call" and task.model == "scripted"
    assert task.hidden_details == {"email": "n@example.com"}
    assert task.initial_state["orders"]["A12"]["total"] == 42.5
    assert usage.generator.calls == 1 and task.usage.generator.calls == 1

    rubric = task.rubric
    assert rubric is not None
    kinds = {c.kind for c in rubric.criteria}
    assert kinds == {"core", "prescriptive", "task"}
    ids = [c.id for c in rubric.criteria]
    assert "grounding" in ids and "no_needless_calls" in ids and "task_1" in ids
    assert "asks_clarification" not in ids  # not a multi_call criterion
    checks = {c.id: c for c in rubric.checks}
    assert checks["call_1_get_order"].kind == "tool_called_with"
    assert checks["call_1_get_order"].arguments == {"order_id": "A12"}
    assert checks["call_2_cancel_order"].arguments == {"order_id": "A12", "reason": "late"}
    assert checks["state_1"].path == "/orders/A12/status" and checks["state_1"].value == "cancelled"
    assert [checks[k].value for k in ("mentions_1", "mentions_2")] == ["A12", "42.5"]


async def test_schema_sent_names_only_the_agents_tools_and_bounds_the_calls() -> None:
    pool = ScriptedPool([draft()])
    await generate_task(AGENT, "multi_call", pool, seed=0, index=0)
    sent = pool.calls[0]
    assert sent["role"] == "generator"
    calls = sent["json_schema"]["properties"]["expected_calls"]
    assert (calls["minItems"], calls["maxItems"]) == (2, 4)
    branches = calls["items"]["anyOf"]
    assert sorted(b["properties"]["name"]["enum"][0] for b in branches) == ["cancel_order", "get_order"]
    cancel = next(b for b in branches if b["properties"]["name"]["enum"] == ["cancel_order"])
    args = cancel["properties"]["arguments"]
    # Scalar parameters only (an object argument cannot be compared reliably), no invented keys.
    assert set(args["properties"]) == {"order_id", "reason"} and args["additionalProperties"] is False
    assert args["properties"]["reason"] == {"enum": ["late", "other"]}
    assert "cancel_order" in sent["messages"][-1]["content"]


def test_schema_without_tools_or_for_refusals_allows_no_calls() -> None:
    assert draft_json_schema({}, 1, 1)["properties"]["expected_calls"]["maxItems"] == 0
    assert draft_json_schema({"t": {}}, 0, 0)["properties"]["expected_calls"]["maxItems"] == 0


async def test_refuse_task_gets_no_tool_called_check() -> None:
    pool = ScriptedPool([draft(expected_calls=[], expected_state=[], report_values=[])])
    task = await generate_task(AGENT, "refuse", pool, seed=0, index=0)
    assert task.error is None and task.rubric is not None
    assert [(c.id, c.kind) for c in task.rubric.checks] == [("no_tool_calls", "no_tool_called")]
    assert pool.calls[0]["json_schema"]["properties"]["expected_calls"]["maxItems"] == 0


async def test_recover_task_checks_count_only_successful_calls() -> None:
    pool = ScriptedPool([draft(expected_calls=[{"name": "get_order", "arguments": {}}])])
    task = await generate_task(AGENT, "recover", pool, seed=0, index=0)
    assert task.rubric is not None
    call = task.rubric.checks[0]
    assert call.kind == "tool_called" and call.tool == "get_order" and call.require_ok


async def test_uncheckable_parts_of_a_draft_are_dropped() -> None:
    bad = draft(
        expected_calls=[
            {"name": "get_order", "arguments": {"order_id": 12, "color": "red"}},
            {"name": "get_order", "arguments": {"order_id": 12}},
        ],
        expected_state=[
            {"path": "orders.A12.status", "value": "x"},
            {"path": "/orders/A12/status", "value": "cancelled"},
            {"path": "/orders/A12/status", "value": "open"},
        ],
        report_values=[" ", "A12", "A12"],
    )
    task = await generate_task(AGENT, "multi_call", ScriptedPool([bad]), seed=0, index=0)
    assert task.rubric is not None
    # order_id must be a string and color is no parameter: both dropped; the duplicate call collapses.
    assert [(c.kind, c.tool, c.arguments) for c in task.rubric.checks if c.tool] == [
        ("tool_called", "get_order", {})
    ]
    # The malformed pointer is dropped; of two values for one place the first stands.
    assert [(c.path, c.value) for c in task.rubric.checks if c.kind == "state_equals"] == [
        ("/orders/A12/status", "cancelled")
    ]
    assert [c.value for c in task.rubric.checks if c.kind == "final_mentions"] == ["A12"]


async def test_invalid_reply_becomes_an_error_row_with_raw_output() -> None:
    pool = ScriptedPool([ReplyInvalid("TaskDraft: reply cut off at max_tokens", '{"user_goal": "Canc')])
    task = await generate_task(AGENT, "single_call", pool, seed=0, index=0)
    assert task.error is not None and task.error.kind == "validation"
    assert task.error.raw == '{"user_goal": "Canc' and "cut off" in task.error.message
    assert task.rubric is None and task.id == stable_id("task", "agent-shop", 0, "single_call", 0)


@pytest.mark.parametrize(
    ("difficulty", "calls", "why"),
    [
        ("multi_call", [{"name": "delete_everything", "arguments": {}}] * 2, "not a tool of this agent"),
        ("multi_call", [], "expect 2..4 tool calls"),
    ],
)
async def test_draft_that_does_not_fit_the_agent_is_an_error_row(
    difficulty: str, calls: list, why: str
) -> None:
    task = await generate_task(
        AGENT, difficulty, ScriptedPool([draft(expected_calls=calls)] * 2), seed=0, index=0
    )
    assert task.error is not None and why in task.error.message
    assert task.error.raw is not None and "user_goal" in task.error.raw


async def test_clarify_task_must_hold_details_back() -> None:
    pool = ScriptedPool([draft(hidden_details=[], expected_calls=[{"name": "get_order", "arguments": {}}])] * 2)
    task = await generate_task(AGENT, "clarify", pool, seed=0, index=0)
    assert pool.calls[0]["json_schema"]["properties"]["hidden_details"]["minItems"] == 1
    assert task.error is not None and "hidden_details: clarify tasks need at least 1" in task.error.message

    ok = ScriptedPool([draft(expected_calls=[{"name": "get_order", "arguments": {}}])])
    task = await generate_task(AGENT, "clarify", ok, seed=0, index=0)
    assert task.error is None and task.rubric is not None
    assert "asks_clarification" in [c.id for c in task.rubric.criteria]


async def test_empty_goal_is_an_error_row() -> None:
    task = await generate_task(AGENT, "multi_call", ScriptedPool([draft(user_goal="  ")] * 2), seed=0, index=0)
    assert task.error is not None and "user_goal: empty" in task.error.message


CODER = AGENT.model_copy(update={"tools": [RUN_PYTHON_TOOL, *AGENT.tools]})


async def test_coding_task_takes_its_tests_from_a_seed_problem() -> None:
    library = default_library()
    goal = "Hi! Could you write me reverse_words(text)? I keep reversing sentences by hand."
    pool = ScriptedPool([draft(user_goal=goal, expected_calls=[], expected_state=[], report_values=[])])
    task = await generate_task(CODER, "coding", pool, seed=0, index=0, library=library)
    assert task.error is None and task.rubric is not None
    problem = next(p for p in library.coding_problems if p.tests == task.rubric.python_tests)
    # The schema leaves no room for calls, a world or values to report: reference tests decide.
    props = pool.calls[0]["json_schema"]["properties"]
    assert props["expected_calls"]["maxItems"] == 0 and props["report_values"]["maxItems"] == 0
    assert "python_tests" not in props
    # The prompt gave the model the problem; the reference tests are the only code check (no tool call is
    # required: an answer with a code block that passes them has done the task).
    assert problem.request in pool.calls[0]["messages"][1]["content"]
    assert task.rubric.checks == [] and task.rubric.python_tests == problem.tests
    # The user asks for exactly what the tests check: the request word for word, not the model's rewording.
    assert task.user_goal == problem.request
    assert task.persona


async def test_coding_goal_that_loses_the_function_name_falls_back_to_the_request() -> None:
    pool = ScriptedPool([draft(user_goal="Write me some code please.", expected_calls=[])])
    task = await generate_task(CODER, "coding", pool, seed=3, index=1)
    assert task.error is None and task.rubric is not None and task.rubric.python_tests
    problem = next(p for p in default_library().coding_problems if p.tests == task.rubric.python_tests)
    assert task.user_goal == problem.request


async def test_free_text_arguments_are_not_matched_exactly() -> None:
    coder = AGENT.model_copy(update={"tools": [tool("run_python", code={"type": "string"}, mode={"type": "string"})]})
    calls = [{"name": "run_python", "arguments": {"code": "print(1)", "mode": "fast"}}]
    pool = ScriptedPool([draft(expected_calls=calls)])
    task = await generate_task(coder, "single_call", pool, seed=0, index=0)
    assert task.rubric is not None
    # No argument of run_python's can be chosen by code, so the task is not grounded: the draft's call stands.
    assert task.opening is None
    assert [(c.kind, c.arguments) for c in task.rubric.checks if c.kind.startswith("tool_called")] == [
        ("tool_called_with", {"mode": "fast"})]


def _strings(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node] if node.get("type") == "string" else []
        return found + [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


@pytest.mark.parametrize("world", [False, True])
def test_schema_never_pairs_a_pattern_with_a_length_bound(world: bool) -> None:
    # vLLM refuses such a schema for xgrammar with a 400, which would fail every task of the stage.
    schema = draft_json_schema({"t": {"properties": {"a": {"type": "string"}}}}, 1, 2, 1, world=world)
    patterned = [s for s in _strings(schema) if "pattern" in s]
    assert patterned and not [s for s in patterned if "maxLength" in s or "minLength" in s]


async def test_unusable_draft_is_sampled_again() -> None:
    pool = ScriptedPool([draft(user_goal="  "), draft()])
    task = await generate_task(AGENT, "multi_call", pool, seed=0, index=0)
    assert task.error is None and task.user_goal
    assert len(pool.calls) == 2 and pool.calls[0]["seed"] != pool.calls[1]["seed"]
