"""Tools raise plain exceptions; one boundary (``synth.sim.episode.answer_call``) turns each into the tool message
the transcript records, with the same wording as before the change (datasets do not change)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from synth.config import RolloutsStageConfig
from synth.llm.client import EndpointUnavailable, ReplyInvalid, RequestTimedOut
from synth.paths import REPO_ROOT
from synth.schemas.messages import FunctionCall, ToolCall
from synth.sim import tool_sim
from synth.sim.episode import MODEL_ERRORS, answer_call, run_episode, unanswered_calls
from synth.sim.tool_sim import TIMEOUT_MESSAGE, ToolSimulator
from synth.sim.world import WorldState
from synth.tools.errors import InjectedFailure, InvalidArguments, ToolFailed, ToolTimeout, UnknownTool
from tests.fixtures.episode import AGENT, NO_FAULTS, TASK, RoleScriptedPool, answer, call, user


class RaisingHub:
    """Serves get_order 'for real' and raises whatever it is given."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def tools(self) -> list[dict[str, Any]]:
        return [AGENT.tools[0]]

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        raise self.exc

    def snapshot(self) -> dict[str, Any]:
        return {"files": {}, "memory": None, "git": None}


def _episode_pool() -> RoleScriptedPool:
    return RoleScriptedPool(
        user_sim=[user("where is A1"), user("thanks", stop=True)],
        agent=[call(("get_order", {"order_id": "A1"})), answer("Sorry, the lookup failed.")],
    )


async def test_a_tool_raising_any_exception_gives_one_well_formed_tool_message() -> None:
    hub = RaisingHub(ZeroDivisionError("division by zero"))
    traj = await run_episode(TASK, AGENT, _episode_pool(), NO_FAULTS, seed=3, hub=hub)
    assert traj.error is None and traj.stop_reason == "user_stop"  # the episode went on
    tool_messages = [m for m in traj.messages if m.role == "tool"]
    assert len(tool_messages) == 1
    assert tool_messages[0].content == "Error: tool get_order failed: ZeroDivisionError: division by zero"
    assert tool_messages[0].tool_call_id == traj.messages[2].tool_calls[0].id
    assert unanswered_calls(traj.messages) == []
    [record] = traj.calls
    assert (record.mode, record.ok, record.name, record.server) == ("real", False, "get_order", None)


async def test_a_tool_error_is_recorded_in_its_own_words_with_its_server() -> None:
    hub = RaisingHub(ToolTimeout("Error: tool 'get_order' timed out after 30s", server="pypi/shop"))
    traj = await run_episode(TASK, AGENT, _episode_pool(), NO_FAULTS, seed=3, hub=hub)
    [message] = [m for m in traj.messages if m.role == "tool"]
    assert message.content == "Error: tool 'get_order' timed out after 30s"
    [record] = traj.calls
    assert (record.mode, record.ok, record.server) == ("real", False, "pypi/shop")


async def test_an_unexpected_exception_text_is_cut() -> None:
    traj = await run_episode(TASK, AGENT, _episode_pool(), NO_FAULTS, seed=3, hub=RaisingHub(RuntimeError("x" * 5000)))
    [message] = [m for m in traj.messages if m.role == "tool"]
    assert message.content.startswith("Error: tool get_order failed: RuntimeError: xxx")
    assert len(message.content) == 1000


class ToolPool:
    def __init__(self, reply: Any) -> None:
        self.reply = reply

    async def structured(self, messages: list[dict[str, Any]], schema: type[Any], **_: Any) -> Any:
        if isinstance(self.reply, BaseException):
            raise self.reply
        return schema.model_validate(self.reply)


def _sim(cfg: RolloutsStageConfig = NO_FAULTS, reply: Any = None) -> ToolSimulator:
    world = WorldState({"orders": {"A1": {"status": "processing"}}})
    return ToolSimulator(AGENT.tools, world, ToolPool(reply or {"result": {"ok": True}, "patch": []}), cfg, seed=0)


def _tc(name: str, arguments: Any, i: int = 0) -> ToolCall:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=f"call_{i}", function=FunctionCall(name=name, arguments=raw))


async def test_the_simulator_raises_tool_errors_and_records_nothing_itself() -> None:
    sim = _sim()
    with pytest.raises(UnknownTool, match=r"^Error: unknown tool 'nope'\. Available tools: cancel_order, get_order$"):
        await sim.call(_tc("nope", {}))
    with pytest.raises(InvalidArguments, match=r"^Error: invalid arguments for tool get_order: 'order_id' is a "):
        await sim.call(_tc("get_order", {}))
    failing = _sim(NO_FAULTS.model_copy(update={"timeout_rate": 1.0}))
    with pytest.raises(InjectedFailure) as injected:
        await failing.call(_tc("get_order", {"order_id": "A1"}))
    assert str(injected.value) == TIMEOUT_MESSAGE and injected.value.injected == "timeout"
    with pytest.raises(ToolFailed, match=r"^Error: no such order$"):
        await _sim(reply={"result": "Error: no such order", "patch": []}).call(_tc("get_order", {"order_id": "Z"}))
    assert sim.calls == []  # recording is the boundary's job


async def test_the_boundary_records_every_kind_of_failure_once() -> None:
    sim = _sim()
    unknown = await answer_call(sim, _tc("nope", {}, 0))
    schema = await answer_call(sim, _tc("get_order", "{not json", 1))
    assert [(c.mode, c.ok) for c in sim.calls] == [("unknown_tool", False), ("schema_error", False)]
    assert unknown.content.startswith("Error: unknown tool 'nope'")
    assert schema.content.startswith("Error: invalid arguments for tool get_order: not valid JSON")
    failing = _sim(NO_FAULTS.model_copy(update={"timeout_rate": 1.0}))
    out = await answer_call(failing, _tc("get_order", {"order_id": "A1"}))
    assert (out.content, out.record.mode, out.record.injected, out.record.ok) == (
        TIMEOUT_MESSAGE, "simulated", "timeout", False)


async def test_a_bug_in_the_simulated_tool_becomes_a_tool_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise KeyError("orders")

    monkeypatch.setattr(tool_sim, "state_view", broken)
    sim = _sim()
    out = await answer_call(sim, _tc("get_order", {"order_id": "A1"}))
    assert out.content == "Error: tool get_order failed: KeyError: 'orders'"
    assert (out.record.mode, out.record.ok) == ("simulated", False) and sim.calls == [out.record]


@pytest.mark.parametrize("exc", [ReplyInvalid("bad json", "{"), RequestTimedOut("slow"), EndpointUnavailable("down")])
async def test_the_simulators_model_failures_pass_through_the_boundary(exc: Exception) -> None:
    assert isinstance(exc, MODEL_ERRORS)
    sim = _sim(reply=exc)
    with pytest.raises(type(exc)):
        await answer_call(sim, _tc("get_order", {"order_id": "A1"}))
    assert sim.calls == []


def _imports(path: Path) -> set[str]:
    """Every module a file imports, and ``module.name`` for each ``from module import name``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def test_only_the_wrapper_imports_the_mcp_client_api() -> None:
    client_api = ("mcp.client", "mcp.ClientSession", "mcp.StdioServerParameters", "mcp.stdio_client")
    users = sorted(
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "synth").rglob("*.py")
        if any(name == api or name.startswith(api + ".") for name in _imports(path) for api in client_api)
    )
    assert users == ["synth/tools/mcp_client.py"]


def test_the_import_check_sees_an_import_of_the_client_session(tmp_path: Path) -> None:
    # The check above must be able to fail: both spellings of the import are caught.
    sample = tmp_path / "x.py"
    sample.write_text("from mcp import ClientSession\nimport mcp.client.stdio\n")
    assert {"mcp.ClientSession", "mcp.client.stdio"} <= _imports(sample)
