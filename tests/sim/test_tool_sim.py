"""Tool simulator control flow with a scripted pool: state, schema errors, injected failures, real calls.

The scripted pool stands in for the model only to drive control flow; tests/sim/test_episode.py runs it
against the real embedded server.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from synth.config import RolloutsStageConfig
from synth.llm.client import ReplyInvalid
from synth.schemas.messages import FunctionCall, ToolCall
from synth.schemas.usage import Usage, UsageByRole
from synth.sim import tool_sim
from synth.sim.episode import answer_call
from synth.sim.tool_sim import (
    RUN_PYTHON_TOOL,
    TIMEOUT_MESSAGE,
    ToolSimReply,
    ToolSimulator,
    argument_error,
    partial_result,
    reply_schema,
)
from synth.sim.world import WorldState

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time in a timezone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add_note",
            "description": "Store a note.",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_notes",
            "description": "List stored notes.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]
NO_FAULTS = RolloutsStageConfig(error_rate=0, timeout_rate=0, empty_rate=0, partial_rate=0)


class ScriptedToolPool:
    """Answers tool_sim requests with ``reply(messages)``; records every request."""

    def __init__(self, reply: Callable[[list[dict[str, Any]]], Any]) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[Any],
        *,
        role: str,
        seed: int | None = None,
        usage: UsageByRole | None = None,
        json_schema: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        self.requests.append({"role": role, "messages": messages, "seed": seed, "json_schema": json_schema})
        raw = self.reply(messages)
        raw = raw if isinstance(raw, str) else json.dumps(raw)
        if usage is not None:
            usage.record(role, Usage(prompt_tokens=10, completion_tokens=5, calls=1))  # type: ignore
        try:
            return schema.model_validate_json(raw)
        except ValidationError as exc:
            raise ReplyInvalid(str(exc), raw) from exc


def notes_backend(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A tiny deterministic 'model': add_note appends to /notes, list_notes reads the state it was shown."""
    call = messages[-1]["content"]
    state = json.loads(
        messages[0]["content"].split("The current state of the world (JSON):\n", 1)[1].split("\n")[0]
    )
    if call.startswith("Call: add_note"):
        text = json.loads(call[len("Call: add_note(") : -1])["text"]
        return {
            "result": {"ok": True, "id": len(state["notes"])},
            "patch": [{"op": "add", "path": "/notes/-", "value": text}],
        }
    if call.startswith("Call: list_notes"):
        return {"result": state["notes"], "patch": []}
    return {"result": {"time": "12:00"}, "patch": []}


def tc(name: str, arguments: Any, i: int = 0) -> ToolCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=f"call_{i:08x}", function=FunctionCall(name=name, arguments=args))


def make_sim(
    cfg: RolloutsStageConfig = NO_FAULTS,
    seed: int = 0,
    reply: Callable[..., Any] = notes_backend,
    tools: list[dict[str, Any]] = TOOLS,
    hub: Any = None,
) -> tuple[ToolSimulator, ScriptedToolPool]:
    pool = ScriptedToolPool(reply)
    sim = ToolSimulator(tools, WorldState({"notes": []}), pool, cfg, seed=seed, usage=UsageByRole(), hub=hub)
    return sim, pool


async def test_effect_is_visible_to_the_next_call() -> None:
    sim, pool = make_sim()
    first = await answer_call(sim, tc("add_note", {"text": "buy milk"}, 0))
    assert first.record.mode == "simulated" and first.record.ok
    assert first.patch is not None and first.patch.applied
    listed = await answer_call(sim, tc("list_notes", {}, 1))
    assert json.loads(listed.content) == ["buy milk"]
    assert (
        '"buy milk"' in pool.requests[1]["messages"][0]["content"]
    )  # the second call was shown the new state
    assert sim.world.doc == {"notes": ["buy milk"]}
    assert sim.usage is not None and sim.usage.tool_sim.calls == 2


async def test_schema_breaking_arguments_get_a_server_error_without_the_model() -> None:
    sim, pool = make_sim()
    out = await answer_call(sim, tc("get_time", {"tz": "UTC"}))
    assert out.content == "Error: invalid arguments for tool get_time: 'timezone' is a required property"
    assert out.record.mode == "schema_error" and not out.record.ok
    bad_type = await answer_call(sim, tc("get_time", {"timezone": 5}, 1))
    assert bad_type.content.startswith(
        "Error: invalid arguments for tool get_time: 5 is not of type 'string'"
    )
    not_json = await answer_call(sim, tc("get_time", "{timezone: UTC", 2))
    assert "not valid JSON" in not_json.content and not_json.record.mode == "schema_error"
    assert pool.requests == []


async def test_unknown_tool_is_refused_without_the_model() -> None:
    sim, pool = make_sim()
    out = await answer_call(sim, tc("delete_everything", {}))
    assert out.record.mode == "unknown_tool" and not out.record.ok
    assert "unknown tool 'delete_everything'" in out.content and "get_time" in out.content
    assert pool.requests == []


async def test_rejected_patch_is_resampled_once_then_the_call_fails_without_claiming_success() -> None:
    # Guards against a patch that did not apply still coming back as {"ok": true}.
    sim, pool = make_sim(
        reply=lambda _m: {
            "result": {"ok": True, "saved": "x"},
            "patch": [{"op": "replace", "path": "/missing/x", "value": 1}],
        }
    )
    out = await answer_call(sim, tc("add_note", {"text": "x"}))
    assert len(pool.requests) == 2  # one fresh sample
    retry = pool.requests[1]["messages"]
    assert "rejected" in retry[-1]["content"] and "/missing" in retry[-1]["content"]
    assert pool.requests[1]["seed"] != pool.requests[0]["seed"]
    assert out.content.startswith("Error:") and "nothing was changed" in out.content
    assert '"ok"' not in out.content
    assert not out.record.ok and out.record.patch_applied is False and out.record.patch_error
    assert sim.world.doc == {"notes": []}
    assert sim.world.events[-1].call_id == out.record.tool_call_id


async def test_a_read_only_call_is_asked_for_no_patch_and_one_it_writes_anyway_is_dropped() -> None:
    """Allowed a patch, the 135M simulator writes the prompt's example path ("/list/-") into read calls on an empty
    state, the patch is rejected twice, and a correct call comes back as an error. A call that only reads (by its
    name, synth.tools.effects) gets a schema with an empty patch and a prompt that
    says so; a patch a server without guided decoding writes anyway is dropped, the result kept."""
    bad_patch = [{"op": "add", "path": "/list/-", "value": {"time": "12:00"}}]
    sim, pool = make_sim(reply=lambda _m: {"result": {"time": "12:00"}, "patch": bad_patch})
    out = await answer_call(sim, tc("get_time", {"timezone": "UTC"}))
    assert json.loads(out.content) == {"time": "12:00"} and out.record.ok
    assert len(pool.requests) == 1 and sim.world.doc == {"notes": []}
    assert pool.requests[0]["json_schema"]["properties"]["patch"]["maxItems"] == 0
    assert '"patch": [] (this call only reads' in pool.requests[0]["messages"][0]["content"]
    # A call that writes keeps its patch budget and the prompt's patch rules; the same bad patch is rejected.
    out = await answer_call(sim, tc("add_note", {"text": "x"}, 1))
    assert out.content.startswith("Error:") and not out.record.ok and out.record.patch_applied is False
    assert pool.requests[1]["json_schema"]["properties"]["patch"]["maxItems"] == 4
    assert "this call only reads" not in pool.requests[1]["messages"][0]["content"]


def test_read_only_tools_by_name() -> None:
    from synth.tools.effects import name_words, reads_only

    assert name_words("getTableStats") == ["get", "table", "stats"] == name_words("get-table_stats")
    for name in ["get_table_stats", "web_search", "list_tables", "describe-index", "read_file", "git_diff_staged",
                 "playwright_get", "getCurrentTime", "get_order", "list_posts", "get_schedule"]:
        assert reads_only(name), name
    # A writing word anywhere wins; a name with no reading word may write, as before.
    for name in ["write_file", "git_create_branch", "list_and_delete", "send_email", "launch_app", "run_python",
                 "format_google_doc_range", "search_and_replace", "frobnicate", "book_flight", "post_status",
                 "order_status_check", ""]:
        assert not reads_only(name), name


async def test_a_resample_whose_patch_applies_is_what_the_call_returns() -> None:
    replies = iter([
        {"result": {"ok": True, "id": 9}, "patch": [{"op": "add", "path": "/nope/-", "value": "x"}]},
        {"result": {"ok": True, "id": 0}, "patch": [{"op": "add", "path": "/notes/-", "value": "x"}]},
    ])  # fmt: skip
    sim, pool = make_sim(reply=lambda _m: next(replies))
    out = await answer_call(sim, tc("add_note", {"text": "x"}))
    assert json.loads(out.content) == {"ok": True, "id": 0}
    assert out.record.ok and out.record.patch_applied
    assert sim.world.doc == {"notes": ["x"]} and len(pool.requests) == 2


async def test_an_error_result_changes_nothing_even_with_a_patch() -> None:
    sim, pool = make_sim(
        reply=lambda _m: {"result": "Error: note too long", "patch": [{"op": "add", "path": "/notes/-", "value": 1}]}
    )
    out = await answer_call(sim, tc("add_note", {"text": "x"}))
    assert out.content == "Error: note too long" and not out.record.ok
    assert sim.world.doc == {"notes": []} and len(pool.requests) == 1


async def test_a_patch_that_breaks_the_world_schema_is_rejected() -> None:
    bad = {"result": {"ok": True}, "patch": [{"op": "replace", "path": "/notes", "value": "all gone"}]}
    sim, _ = make_sim(reply=lambda _m: bad)
    out = await answer_call(sim, tc("add_note", {"text": "x"}))
    assert not out.record.ok and "schema" in (out.record.patch_error or "")
    assert sim.world.doc == {"notes": []}


async def test_a_partial_write_says_nothing_was_changed() -> None:
    cfg = RolloutsStageConfig(error_rate=0, timeout_rate=0, empty_rate=0, partial_rate=1)
    sim, _ = make_sim(cfg)
    out = await answer_call(sim, tc("add_note", {"text": "x"}))
    assert out.record.injected == "partial" and not out.record.ok
    assert out.content.startswith("Error:") and sim.world.doc == {"notes": []}


ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "cancel_order",
        "description": "Cancel an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}


def big_shop() -> dict[str, Any]:
    orders = [{"id": f"O-{i}", "customer": f"c{i % 40}", "status": "pending", "total": i} for i in range(600)]
    customers = {f"c{i}": {"name": f"Customer {i}", "email": f"c{i}@example.org"} for i in range(40)}
    return {"customers": customers, "orders": orders}


async def test_simulator_sees_the_record_the_call_names_in_a_large_state() -> None:
    # Guards against showing the simulator a 6,000-character prefix of the state: order O-517 is far past it.
    def backend(messages: list[dict[str, Any]]) -> dict[str, Any]:
        system = messages[0]["content"]
        line = next(ln for ln in system.splitlines() if '"O-517"' in ln)
        pointer = line.split(" = ", 1)[0]
        return {"result": {"cancelled": "O-517"},
                "patch": [{"op": "replace", "path": f"{pointer}/status", "value": "cancelled"}]}  # fmt: skip

    shop = big_shop()
    assert len(json.dumps(shop)) > 7 * tool_sim.STATE_CHARS
    assert '"O-517"' not in json.dumps(shop)[: tool_sim.STATE_CHARS]  # what the old prefix showed
    pool = ScriptedToolPool(backend)
    sim = ToolSimulator([ORDER_TOOL], WorldState(shop), pool, NO_FAULTS, seed=0)
    out = await answer_call(sim, tc("cancel_order", {"order_id": "O-517"}))
    system = pool.requests[0]["messages"][0]["content"]
    assert "/orders/517 = " in system and "list of 600" in system and "/orders/-" in system
    assert len(system) < tool_sim.STATE_CHARS + 3000
    assert out.record.ok and out.record.patch_applied
    assert sim.world.doc["orders"][517]["status"] == "cancelled"
    assert sim.world.doc["orders"][516]["status"] == "pending"


def test_state_view_shows_the_collections_a_tool_touches() -> None:
    from synth.sim.state_view import state_view

    shop = big_shop()
    view, partial = state_view(shop, "add_customer", {"name": "Zed", "email": "z@example.org"})
    assert partial and "/customers = " in view  # small enough to show whole
    shown = json.loads(view.split("/customers = ", 1)[1].splitlines()[0])
    assert shown == shop["customers"]
    view, _ = state_view(shop, "list_orders", {})
    assert "/orders: list of 600 (append with /orders/-)" in view and "/orders/599 = " in view
    assert "not shown: 597 other entries of /orders" in view
    small = {"notes": ["a"]}
    assert state_view(small, "add_note", {"text": "b"}) == (json.dumps(small), False)


async def test_unusable_simulator_reply_raises_reply_invalid_with_raw() -> None:
    sim, _ = make_sim(reply=lambda _m: '{"result": ')
    with pytest.raises(ReplyInvalid) as info:
        await answer_call(sim, tc("list_notes", {}))
    assert info.value.raw == '{"result": '


async def _run(
    seed: int, cfg: RolloutsStageConfig, n: int = 40
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    sim, _ = make_sim(cfg, seed=seed)
    seen = []
    for i in range(n):
        call = tc("add_note", {"text": f"n{i}"}, i) if i % 2 else tc("list_notes", {}, i)
        out = await answer_call(sim, call)
        seen.append((out.record.injected, out.content))
    return seen, sim.world.snapshot()


async def test_same_calls_and_seed_give_same_state_and_failures() -> None:
    cfg = RolloutsStageConfig(error_rate=0.2, timeout_rate=0.1, empty_rate=0.1, partial_rate=0.1)
    a, state_a = await _run(11, cfg)
    b, state_b = await _run(11, cfg)
    assert a == b and state_a == state_b
    c, _ = await _run(12, cfg)
    assert [k for k, _ in a] != [k for k, _ in c]


async def test_injection_rates_are_roughly_respected_and_never_change_state() -> None:
    cfg = RolloutsStageConfig(error_rate=0.2, timeout_rate=0.1, empty_rate=0.1, partial_rate=0.1)
    n = 2000
    sim, _ = make_sim(
        cfg,
        seed=3,
        reply=lambda _m: {"result": [1, 2, 3, 4], "patch": [{"op": "add", "path": "/notes/-", "value": 1}]},
    )
    for i in range(n):
        await answer_call(sim, tc("add_note", {"text": "n"}, i))  # a call that writes (a read's patch is dropped)
    kinds = Counter(r.injected for r in sim.calls)
    for kind, rate in (("error", 0.2), ("timeout", 0.1), ("empty", 0.1), ("partial", 0.1), ("none", 0.5)):
        assert abs(kinds[kind] / n - rate) < 0.035, (kind, kinds)
    # Only the un-injected calls applied their patch.
    assert len(sim.world.doc["notes"]) == kinds["none"]
    timeouts = [r for r in sim.calls if r.injected == "timeout"]
    assert timeouts and not any(r.ok for r in timeouts)


async def test_injected_failure_messages() -> None:
    sim, pool = make_sim(RolloutsStageConfig(error_rate=0, timeout_rate=1, empty_rate=0, partial_rate=0))
    out = await answer_call(sim, tc("list_notes", {}))
    assert out.content == TIMEOUT_MESSAGE and out.record.injected == "timeout"
    assert pool.requests == []  # a timed-out call costs no model call
    sim, _ = make_sim(RolloutsStageConfig(error_rate=1, timeout_rate=0, empty_rate=0, partial_rate=0))
    out = await answer_call(sim, tc("list_notes", {}))
    assert out.content.startswith("Error 5") or out.content.startswith("Error 4")


def test_partial_results_say_so() -> None:
    import random

    rng = random.Random(0)
    cut = partial_result([1, 2, 3, 4], rng)
    assert cut["partial"] is True and 1 <= len(cut["items"]) < 4
    cut = partial_result({"total": 4, "rows": [1, 2, 3, 4]}, rng)
    assert cut["partial"] is True and len(cut["rows"]) < 4 and cut["total"] == 4
    assert "truncated" in partial_result("x" * 100, rng)


def test_argument_error_skips_broken_schemas() -> None:
    tool = {
        "function": {"name": "weird", "parameters": {"type": "object", "properties": {"a": {"type": 12}}}}
    }
    args, err = argument_error(tool, '{"a": 1}')
    assert err is None and args == {"a": 1}


def test_reply_schema_is_valid_and_accepts_typical_replies() -> None:
    schema = reply_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {
        "result": {"orders": [{"id": "A1", "items": ["mug"]}]},
        "patch": [{"op": "replace", "path": "/orders/A1/status", "value": "cancelled"}],
    }
    jsonschema.validate(good, schema)
    ToolSimReply.model_validate(good)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"result": 1, "patch": [{"op": "add", "path": "no-slash", "value": 1}]}, schema)


@dataclass
class FakeRealResult:
    content: str
    is_error: bool = False
    server: str = "pypi/mcp-server-time"


class FakeHub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def tools(self) -> list[Any]:
        return [TOOLS[0]]

    async def call(self, name: str, arguments: dict[str, Any]) -> FakeRealResult:
        self.calls.append((name, arguments))
        return FakeRealResult(content='{"datetime": "2026-11-25T15:00:00Z"}')

    def snapshot(self) -> dict[str, Any]:
        return {}


async def test_hub_tools_are_called_for_real_only_when_real_exec_is_on() -> None:
    hub = FakeHub()
    sim, pool = make_sim(hub=hub)
    out = await answer_call(sim, tc("get_time", {"timezone": "UTC"}))
    assert out.record.mode == "real" and hub.calls == [("get_time", {"timezone": "UTC"})]
    assert pool.requests == []
    off = NO_FAULTS.model_copy(update={"real_exec": False})
    sim, pool = make_sim(off, hub=hub)
    out = await answer_call(sim, tc("get_time", {"timezone": "UTC"}))
    assert out.record.mode == "simulated" and len(pool.requests) == 1


async def test_run_python_goes_to_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.runtime import sandbox

    async def fake_run(code: str, **_: Any) -> sandbox.SandboxResult:
        return sandbox.SandboxResult(stdout="4\n", stderr="", exit_code=0, duration_s=0.1)

    monkeypatch.setattr(sandbox, "run_python_async", fake_run)
    sim, pool = make_sim(tools=[*TOOLS, RUN_PYTHON_TOOL])
    out = await answer_call(sim, tc("run_python", {"code": "print(2+2)"}))
    assert out.record.mode == "sandbox" and out.record.ok
    assert json.loads(out.content)["stdout"] == "4\n"
    assert pool.requests == []


async def test_run_python_is_simulated_when_the_sandbox_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from synth.runtime import sandbox

    async def unavailable(code: str, **_: Any) -> sandbox.SandboxResult:
        raise sandbox.SandboxUnavailable("no namespaces here")

    monkeypatch.setattr(sandbox, "run_python_async", unavailable)
    sim, pool = make_sim(
        tools=[*TOOLS, RUN_PYTHON_TOOL],
        reply=lambda _m: {"result": {"stdout": "4\n", "exit_code": 0}, "patch": []},
    )
    out = await answer_call(sim, tc("run_python", {"code": "print(2+2)"}))
    assert out.record.mode == "simulated" and len(pool.requests) == 1


def test_module_exports() -> None:
    assert RUN_PYTHON_TOOL["function"]["name"] == tool_sim.RUN_PYTHON


@pytest.mark.sandbox
async def test_run_python_runs_for_real_in_the_sandbox() -> None:
    sim, pool = make_sim(tools=[*TOOLS, RUN_PYTHON_TOOL])
    out = await answer_call(sim, tc("run_python", {"code": "import sys\nprint(6 * 7)\nsys.exit(3)"}))
    body = json.loads(out.content)
    assert out.record.mode == "sandbox" and not out.record.ok
    assert body["stdout"].strip() == "42" and body["exit_code"] == 3
    assert pool.requests == []
