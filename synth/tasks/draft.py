"""What the generator model writes for one task, and the JSON Schema that constrains it.

The field descriptions are the instructions the model sees through guided decoding. Lengths and counts are
bounded in the schema so a small model cannot ramble until ``max_tokens`` cuts its JSON in half.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field

Scalar = str | int | float | bool


class HiddenDetail(BaseModel):
    key: str = Field(max_length=40, description="Short name of a fact the user knows, e.g. 'order_id'.")
    value: str = Field(max_length=80, description="The fact itself; the user says it only when asked.")


class ExpectedCall(BaseModel):
    name: str = Field(description="Name of one of the agent's tools that a correct assistant calls.")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Key arguments of that call as a JSON object (only those that must have these values).",
    )


class StateExpectation(BaseModel):
    path: str = Field(
        max_length=130,
        description="JSON Pointer into the world state after a correct episode, e.g. '/orders/A12/status'.",
    )
    value: Scalar = Field(description="The value that must be found there.")


class DraftCriterion(BaseModel):
    description: str = Field(
        max_length=150,
        description="One success criterion specific to this task, checkable from the transcript.",
    )
    required: bool = Field(default=False, description="True when failing it means the task failed.")


class TaskDraft(BaseModel):
    """One task for one agent, as the generator model writes it."""

    user_goal: str = Field(
        max_length=300, description="What the user wants, in the user's own words, as the first message."
    )
    persona: str = Field(max_length=150, description="Who the user is and how they talk, in one sentence.")
    hidden_details: list[HiddenDetail] = Field(
        default_factory=list,
        max_length=4,
        description="Details the user reveals only when the assistant asks.",
    )
    initial_state: dict[str, Any] = Field(
        default_factory=dict,
        description="The world the tools see at the start, a JSON object (records the tools read or change).",
    )
    expected_calls: list[ExpectedCall] = Field(
        default_factory=list, max_length=8, description="The tool calls a correct assistant makes, in order."
    )
    expected_state: list[StateExpectation] = Field(
        default_factory=list,
        max_length=4,
        description="Values the world state must hold after a correct episode.",
    )
    report_values: list[str] = Field(
        default_factory=list,
        max_length=4,
        description="Short exact values (names, numbers, ids) the final answer must mention.",
    )
    # Two at most: each one is a slot the judge writes a quote and a score for on every judged trajectory (about
    # 70 tokens), beside the 8 core and prescriptive criteria; four made the judge's replies the run's longest.
    criteria: list[DraftCriterion] = Field(
        default_factory=list, max_length=2, description="Success criteria specific to this task."
    )


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``$ref``s into ``$defs`` by the definitions themselves.

    Not every guided-decoding backend resolves references, and a flat schema is easier to tighten in place.
    Pydantic's schemas here are not recursive, so plain substitution terminates.
    """
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {
                    **copy.deepcopy(defs[ref.removeprefix("#/$defs/")]),
                    **{k: v for k, v in node.items() if k != "$ref"},
                }
                return resolve(merged)
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


STRING_CHARS = 60
"""Longest string the generator may put in a state value, a reported value or a call argument."""

POINTER_PATTERN = r"^(/[A-Za-z0-9_.~-]{1,30}){1,4}$"
"""JSON Pointers the generator may write: plain segments only, so every one resolves the same way for us."""

NUMBER_BOUND = 1_000_000_000
"""Largest magnitude of a generated number: without a bound a small model can emit digits until max_tokens."""

_NUMBER: dict[str, Any] = {"type": "number", "minimum": -NUMBER_BOUND, "maximum": NUMBER_BOUND}
_SCALAR: dict[str, Any] = {"anyOf": [{"type": "string", "maxLength": STRING_CHARS}, _NUMBER, {"type": "boolean"}]}
# Records two levels deep ({"orders": {"A12": {"status": "shipped"}}}) with few keys each: enough for a tool's
# world, and a small model cannot spend its whole token budget on one state.
_RECORD: dict[str, Any] = {"type": "object", "additionalProperties": _SCALAR, "maxProperties": 4}
_STATE_VALUE: dict[str, Any] = {
    "anyOf": [
        _SCALAR,
        {"type": "object", "additionalProperties": {"anyOf": [_SCALAR, _RECORD]}, "maxProperties": 3},
        {"type": "array", "items": {"anyOf": [_SCALAR, _RECORD]}, "maxItems": 3},
    ]
}


def _bounded_param(prop: Any) -> dict[str, Any] | None:
    """A tool parameter's schema reduced to what guided decoding handles and a check compares; None: skip."""
    if not isinstance(prop, dict):
        return None
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str | int | float | bool) for v in enum):
        return {"enum": enum}
    kind = prop.get("type")
    if kind == "string":
        return {"type": "string", "maxLength": STRING_CHARS}
    if kind in ("integer", "number"):
        return {"type": kind, "minimum": -NUMBER_BOUND, "maximum": NUMBER_BOUND}
    if kind == "boolean":
        return {"type": kind}
    return None


def _call_schema(name: str, params: dict[str, Any]) -> dict[str, Any]:
    props = params.get("properties")
    props = props if isinstance(props, dict) else {}
    bounded = {key: b for key, prop in props.items() if (b := _bounded_param(prop)) is not None}
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [name]},
            "arguments": {
                "type": "object",
                "properties": bounded,
                "additionalProperties": False,
                "description": ExpectedCall.model_fields["arguments"].description,
            },
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _require_all(obj: dict[str, Any]) -> None:
    # Guided decoding only ends an object early where the schema allows it: ask for every field, so the model
    # neither skips the ones checks are derived from nor invents keys of its own.
    obj["required"] = list(obj["properties"])
    obj["additionalProperties"] = False


def draft_json_schema(
    tools: dict[str, dict[str, Any]],
    min_calls: int,
    max_calls: int,
    min_hidden: int = 0,
    world: bool = True,
    grounded: bool = False,
) -> dict[str, Any]:
    """TaskDraft's schema, tightened for one agent and one difficulty.

    ``tools`` maps each tool name to its parameters schema. An expected call may only name one of these tools
    (an enum per branch) with that tool's own scalar parameters; the number of calls is bounded by the
    difficulty's template. With no tools (or a template that allows none) ``expected_calls`` must be empty,
    since an empty ``anyOf`` is not a valid schema. ``world=False`` (coding tasks, checked by reference tests)
    leaves no room for a world state, expected values or values to report: the model spends no tokens on them.
    ``grounded=True``: code fixed the expected call, so the draft holds no calls, expected state or values to
    report (they would be the generator's guesses), only the wording, the persona, the world and criteria.
    """
    schema = inline_refs(TaskDraft.model_json_schema())
    props = schema["properties"]
    description = props["expected_calls"].get("description", "")
    if not tools or max_calls == 0 or grounded:
        props["expected_calls"] = {"type": "array", "maxItems": 0, "description": description}
    else:
        branches = [_call_schema(name, params) for name, params in sorted(tools.items())]
        props["expected_calls"] = {
            "type": "array",
            "items": branches[0] if len(branches) == 1 else {"anyOf": branches},
            "minItems": min_calls,
            "maxItems": max_calls,
            "description": description,
        }
    props["initial_state"] = {
        "type": "object",
        "additionalProperties": _STATE_VALUE,
        "maxProperties": 4,
        "description": props["initial_state"].get("description", ""),
    }
    state_item = props["expected_state"]["items"]["properties"]
    state_item["value"] = _SCALAR
    state_item["path"].pop("maxLength", None)  # the pattern bounds it; xgrammar refuses pattern + maxLength
    state_item["path"]["pattern"] = POINTER_PATTERN
    props["report_values"]["items"]["maxLength"] = STRING_CHARS
    props["hidden_details"]["minItems"] = min_hidden
    if not world:
        props["initial_state"]["maxProperties"] = 0
    if not world or grounded:
        props["expected_state"]["maxItems"] = 0
        props["report_values"]["maxItems"] = 0
    for key in ("hidden_details", "expected_state", "criteria"):
        _require_all(props[key]["items"])
    _require_all(schema)
    return schema
