"""The agent's step: schema-mode JSON to OpenAI messages, the typed schema and its fallback, native mode."""

from __future__ import annotations

import json
import os
import re
from types import SimpleNamespace
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from pydantic import ValidationError

from synth.agents import turn
from synth.agents.turn import AgentAction, action_schema, agent_step, reply_chars, schema_transcript
from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import LLMPool, ReplyInvalid
from synth.schemas.messages import FunctionCall, Message, ToolCall
from synth.schemas.usage import UsageByRole

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "list_cities",
            "description": "Cities known.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]
CALL_ID = re.compile(r"^call_[0-9a-f]{8}$")


class ScriptedAgentPool:
    def __init__(self, replies: list[Any]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.config = LLMConfig(max_tokens=100)

    async def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[Any],
        *,
        role: str,
        json_schema: dict[str, Any] | None = None,
        **kw: Any,
    ) -> Any:
        self.requests.append({"messages": messages, "json_schema": json_schema, "role": role, **kw})
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        raw = reply if isinstance(reply, str) else json.dumps(reply)
        try:
            return schema.model_validate_json(raw)
        except ValidationError as exc:
            raise ReplyInvalid(str(exc), raw) from exc

    async def chat(self, messages: list[dict[str, Any]], **kw: Any) -> Any:
        self.requests.append({"messages": messages, **kw})
        return SimpleNamespace(message=self.replies.pop(0))


def convo() -> list[Message]:
    return [
        Message(role="system", content="You are a weather bot."),
        Message(role="user", content="Rain in Oslo?"),
    ]


def test_typed_schema_allows_only_valid_calls() -> None:
    schema = action_schema(TOOLS, max_chars=50)
    ok = {
        "action": "call",
        "calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}},
            {"name": "list_cities", "arguments": {}},
        ],
    }
    jsonschema.validate(ok, schema)
    jsonschema.validate({"action": "answer", "content": "It rains."}, schema)
    for bad in (
        {"action": "call", "calls": [{"name": "get_weather", "arguments": {}}]},  # required city missing
        {"action": "call", "calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "x": 1}}]},
        {"action": "call", "calls": [{"name": "nope", "arguments": {}}]},
        {"action": "call", "calls": []},
        {"action": "answer", "content": "x" * 51},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    untyped = action_schema(TOOLS, typed=False)
    jsonschema.validate({"action": "call", "calls": [{"name": "get_weather", "arguments": {}}]}, untyped)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": "call", "calls": [{"name": "nope", "arguments": {}}]}, untyped)


def test_no_tools_means_answer_only() -> None:
    schema = action_schema([])
    jsonschema.validate({"action": "answer", "content": "hi"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": "call", "calls": [{"name": "x", "arguments": {}}]}, schema)


async def test_call_reply_becomes_openai_tool_calls() -> None:
    pool = ScriptedAgentPool(
        [
            {
                "action": "call",
                "calls": [
                    {"name": "get_weather", "arguments": {"city": "Oslo"}},
                    {"name": "list_cities", "arguments": {}},
                ],
            }
        ]
    )
    msg, raw = await agent_step(pool, convo(), TOOLS, seed=5, usage=UsageByRole())
    assert msg.role == "assistant" and msg.content is None
    assert msg.tool_calls is not None and [c.function.name for c in msg.tool_calls] == [
        "get_weather",
        "list_cities",
    ]
    assert all(CALL_ID.match(c.id) for c in msg.tool_calls)
    assert len({c.id for c in msg.tool_calls}) == 2
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Oslo"}
    assert raw and json.loads(raw)["action"] == "call"
    request = pool.requests[0]
    assert request["role"] == "agent" and request["seed"] == 5
    assert "get_weather" in request["messages"][0]["content"]  # tools are rendered into the system prompt
    assert request["json_schema"]["anyOf"][0]["properties"]["content"]["maxLength"] == reply_chars(pool)
    # Same seed, same ids: a re-run writes the same trajectory.
    again, _ = await agent_step(ScriptedAgentPool([json.loads(raw)]), convo(), TOOLS, seed=5)
    assert again == msg


async def test_answer_reply_becomes_content() -> None:
    pool = ScriptedAgentPool([{"action": "answer", "content": "Yes, rain."}])
    msg, _ = await agent_step(pool, convo(), TOOLS, seed=1)
    assert msg == Message(role="assistant", content="Yes, rain.")


async def test_invalid_reply_raises_with_raw() -> None:
    pool = ScriptedAgentPool(['{"action": "call", "calls": []}'])
    with pytest.raises(ReplyInvalid) as info:
        await agent_step(pool, convo(), TOOLS, seed=1)
    assert info.value.raw == '{"action": "call", "calls": []}'


def _bad_request(text: str) -> openai.BadRequestError:
    response = httpx.Response(400, request=httpx.Request("POST", "http://x/v1/chat/completions"))
    return openai.BadRequestError(text, response=response, body=None)


async def test_refused_typed_schema_falls_back_to_generic_arguments() -> None:
    turn._UNCOMPILABLE.clear()
    pool = ScriptedAgentPool(
        [
            _bad_request("Grammar error: unsupported keyword"),
            {"action": "call", "calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        ]
    )
    msg, _ = await agent_step(pool, convo(), TOOLS, seed=1)
    assert msg.tool_calls and msg.tool_calls[0].function.name == "get_weather"
    typed, generic = pool.requests[0]["json_schema"], pool.requests[1]["json_schema"]
    assert "anyOf" in typed["anyOf"][1]["properties"]["calls"]["items"]
    assert generic["anyOf"][1]["properties"]["calls"]["items"]["properties"]["arguments"] == {
        "type": "object"
    }
    # The refusal is remembered: the next step goes straight to the generic schema.
    pool.replies.append({"action": "answer", "content": "ok"})
    await agent_step(pool, convo(), TOOLS, seed=2)
    assert pool.requests[2]["json_schema"] == generic
    turn._UNCOMPILABLE.clear()


async def test_context_overflow_is_not_mistaken_for_a_schema_refusal() -> None:
    turn._UNCOMPILABLE.clear()
    pool = ScriptedAgentPool([_bad_request("This model's maximum context length is 4096 tokens")])
    with pytest.raises(openai.BadRequestError):
        await agent_step(pool, convo(), TOOLS, seed=1)
    assert len(pool.requests) == 1


def test_transcript_for_models_without_tool_roles() -> None:
    call = ToolCall(
        id="call_0000abcd", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}')
    )
    messages = [
        *convo(),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="call_0000abcd", content='{"rain": true}'),
        Message(role="assistant", content="It rains."),
        Message(role="user", content="Thanks"),
    ]
    out = schema_transcript(messages, TOOLS)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "You are a weather bot." in out[0]["content"] and "list_cities" in out[0]["content"]
    assert json.loads(out[2]["content"]) == {
        "action": "call",
        "calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
    }
    assert "get_weather" in out[3]["content"] and '{"rain": true}' in out[3]["content"]
    assert json.loads(out[4]["content"]) == {"action": "answer", "content": "It rains."}


async def test_native_mode_keeps_server_tool_calls() -> None:
    server_msg = SimpleNamespace(
        content=None,
        tool_calls=[
            SimpleNamespace(
                id="chatcmpl-tool-1",
                function=SimpleNamespace(name="get_weather", arguments='{"city":"Oslo"}'),
            )
        ],
        model_dump_json=lambda: "{}",
    )
    pool = ScriptedAgentPool([server_msg])
    msg, _ = await agent_step(pool, convo(), TOOLS, seed=1, mode="native")
    assert pool.requests[0]["tools"] == TOOLS
    assert pool.requests[0]["messages"][0] == {"role": "system", "content": "You are a weather bot."}
    assert msg.tool_calls and msg.tool_calls[0].id == "chatcmpl-tool-1"
    assert msg.tool_calls[0].function.arguments == '{"city":"Oslo"}'


def test_agent_action_is_a_discriminated_union() -> None:
    assert AgentAction.model_validate({"action": "answer", "content": "x"}).root.action == "answer"
    with pytest.raises(ValidationError):
        AgentAction.model_validate({"action": "call", "content": "x"})


# --- against the real embedded server ---



@pytest.mark.integration
async def test_real_server_accepts_the_typed_schema_and_gives_a_valid_turn(live_url: str) -> None:
    turn._UNCOMPILABLE.clear()
    # Room for a whole turn (the schema bounds its strings), so a cut-off reply is a failure, not a pass.
    pool = LLMPool(
        [EndpointConfig(base_url=live_url, api_key=os.environ.get("SYNTH_API_KEY", "EMPTY"))],
        LLMConfig(max_tokens=384, temperature=0.0, structured_retries=0),
    )
    usage = UsageByRole()
    try:
        msg, raw = await agent_step(pool, convo(), TOOLS, seed=0, usage=usage)
    finally:
        await pool.aclose()
    assert msg.role == "assistant" and raw
    assert (msg.content is not None) != bool(msg.tool_calls)
    for call in msg.tool_calls or []:
        assert CALL_ID.match(call.id) and call.function.name in {"get_weather", "list_cities"}
        assert isinstance(json.loads(call.function.arguments), dict)
    assert usage.agent.calls == 1 and usage.agent.completion_tokens > 0
    assert not turn._UNCOMPILABLE, "the server refused the typed schema"


async def test_native_mode_refuses_arguments_that_are_not_a_json_object() -> None:
    server_msg = SimpleNamespace(
        content=None,
        tool_calls=[
            SimpleNamespace(id="t1", function=SimpleNamespace(name="get_weather", arguments="{city:"))
        ],
        model_dump_json=lambda: '{"tool_calls": "..."}',
    )
    with pytest.raises(ReplyInvalid) as info:
        await agent_step(ScriptedAgentPool([server_msg]), convo(), TOOLS, seed=1, mode="native")
    assert info.value.raw == '{"tool_calls": "..."}'


def test_tool_definitions_move_to_the_root_so_refs_resolve() -> None:
    address = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {
            "type": "function",
            "function": {
                "name": "ship",
                "description": "d",
                "parameters": {
                    "type": "object",
                    "$defs": {"Address": address},
                    "properties": {"to": {"$ref": "#/$defs/Address"}},
                    "required": ["to"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "clash",
                "description": "d",
                "parameters": {
                    "type": "object",
                    "$defs": {"Address": {"type": "string"}},
                    "properties": {"to": {"$ref": "#/$defs/Address"}},
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "odd",
                "description": "d",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a"}},
                },
            },
        },
    ]
    schema = action_schema(tools)
    assert schema["$defs"] == {"Address": address}
    branches = schema["anyOf"][1]["properties"]["calls"]["items"]["anyOf"]
    assert "$defs" not in branches[0]["properties"]["arguments"]
    assert branches[1]["properties"]["arguments"] == {"type": "object"}  # its Address differs
    assert branches[2]["properties"]["arguments"] == {"type": "object"}  # ref outside $defs
    jsonschema.validate(
        {"action": "call", "calls": [{"name": "ship", "arguments": {"to": {"city": "Oslo"}}}]}, schema
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"action": "call", "calls": [{"name": "ship", "arguments": {"to": {}}}]}, schema)


def test_tools_are_digested_into_the_system_prompt() -> None:
    from synth.agents.turn import parameter_lines

    params = {
        "type": "object",
        "properties": {
            "to": {"type": "object", "description": "Where", "properties": {"city": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mode": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "x" * 500},
        },
        "required": ["to"],
    }
    lines = parameter_lines(params)
    assert lines[0].startswith("to (object, required): Where; shape: {")
    assert lines[1] == "tags (array of string, optional)"
    assert lines[2].startswith("mode (string or null, optional): xxx") and lines[2].endswith("...")
    assert len(lines[2]) < 260
    system = schema_transcript(convo(), TOOLS)[0]["content"]
    assert 'unit (one of "c", "f", optional)' in system and "list_cities: Cities known." in system


async def test_required_tool_narrows_the_grammar_to_a_call_of_that_tool() -> None:
    call = {"action": "call", "calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    pool = ScriptedAgentPool([call])
    msg, _ = await agent_step(pool, convo(), TOOLS, seed=1, require_tool="get_weather")
    assert msg.tool_calls and msg.tool_calls[0].function.name == "get_weather"
    schema = pool.requests[0]["json_schema"]
    jsonschema.validate(call, schema)
    for other in (
        {"action": "answer", "content": "Sunny."},
        {"action": "call", "calls": [{"name": "list_cities", "arguments": {}}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(other, schema)
    # The model still reads every tool in its prompt; only the grammar narrows.
    assert "list_cities" in pool.requests[0]["messages"][0]["content"]


async def test_required_tool_is_a_named_tool_choice_in_native_mode() -> None:
    server_msg = SimpleNamespace(
        content=None,
        tool_calls=[SimpleNamespace(id="t1", function=SimpleNamespace(name="get_weather", arguments="{}"))],
        model_dump_json=lambda: "{}",
    )
    pool = ScriptedAgentPool([server_msg])
    await agent_step(pool, convo(), TOOLS, seed=1, mode="native", require_tool="get_weather")
    assert pool.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(ValueError, match="not one of the agent's tools"):
        await agent_step(pool, convo(), TOOLS, seed=1, require_tool="rm_rf")


async def test_answer_only_step_cannot_call_in_native_mode() -> None:
    server_msg = SimpleNamespace(content="It is sunny.", tool_calls=None, model_dump_json=lambda: "{}")
    pool = ScriptedAgentPool([server_msg])
    msg, _ = await agent_step(pool, convo(), TOOLS, seed=1, mode="native", answer_only=True)
    assert pool.requests[0]["tool_choice"] == "none" and pool.requests[0]["tools"] == TOOLS
    assert msg.content == "It is sunny." and not msg.tool_calls
    with pytest.raises(ValueError, match="cannot require one"):
        await agent_step(pool, convo(), TOOLS, seed=1, answer_only=True, require_tool="get_weather")


def test_free_arguments_are_bounded_so_replies_close_within_max_tokens() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "run",
            "description": "x",
            "parameters": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "port": {"type": "integer"},
                    "id": {"type": "string", "pattern": "^[a-z]+$"},
                    "small": {"type": "integer", "maximum": 10},
                },
            },
        },
    }
    schema = action_schema([tool], max_chars=300)
    args = schema["anyOf"][1]["properties"]["calls"]["items"]["anyOf"][0]["properties"]["arguments"]["properties"]
    assert args["code"]["maxLength"] == 300
    assert args["port"]["maximum"] == turn.ARGUMENT_NUMBER_BOUND and args["port"]["minimum"] < 0
    assert args["id"] == {"type": "string", "pattern": "^[a-z]+$"}  # xgrammar refuses pattern + maxLength
    assert args["small"] == {"type": "integer", "maximum": 10}
    # A reply of junk at one character a token still closes: the bound leaves room for the JSON around it.
    assert turn.reply_chars(SimpleNamespace(config=LLMConfig(max_tokens=384))) == 320


class TextPool:
    """A free-text reply; records what was sent (control flow only)."""

    def __init__(self, content: str | None) -> None:
        self.content = content
        self.requests: list[dict[str, Any]] = []
        self.config = LLMConfig(max_tokens=100)

    async def chat(self, messages: list[dict[str, Any]], **kw: Any) -> Any:
        self.requests.append({"messages": messages, **kw})
        return SimpleNamespace(content=self.content, message=SimpleNamespace(content=self.content))

    async def structured(self, *a: Any, **kw: Any) -> Any:
        raise AssertionError("a free-text step must not ask for a schema")


async def test_free_text_step_is_a_plain_chat_with_the_agents_own_prompt() -> None:
    reply = "Here:\n```python\ndef f(x):\n    return x\n```"
    pool = TextPool(reply)
    msg, raw = await agent_step(pool, convo(), TOOLS, seed=3, free_text=True)
    assert msg.role == "assistant" and msg.content == reply and not msg.tool_calls and raw == reply
    sent = pool.requests[0]
    # No schema, no tools: nothing for the server to constrain; the system prompt is the agent's, unchanged.
    assert not {"tools", "tool_choice", "response_format", "json_schema"} & set(sent)
    assert sent["messages"] == [{"role": "system", "content": "You are a weather bot."},
                                {"role": "user", "content": "Rain in Oslo?"}]
    assert sent["role"] == "agent" and sent["seed"] == 3


async def test_free_text_step_refuses_an_empty_reply_and_a_required_tool() -> None:
    with pytest.raises(ReplyInvalid, match="empty"):
        await agent_step(TextPool("  \n"), convo(), TOOLS, seed=0, free_text=True)
    with pytest.raises(ValueError, match="cannot require"):
        await agent_step(TextPool("x"), convo(), TOOLS, seed=0, free_text=True, require_tool="get_weather")


def test_text_transcript_shows_tool_turns_as_schema_mode_does() -> None:
    from synth.agents.turn import text_transcript

    call = ToolCall(id="call_00000001", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
    out = text_transcript([*convo(), Message(role="assistant", tool_calls=[call]),
                           Message(role="tool", tool_call_id="call_00000001", name="get_weather", content="rain"),
                           Message(role="assistant", content="It rains.")])
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert json.loads(out[2]["content"])["calls"][0]["arguments"] == {"city": "Oslo"}
    assert out[3]["content"] == "Tool results:\n[get_weather call_00000001] rain"
