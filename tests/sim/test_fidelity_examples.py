"""The simulator change the fidelity replay pointed to: real answers of a tool shown in the prompt and shaping the
simulated result (``ToolSimulator(examples=...)``, ``result_shape``), driven by a scripted pool."""

from __future__ import annotations

import json

import jsonschema
import pytest

from synth.config import RolloutsStageConfig
from synth.schemas.messages import FunctionCall, ToolCall
from synth.sim.tool_sim import ToolExample, ToolSimulator, reply_schema, result_shape
from synth.sim.world import WorldState
from synth.tools.errors import ToolFailed
from tests.fixtures.fakes import ScriptedPool

TOOL = {"type": "function", "function": {
    "name": "get_current_time", "description": "Current time in a time zone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}}
REAL = {"timezone": "Asia/Tokyo", "datetime": "2026-12-08T08:19:34+09:00", "day_of_week": "Tuesday", "is_dst": False}
EXAMPLES = {"get_current_time": [
    ToolExample(arguments={"timezone": "Asia/Tokyo"}, result=json.dumps(REAL, indent=2)),
    ToolExample(arguments={"timezone": "Mars/Olympus"}, result="Error executing tool: Invalid timezone", ok=False),
]}  # fmt: skip
QUIET = RolloutsStageConfig(error_rate=0, timeout_rate=0, empty_rate=0, partial_rate=0, real_exec=False)


def _call(zone: str = "Europe/Paris") -> ToolCall:
    return ToolCall(id="c0", function=FunctionCall(name="get_current_time", arguments=json.dumps({"timezone": zone})))


def test_the_shape_of_a_json_answer_keeps_its_fields_and_kinds_and_allows_an_error_object() -> None:
    shape = result_shape(EXAMPLES["get_current_time"])
    assert shape is not None
    schema = reply_schema(result=shape)
    jsonschema.Draft202012Validator.check_schema(schema)
    ok = {"result": {**REAL, "timezone": "Europe/Paris"}, "patch": []}
    jsonschema.validate(ok, schema)
    jsonschema.validate({"result": {"error": "no such zone"}, "patch": []}, schema)
    for wrong in ({"time": "10:00"}, {**REAL, "is_dst": "no"}, {**REAL, "extra": 1}, "10:00 in Paris"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"result": wrong, "patch": []}, schema)


def test_a_text_answer_shapes_text_and_no_success_shapes_nothing() -> None:
    assert result_shape([ToolExample(result="[DIR] notes\n[FILE] a.md")]) == {"type": "string", "maxLength": 2000}
    assert result_shape([ToolExample(result="Error: nope", ok=False)]) is None
    assert result_shape([]) is None


async def test_examples_are_shown_and_shape_the_reply() -> None:
    pool = ScriptedPool([{"result": {**REAL, "timezone": "Europe/Paris"}, "patch": []}])
    sim = ToolSimulator([TOOL], WorldState({}), pool, QUIET, seed=0, examples=EXAMPLES)
    out = await sim.call(_call())
    assert json.loads(out.content)["timezone"] == "Europe/Paris"
    sent = pool.calls[0]
    system = sent["messages"][0]["content"]
    assert 'get_current_time({"timezone": "Asia/Tokyo"})' in system and "day_of_week" in system
    assert "(failed) Error executing tool: Invalid timezone" in system
    assert '{"error": "<why>"}' in system
    assert sent["json_schema"]["properties"]["result"] == result_shape(EXAMPLES["get_current_time"], 320)


async def test_an_error_object_is_a_failed_call_worded_as_an_error() -> None:
    pool = ScriptedPool([{"result": {"error": "unknown time zone 'Mars/Olympus'"}, "patch": []}])
    sim = ToolSimulator([TOOL], WorldState({}), pool, QUIET, seed=0, examples=EXAMPLES)
    with pytest.raises(ToolFailed, match=r"^Error: unknown time zone 'Mars/Olympus'$"):
        await sim.call(_call("Mars/Olympus"))


async def test_without_examples_the_simulator_is_as_before() -> None:
    pool = ScriptedPool([{"result": {"error": "not an error object here"}, "patch": []}])
    sim = ToolSimulator([TOOL], WorldState({}), pool, QUIET, seed=0)
    out = await sim.call(_call())
    assert json.loads(out.content) == {"error": "not an error object here"}
    sent = pool.calls[0]
    assert "Real answers" not in sent["messages"][0]["content"]
    assert sent["json_schema"]["properties"]["result"] == reply_schema(320)["properties"]["result"]
