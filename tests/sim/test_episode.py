"""Episodes: control flow with a scripted pool, then real episodes against the embedded model server."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from pydantic import ValidationError

from synth.config import EndpointConfig, LLMConfig, RolloutsStageConfig
from synth.llm.client import EndpointUnavailable, LLMPool, ReplyInvalid
from synth.schemas.records import AgentRecord, TaskRecord, TrajectoryRecord
from synth.sim.episode import run_episode, unanswered_calls
from tests.fixtures.episode import AGENT, NO_FAULTS, TASK, TOOLS, RoleScriptedPool, answer, call, user

CANCEL = {
    "result": {"order_id": "A1", "status": "cancelled"},
    "patch": [{"op": "replace", "path": "/orders/A1/status", "value": "cancelled"}],
}


def assert_openai_form(traj: TrajectoryRecord) -> None:
    assert traj.messages[0].role == "system" and traj.messages[0].content == AGENT.system_prompt
    assert unanswered_calls(traj.messages) == []
    ids = [tc.id for m in traj.messages for tc in m.tool_calls or []]
    assert len(ids) == len(set(ids)), "tool call ids must be unique in a trajectory"
    for i, m in enumerate(traj.messages):
        wire = m.openai()
        if m.role == "tool":
            assert set(wire) >= {"role", "tool_call_id", "content"}
            # A tool message answers a call of the nearest assistant turn before it.
            prev = next(p for p in reversed(traj.messages[:i]) if p.role == "assistant")
            assert m.tool_call_id in {tc.id for tc in prev.tool_calls or []}
        for tc in m.tool_calls or []:
            assert re.match(r"^[A-Za-z0-9_-]+$", tc.id) and tc.type == "function"
            assert isinstance(tc.function.arguments, str)
            json.loads(tc.function.arguments)
    assert {c.tool_call_id for c in traj.calls} == set(ids)


async def test_full_episode_until_the_user_stops() -> None:
    pool = RoleScriptedPool(
        user_sim=[user("cancel my order pls"), user("A1"), user("thanks", stop=True)],
        agent=[
            answer("Which order?"),
            call(("get_order", {"order_id": "A1"})),
            call(("cancel_order", {"order_id": "A1"})),
            answer("Order A1 is cancelled."),
        ],
        tool_sim=[{"result": {"order_id": "A1", "status": "processing"}, "patch": []}, CANCEL],
    )
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=1)
    assert traj.error is None and traj.stop_reason == "user_stop" and traj.turns == 2
    assert [m.role for m in traj.messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert_openai_form(traj)
    assert traj.final_state == {"orders": {"A1": {"status": "cancelled", "items": ["mug"]}}}
    assert TASK.initial_state["orders"]["A1"]["status"] == "processing"
    assert [c.mode for c in traj.calls] == ["simulated", "simulated"]
    assert traj.usage.agent.calls == 4 and traj.usage.user_sim.calls == 3 and traj.usage.tool_sim.calls == 2
    assert traj.tools == TOOLS and traj.model == "scripted" and traj.seed == 1
    assert traj.task_id == TASK.id and traj.agent_id == AGENT.id and traj.id.startswith("traj-")


async def test_same_seed_same_trajectory() -> None:
    def script() -> RoleScriptedPool:
        return RoleScriptedPool(
            user_sim=[user("cancel A1"), user("ok", stop=True)],
            agent=[call(("cancel_order", {"order_id": "A1"})), answer("Done.")],
            tool_sim=[CANCEL],
        )

    cfg = NO_FAULTS.model_copy(update={"error_rate": 0.3, "timeout_rate": 0.3})
    a = await run_episode(TASK, AGENT, script(), cfg, seed=9)
    b = await run_episode(TASK, AGENT, script(), cfg, seed=9)
    assert a.model_dump() == b.model_dump()


async def test_parallel_calls_are_each_answered_in_order() -> None:
    pool = RoleScriptedPool(
        user_sim=[user("status of A1 and cancel it"), user("bye", stop=True)],
        agent=[
            call(("get_order", {"order_id": "A1"}), ("cancel_order", {"order_id": "A1"}), ("nope", {})),
            answer("Done."),
        ],
        tool_sim=[{"result": {"status": "processing"}, "patch": []}, CANCEL],
    )
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=2)
    assert_openai_form(traj)
    tool_msgs = [m for m in traj.messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_msgs] == [tc.id for tc in traj.messages[2].tool_calls or []]
    assert all(set(m.openai()) == {"role", "tool_call_id", "content"} for m in tool_msgs)
    assert [c.mode for c in traj.calls] == ["simulated", "simulated", "unknown_tool"]


async def test_schema_error_is_answered_without_the_model() -> None:
    pool = RoleScriptedPool(
        user_sim=[user("cancel"), user("bye", stop=True)],
        agent=[call(("cancel_order", {"id": "A1"})), answer("Sorry.")],
        tool_sim=[],
    )
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=3)
    assert traj.calls[0].mode == "schema_error"
    tool_msg = next(m for m in traj.messages if m.role == "tool")
    assert (
        tool_msg.content
        == "Error: invalid arguments for tool cancel_order: 'order_id' is a required property"
    )
    assert "tool_sim" not in pool.roles


async def test_agent_that_never_answers_stops_at_max_steps() -> None:
    pool = RoleScriptedPool(
        user_sim=[user("cancel A1")],
        agent=[call(("get_order", {"order_id": "A1"}))] * 3,
        tool_sim=[{"result": {"status": "processing"}, "patch": []}] * 3,
    )
    cfg = NO_FAULTS.model_copy(update={"final_answer": False})
    traj = await run_episode(TASK, AGENT, pool, cfg, seed=4)
    assert traj.stop_reason == "max_steps" and traj.error is None
    assert traj.usage.agent.calls == NO_FAULTS.max_steps
    assert traj.messages[-1].role == "tool"
    assert_openai_form(traj)


async def test_agent_at_max_steps_is_asked_once_for_an_answer() -> None:
    pool = RoleScriptedPool(
        user_sim=[user("cancel A1")],
        agent=[call(("get_order", {"order_id": "A1"}))] * 3 + [answer("Order A1 is still processing.")],
        tool_sim=[{"result": {"status": "processing"}, "patch": []}] * 3,
    )
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=4)
    assert traj.stop_reason == "max_steps" and traj.error is None
    # Three tool rounds, then one answer; every call stays in the transcript.
    assert [m.role for m in traj.messages].count("tool") == 3
    assert traj.messages[-1].role == "assistant" and traj.messages[-1].content == "Order A1 is still processing."
    assert not traj.messages[-1].tool_calls
    # The last step's grammar has only the answer branch; the earlier ones could call.
    schemas = pool.agent_schemas
    assert "anyOf" in json.dumps(schemas[0]) and schemas[-1]["properties"]["action"] == {"const": "answer"}
    assert_openai_form(traj)


async def test_turn_limit() -> None:
    cfg = NO_FAULTS.model_copy(update={"max_turns": 2})
    pool = RoleScriptedPool(user_sim=[user("hi"), user("still there?")], agent=[answer("Hello."), answer("Yes.")])
    traj = await run_episode(TASK, AGENT, pool, cfg, seed=5)
    assert traj.stop_reason == "max_turns" and traj.turns == 2
    assert [m.role for m in traj.messages] == ["system", "user", "assistant", "user", "assistant"]


async def test_invalid_agent_reply_becomes_an_error_row() -> None:
    pool = RoleScriptedPool(user_sim=[user("cancel A1")], agent=['{"action": "answer", "content": "cut o'])
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=6)
    assert traj.error is not None and traj.error.kind == "validation"
    assert (
        traj.error.message.startswith("agent:") and traj.error.raw == '{"action": "answer", "content": "cut o'
    )
    assert traj.stop_reason == "error" and [m.role for m in traj.messages] == ["system", "user"]
    assert traj.usage.user_sim.calls == 1


async def test_invalid_tool_sim_reply_mid_round_keeps_the_invariant() -> None:
    pool = RoleScriptedPool(
        user_sim=[user("cancel A1")],
        agent=[
            call(("get_order", {"order_id": "A1"})),
            call(("cancel_order", {"order_id": "A1"}), ("get_order", {"order_id": "A1"})),
        ],
        tool_sim=[{"result": {"status": "processing"}, "patch": []}, CANCEL, '{"result": [1, 2'],
    )
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=7)
    assert traj.error is not None and traj.error.message.startswith("tool_sim:")
    assert traj.error.raw == '{"result": [1, 2'
    # The round that failed half-way is cut, with the cancel it had already applied; the first round stays.
    assert [m.role for m in traj.messages] == ["system", "user", "assistant", "tool"]
    assert_openai_form(traj)
    assert len(traj.calls) == 1
    assert traj.final_state == TASK.initial_state


async def test_invalid_user_reply_becomes_an_error_row() -> None:
    pool = RoleScriptedPool(user_sim=[user("hi"), '{"message": ""}'], agent=[answer("Hello.")])
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=8)
    assert traj.error is not None and traj.error.message.startswith("user_sim:")
    assert [m.role for m in traj.messages] == ["system", "user", "assistant"]


async def test_endpoint_unavailable_propagates() -> None:
    pool = RoleScriptedPool(user_sim=[EndpointUnavailable("no LLM endpoint answered")])
    with pytest.raises(EndpointUnavailable):
        await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=0)


class FakeHub:
    """Serves get_order for real; its snapshot is the real world's state."""

    def __init__(self) -> None:
        self.called: list[str] = []

    def tools(self) -> list[dict[str, Any]]:
        return [TOOLS[0]]

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        from types import SimpleNamespace

        self.called.append(name)
        return SimpleNamespace(content='{"status": "shipped"}', is_error=False, server="pypi/fake")

    def snapshot(self) -> dict[str, Any]:
        return {"files": {"orders.txt": {"size": 2, "content": "A1"}}, "memory": None, "git": None}


async def test_real_tools_are_called_and_their_state_kept() -> None:
    hub = FakeHub()
    pool = RoleScriptedPool(
        user_sim=[user("where is A1"), user("ok", stop=True)],
        agent=[
            call(("get_order", {"order_id": "A1"}), ("cancel_order", {"order_id": "A1"})),
            answer("Shipped."),
        ],
        tool_sim=[CANCEL],
    )
    traj = await run_episode(TASK, AGENT, pool, NO_FAULTS, seed=1, hub=hub)
    assert [c.mode for c in traj.calls] == ["real", "simulated"] and hub.called == ["get_order"]
    assert traj.final_state["real"]["files"]["orders.txt"]["content"] == "A1"
    assert traj.final_state["orders"]["A1"]["status"] == "cancelled"
    assert_openai_form(traj)


# --- real episodes against the embedded model server ---


def _served_models(base_url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=30) as resp:
        return [m["id"] for m in json.load(resp)["data"]]



@pytest.mark.integration
async def test_real_episodes_against_the_embedded_model(live_url: str) -> None:
    # Small budgets: the machine is shared and a 135M model on CPU writes ~40 tokens/s per stream.
    pool = LLMPool(
        [EndpointConfig(base_url=live_url, api_key=os.environ.get("SYNTH_API_KEY", "EMPTY"))],
        LLMConfig(max_tokens=128, temperature=0.7, timeout_s=120),
    )
    cfg = RolloutsStageConfig(
        max_turns=2, max_steps=2, error_rate=0.1, timeout_rate=0.1, empty_rate=0, partial_rate=0.1
    )
    try:
        import asyncio

        trajs = await asyncio.gather(*(run_episode(TASK, AGENT, pool, cfg, seed=s) for s in (0, 1)))
    finally:
        await pool.aclose()
    served = _served_models(live_url)
    for traj in trajs:
        assert traj.stop_reason in {"user_stop", "max_turns", "max_steps", "error"}
        assert traj.model in served, (traj.model, served)  # the name the server itself lists
        assert_openai_form(traj)
        assert traj.messages[1].role == "user" and traj.messages[1].content
        assert traj.usage.user_sim.calls >= 1 and traj.usage.user_sim.completion_tokens > 0
        if len(traj.messages) > 2:
            assert traj.usage.agent.calls >= 1 and traj.usage.agent.prompt_tokens > 0
        if traj.calls:
            simulated = [c for c in traj.calls if c.mode == "simulated" and c.injected in ("none", "partial")]
            assert traj.usage.tool_sim.calls >= len(simulated)
        if traj.error is not None:
            assert traj.stop_reason == "error" and traj.error.kind in {"validation", "request"}
        # The stored row round-trips, as the stage will write and read it.
        assert TrajectoryRecord.model_validate_json(traj.model_dump_json()) == traj
    # At least one of the two must get past the opening into the agent's turn for this to prove anything.
    assert any(t.usage.agent.calls for t in trajs)


@pytest.mark.integration
@pytest.mark.sandbox
@pytest.mark.timeout(600)
async def test_coding_episode_runs_the_models_code_in_the_sandbox(live_url: str) -> None:
    """A coding task against the embedded model: the first agent step runs code in the real sandbox, and the
    judge's reference tests then run on that program."""
    import asyncio

    from synth.judge.code_tests import extract_code, run_python_tests
    from synth.sim.tool_sim import RUN_PYTHON_TOOL
    from synth.tasks.rubrics import default_library

    problem = next(p for p in default_library().coding_problems if p.id == "factorial")
    task = TaskRecord(id="task-code", agent_id="agent-code", difficulty="coding", user_goal=problem.request,
                      persona="A student who writes short messages.")
    agent = AgentRecord(id="agent-code", name="coder", system_prompt="You write and run Python for the user.",
                        tools=[RUN_PYTHON_TOOL])
    pool = LLMPool(
        [EndpointConfig(base_url=live_url, api_key=os.environ.get("SYNTH_API_KEY", "EMPTY"))],
        LLMConfig(max_tokens=256, temperature=0.7, timeout_s=180),
    )
    cfg = RolloutsStageConfig(max_turns=1, max_steps=2, error_rate=0, timeout_rate=0, empty_rate=0, partial_rate=0)
    try:
        trajs = await asyncio.gather(*(run_episode(task, agent, pool, cfg, seed=s) for s in (0, 1)))
    finally:
        await pool.aclose()
    reached = [t for t in trajs if t.usage.agent.calls]
    assert reached, [t.error for t in trajs]
    for traj in reached:
        assert traj.required_first_call == "run_python"
        first = next(m for m in traj.messages if m.role == "assistant")
        assert first.tool_calls and first.tool_calls[0].function.name == "run_python"
        assert traj.calls and traj.calls[0].mode == "sandbox"
        assert first.tool_calls[0].function.parsed_arguments()["code"]  # the grammar's minLength holds
        result = await run_python_tests(traj, problem.tests)
        # Whatever a 135M model wrote, the tests ran on it (pass or fail); only a blank program is "no code".
        blank = not extract_code(traj)
        assert result.detail.startswith(("tests passed", "tests failed")) or blank, result.detail
        assert unanswered_calls(traj.messages) == []


@pytest.mark.integration
@pytest.mark.sandbox  # the server runs confined
@pytest.mark.timeout(300)
async def test_episode_calls_a_real_mcp_server_through_the_hub(live_url: str) -> None:
    """The agent is scripted (control flow); the tool answer comes from the real mcp-server-time."""
    from synth.sim.real_exec import DEFAULT_SERVERS, RealToolHub
    from synth.tools.servers import ensure_installed

    entry = next(e for e in DEFAULT_SERVERS if e.id == "pypi/mcp-server-time")
    ensure_installed(entry)  # must install: a registry outage fails the test
    async with RealToolHub([entry]) as hub:
        tools = [spec.openai() for spec in hub.tools() if spec.function.name == "get_current_time"]
        agent = AGENT.model_copy(update={"tools": [*TOOLS, *tools]})
        pool = RoleScriptedPool(
            user_sim=[user("what time is it in Paris?"), user("thanks", stop=True)],
            agent=[call(("get_current_time", {"timezone": "Europe/Paris"})), answer("It is late.")],
        )
        traj = await run_episode(TASK, agent, pool, NO_FAULTS, seed=0, hub=hub)
    assert traj.error is None and traj.stop_reason == "user_stop"
    assert [(c.name, c.mode, c.ok) for c in traj.calls] == [("get_current_time", "real", True)]
    tool_msg = next(m for m in traj.messages if m.role == "tool")
    assert json.loads(tool_msg.content or "{}")["timezone"] == "Europe/Paris"
    assert "tool_sim" not in pool.roles
    assert "real" in traj.final_state and traj.final_state["orders"] == TASK.initial_state["orders"]
    assert_openai_form(traj)


class ChatScriptedPool(RoleScriptedPool):
    """RoleScriptedPool plus plain chat replies for the agent (free-text steps)."""

    def __init__(self, texts: list[str], **script: list[Any]) -> None:
        super().__init__(**script)
        self.texts = list(texts)
        self.chats: list[dict[str, Any]] = []

    async def chat(self, messages: list[dict[str, Any]], **kw: Any) -> Any:
        from types import SimpleNamespace

        self.roles.append(kw.get("role", ""))
        self.chats.append({"messages": messages, **kw})
        text = self.texts.pop(0)
        return SimpleNamespace(content=text, message=SimpleNamespace(content=text))


async def test_free_text_coding_episode_opens_verbatim_and_calls_no_tool() -> None:
    from synth.schemas.rubric import Rubric
    from synth.sim.tool_sim import RUN_PYTHON_TOOL

    request = "Write a Python function factorial(n) that returns n! for a non-negative integer n."
    task = TaskRecord(id="task-code", agent_id="agent-code", difficulty="coding", user_goal=request,
                      persona="A student.", rubric=Rubric(criteria=[], python_tests="assert factorial(0) == 1\n"))
    agent = AGENT.model_copy(update={"tools": [RUN_PYTHON_TOOL, *TOOLS]})
    answer_text = "```python\ndef factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)\n```"
    pool = ChatScriptedPool([answer_text], user_sim=[user("thanks", stop=True)])
    cfg = NO_FAULTS.model_copy(update={"coding_runs_code": True})  # no forced call in a free-text episode
    traj = await run_episode(task, agent, pool, cfg, seed=0, free_text=True)
    assert traj.error is None and traj.stop_reason == "user_stop"
    assert [m.role for m in traj.messages] == ["system", "user", "assistant"]
    assert traj.messages[1].content == request and traj.messages[2].content == answer_text
    assert traj.required_first_call is None and traj.calls == []
    assert pool.roles == ["agent", "user_sim"]  # the opening needed no model call
    # The same task without free text keeps the forced sandbox call (schema mode).
    forced = RoleScriptedPool(agent=[{"action": "call", "calls": [{"name": "run_python", "arguments": {"code": "1"}}]},
                                 answer("done")], user_sim=[user("ok", stop=True)])
    traj = await run_episode(task, agent, forced, cfg, seed=0)
    assert traj.required_first_call == "run_python"


async def test_parallel_calls_per_step_follow_the_config() -> None:
    """rollouts.max_calls_per_step bounds the grammar's calls array (each call is simulated in turn)."""
    for limit in (1, 3):
        pool = RoleScriptedPool(user_sim=[user("hi")], agent=[answer("Hello.")])
        cfg = NO_FAULTS.model_copy(update={"max_calls_per_step": limit, "max_turns": 1})
        await run_episode(TASK, AGENT, pool, cfg, seed=5)
        call_branch = next(b for b in pool.agent_schemas[0]["anyOf"]
                           if b["properties"]["action"] == {"const": "call"})
        assert call_branch["properties"]["calls"]["maxItems"] == limit


def test_max_calls_per_step_cannot_exceed_what_the_reply_schema_allows() -> None:
    from synth.agents.turn import MAX_CALLS

    RolloutsStageConfig(max_calls_per_step=MAX_CALLS)
    with pytest.raises(ValidationError):
        RolloutsStageConfig(max_calls_per_step=MAX_CALLS + 1)


async def test_grounded_first_step_must_call_a_tool_of_its_choice() -> None:
    """rollouts.grounded_calls_first: a grounded task's first step has no answer branch but keeps every tool (the
    model picks which); later steps and other tasks may answer; the row records '*'."""
    from synth.schemas.rubric import CodeCheck, Rubric

    rubric = Rubric(criteria=[], checks=[CodeCheck(id="c", kind="tool_called_with", tool="cancel_order",
                                                   arguments={"order_id": "A1"})])
    grounded = TASK.model_copy(update={"opening": "Please cancel order A1.", "rubric": rubric})
    assert grounded.grounded and not TASK.grounded
    cfg = NO_FAULTS.model_copy(update={"grounded_calls_first": True, "max_turns": 1})
    pool = RoleScriptedPool(agent=[call(("get_order", {"order_id": "A1"})), answer("It is processing.")],
                        tool_sim=[{"result": {"order_id": "A1", "status": "processing"}, "patch": []}])
    traj = await run_episode(grounded, AGENT, pool, cfg, seed=0)
    assert traj.error is None and traj.required_first_call == "*"
    first, second = pool.agent_schemas[:2]
    assert "anyOf" not in first or all(b["properties"]["action"] != {"const": "answer"} for b in first["anyOf"])
    assert {"get_order", "cancel_order"} <= set(json.dumps(first).replace('"', " ").split())
    assert any(b["properties"]["action"] == {"const": "answer"} for b in second["anyOf"])
    # Not grounded, or the option off: the first step may answer.
    for task, flag in ((TASK, True), (grounded, False)):
        pool = RoleScriptedPool(user_sim=[user("hi")], agent=[answer("Hello.")])
        c = NO_FAULTS.model_copy(update={"grounded_calls_first": flag, "max_turns": 1})
        traj = await run_episode(task, AGENT, pool, c, seed=0)
        assert traj.required_first_call is None
        assert any(b["properties"]["action"] == {"const": "answer"} for b in pool.agent_schemas[0]["anyOf"])


async def test_grounded_answer_after_call_forces_the_second_step_to_answer() -> None:
    """rollouts.grounded_answer_after_call: after the forced call's results, the next step has no call branch
    (a grounded task needs one call; a fine-tuned 135M repeated it); the row records the forced step."""
    from synth.schemas.rubric import CodeCheck, Rubric

    rubric = Rubric(criteria=[], checks=[CodeCheck(id="c", kind="tool_called_with", tool="get_order",
                                                   arguments={"order_id": "A1"})])
    grounded = TASK.model_copy(update={"opening": "Where is order A1?", "rubric": rubric})
    cfg = NO_FAULTS.model_copy(update={"grounded_calls_first": True, "grounded_answer_after_call": True,
                                       "max_turns": 1})
    pool = RoleScriptedPool(agent=[call(("get_order", {"order_id": "A1"})), answer("It is processing.")],
                        tool_sim=[{"result": {"order_id": "A1", "status": "processing"}, "patch": []}])
    traj = await run_episode(grounded, AGENT, pool, cfg, seed=0)
    assert traj.error is None and traj.forced_answer_step == 1
    assert traj.messages[-1].content == "It is processing." and len(traj.calls) == 1
    assert '"const": "call"' not in json.dumps(pool.agent_schemas[1])
    # Without grounded_calls_first nothing is forced, and the flag alone changes nothing.
    pool = RoleScriptedPool(agent=[call(("get_order", {"order_id": "A1"})), answer("It is processing.")],
                        tool_sim=[{"result": {"order_id": "A1", "status": "processing"}, "patch": []}])
    c = cfg.model_copy(update={"grounded_calls_first": False})
    traj = await run_episode(grounded, AGENT, pool, c, seed=0)
    assert traj.forced_answer_step is None and traj.required_first_call is None
    assert '"const": "call"' in json.dumps(pool.agent_schemas[1])


async def test_native_answer_that_writes_a_call_as_text_is_invalid() -> None:
    """tool_choice=none only stops the server's parser: '<tool_call>' text in a forced answer is no answer."""
    from types import SimpleNamespace

    from synth.agents.turn import agent_step
    from synth.schemas.messages import Message

    class Pool:
        def __init__(self, content: str) -> None:
            self.content, self.kwargs = content, {}

        async def chat(self, messages, **kwargs):
            self.kwargs = kwargs
            return SimpleNamespace(message=SimpleNamespace(content=self.content, tool_calls=None,
                                                           model_dump_json=lambda: self.content))

    tools = AGENT.tools
    msgs = [Message(role="user", content="Where is A1?")]
    bad = Pool('<tool_call>\n{"name": "get_order", "arguments": {"order_id": "A1"}}\n</tool_call>')
    with pytest.raises(ReplyInvalid, match="tool call as text"):
        await agent_step(bad, msgs, tools, seed=0, mode="native", answer_only=True)
    assert bad.kwargs["tool_choice"] == "none"
    good = Pool("It is processing.")
    msg, _ = await agent_step(good, msgs, tools, seed=0, mode="native", answer_only=True)
    assert msg.content == "It is processing." and not msg.tool_calls
    assert "extra_body" not in good.kwargs  # no bad_words asked for, none sent


async def test_native_answer_only_step_sends_bad_words_and_a_calling_step_does_not() -> None:
    """rollouts.answer_bad_words reaches the server as vLLM's bad_words, only in steps that must answer."""
    from types import SimpleNamespace

    from synth.agents.turn import agent_step
    from synth.schemas.messages import Message

    sent: list[dict] = []

    class Pool:
        async def chat(self, messages, **kwargs):
            sent.append(kwargs)
            return SimpleNamespace(message=SimpleNamespace(content="Done.", tool_calls=None,
                                                           model_dump_json=lambda: "Done."))

    msgs = [Message(role="user", content="Where is A1?")]
    await agent_step(Pool(), msgs, AGENT.tools, seed=0, mode="native", answer_only=True, bad_words=["tool_call"])
    await agent_step(Pool(), msgs, AGENT.tools, seed=0, mode="native", bad_words=["tool_call"])
    assert sent[0]["extra_body"] == {"bad_words": ["tool_call"]}
    assert "extra_body" not in sent[1]
    assert NO_FAULTS.answer_bad_words == ["tool_call"]  # the default


async def test_native_step_with_one_call_asks_for_no_parallel_calls_and_keeps_the_first() -> None:
    """rollouts.max_calls_per_step=1 in native mode: parallel_tool_calls=false reaches the server (vLLM then
    returns the first call only); a server that ignores it still yields one call. 2+ sends nothing (unbounded)."""
    from types import SimpleNamespace

    from synth.agents.turn import agent_step
    from synth.schemas.messages import Message

    sent: list[dict] = []

    def tc(i: int):
        return SimpleNamespace(id=f"c{i}", function=SimpleNamespace(name="get_order",
                                                                     arguments='{"order_id": "A1"}'))

    class Pool:  # a server that ignores the flag: two calls whatever is asked
        async def chat(self, messages, **kwargs):
            sent.append(kwargs)
            return SimpleNamespace(message=SimpleNamespace(content=None, tool_calls=[tc(0), tc(1)],
                                                           model_dump_json=lambda: "two calls"))

    msgs = [Message(role="user", content="Where is A1?")]
    one, _ = await agent_step(Pool(), msgs, AGENT.tools, seed=0, mode="native", max_calls=1)
    two, _ = await agent_step(Pool(), msgs, AGENT.tools, seed=0, mode="native", max_calls=2)
    answer_step, _ = await agent_step(Pool(), msgs, AGENT.tools, seed=0, mode="native", max_calls=1,
                                      require_tool="*")
    assert sent[0]["parallel_tool_calls"] is False and "parallel_tool_calls" not in sent[1]
    assert sent[2]["parallel_tool_calls"] is False and sent[2]["tool_choice"] == "required"
    assert [c.id for c in one.tool_calls] == ["c0"] and len(two.tool_calls) == 2
    assert len(answer_step.tool_calls) == 1


async def test_episode_passes_answer_bad_words_to_the_forced_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_episode hands rollouts.answer_bad_words to every agent step; the step sends them only when it must
    answer (the test above), so the forced answer of a grounded episode gets the configured list."""
    from synth.schemas.rubric import CodeCheck, Rubric
    from synth.sim import episode

    seen: list[dict] = []
    real = episode.agent_step

    async def recording(*args, **kwargs):
        seen.append(kwargs)
        return await real(*args, **kwargs)

    monkeypatch.setattr(episode, "agent_step", recording)
    rubric = Rubric(criteria=[], checks=[CodeCheck(id="c", kind="tool_called_with", tool="get_order",
                                                   arguments={"order_id": "A1"})])
    grounded = TASK.model_copy(update={"opening": "Where is order A1?", "rubric": rubric})
    cfg = NO_FAULTS.model_copy(update={"grounded_calls_first": True, "grounded_answer_after_call": True,
                                       "max_turns": 1, "answer_bad_words": ["<tool_call>", "tool_call"]})
    pool = RoleScriptedPool(agent=[call(("get_order", {"order_id": "A1"})), answer("It is processing.")],
                        tool_sim=[{"result": {"order_id": "A1", "status": "processing"}, "patch": []}])
    traj = await run_episode(grounded, AGENT, pool, cfg, seed=0)
    assert traj.error is None and traj.forced_answer_step == 1
    assert [(k["answer_only"], k["bad_words"]) for k in seen] == [
        (False, ["<tool_call>", "tool_call"]), (True, ["<tool_call>", "tool_call"])]
