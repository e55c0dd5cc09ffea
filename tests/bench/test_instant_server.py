"""The instant endpoint answers each request with a reply valid for it: an instance of the request's JSON Schema
(checked with jsonschema and with the pydantic model the pipeline validates it with), or a call of a listed tool
with arguments valid for its parameters; the same request always gets the same reply; a real HTTP round trip
through ``LLMPool`` works and ``/stats`` counts what was asked."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest
from pydantic import BaseModel

from synth.agents.generate import AgentDraft
from synth.agents.turn import AgentAction, action_schema
from synth.bench import instant_server
from synth.bench.instant_server import SchemaSampler, digest, reply
from synth.config import EndpointConfig, LLMConfig
from synth.judge.judge import judge_json_schema
from synth.llm.client import LLMPool, closed_schema
from synth.schemas.verdict import JudgeReply
from synth.sim.tool_sim import ToolSimReply
from synth.sim.user import UserReply
from tests.fixtures.cluster import free_port

TOOLS = [
    {"type": "function", "function": {"name": "get_order", "description": "Look up an order.", "parameters": {
        "type": "object", "properties": {"order_id": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                                         "limit": {"type": "integer", "minimum": 1, "maximum": 5}},
        "required": ["order_id"]}}},
    {"type": "function", "function": {"name": "cancel", "description": "Cancel it.", "parameters": {
        "type": "object", "properties": {"reason": {"enum": ["late", "wrong"]},
                                         "items": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["reason", "items"]}}},
]


def _request(schema: dict, name: str = "S", seed: int = 0) -> dict:
    return {"model": "m", "seed": seed, "messages": [{"role": "user", "content": f"hi {seed}"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}}


@pytest.mark.parametrize("model", [AgentDraft, UserReply, ToolSimReply, JudgeReply])
def test_replies_fit_the_pipelines_own_schemas(model: type[BaseModel]) -> None:
    schema = closed_schema(model.model_json_schema())
    for seed in range(20):
        content = reply(_request(schema, model.__name__, seed))["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(content), schema)
        model.model_validate_json(content)


def test_agent_action_covers_both_branches_with_valid_arguments() -> None:
    schema = action_schema(TOOLS, max_chars=200)
    kinds = set()
    for seed in range(40):
        content = reply(_request(schema, "AgentAction", seed))["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(content), schema)
        action = AgentAction.model_validate_json(content).root
        kinds.add(action.action)
    assert kinds == {"answer", "call"}  # the mix of answers and tool calls a real agent gives


def test_judge_schema_with_one_slot_per_criterion() -> None:
    from synth.tasks.rubrics import default_library

    criteria = default_library().core[:3]
    schema = judge_json_schema(criteria)
    content = json.loads(reply(_request(schema, "JudgeReply"))["choices"][0]["message"]["content"])
    jsonschema.validate(content, schema)
    assert [s["criterion_id"] for s in content["scores"]] == [c.id for c in criteria]


def test_native_tool_calls_name_a_listed_tool_with_valid_arguments() -> None:
    calls = 0
    for seed in range(30):
        body = {"model": "m", "seed": seed, "messages": [{"role": "user", "content": "x"}], "tools": TOOLS}
        message = reply(body)["choices"][0]["message"]
        for call in message.get("tool_calls") or []:
            calls += 1
            params = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == call["function"]
                          ["name"])
            jsonschema.validate(json.loads(call["function"]["arguments"]), params)
    assert calls >= 5


def test_same_request_same_reply_and_digest_ignores_arrival() -> None:
    body = _request(closed_schema(UserReply.model_json_schema()), seed=3)
    assert reply(body)["choices"] == reply(json.loads(json.dumps(body)))["choices"]
    assert digest(body) == digest({**body, "max_tokens": 9})  # not part of what identifies the call
    assert digest(body) != digest({**body, "seed": 4})


def test_sampler_handles_refs_bounds_and_tuples() -> None:
    schema = {"$defs": {"Item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3,
                                                                         "maximum": 3}}, "required": ["n"]}},
              "type": "object", "properties": {
                  "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "minItems": 2, "maxItems": 2},
                  "pair": {"type": "array", "prefixItems": [{"const": "a"}, {"type": "boolean"}], "items": False,
                           "minItems": 2, "maxItems": 2},
                  "text": {"type": "string", "minLength": 50, "maxLength": 60},
                  "maybe": {"anyOf": [{"type": "null"}, {"type": "number", "minimum": 1, "maximum": 2}]}},
              "required": ["items", "pair", "text", "maybe"]}
    for seed in range(10):
        value = SchemaSampler(schema, random.Random(seed)).sample()
        jsonschema.validate(value, schema)
        assert value["items"] == [{"n": 3}, {"n": 3}] and value["pair"][0] == "a"


async def test_a_real_round_trip_through_the_pool_is_counted() -> None:
    port = free_port()
    with instant_server.running(port):
        pool = LLMPool([EndpointConfig(base_url=instant_server.base_url(port))], LLMConfig())
        got = await pool.structured([{"role": "user", "content": "hello"}], UserReply, role="user_sim", seed=1)
        assert isinstance(got, UserReply)
        await pool.structured([{"role": "user", "content": "hello"}], UserReply, role="user_sim", seed=1)
        await pool.aclose()
        stats = instant_server.get_stats(port)
    assert stats["requests"] == 2 and list(stats["by_digest"].values()) == [2]
