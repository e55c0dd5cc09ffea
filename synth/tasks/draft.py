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
    value: str = Field(max_length=120, description="The fact itself; the user says it only when asked.")


class ExpectedCall(BaseModel):
    name: str = Field(description="Name of one of the agent's tools that a correct assistant calls.")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Key arguments of that call as a JSON object (only the ones that must have these values).",
    )


class StateExpectation(BaseModel):
    path: str = Field(
        max_length=120,
        description="JSON Pointer into the world state after a correct episode, e.g. '/orders/A12/status'.",
    )
    value: Scalar = Field(description="The value that must be found there.")


class DraftCriterion(BaseModel):
    description: str = Field(
        max_length=200, description="One success criterion specific to this task, checkable from the transcript."
    )
    required: bool = Field(default=False, description="True when failing it means the task failed.")


class TaskDraft(BaseModel):
    """One task for one agent, as the generator model writes it."""

    user_goal: str = Field(
        max_length=400, description="What the user wants, in the user's own words, as the first message."
    )
    persona: str = Field(max_length=200, description="Who the user is and how they talk, in one sentence.")
    hidden_details: list[HiddenDetail] = Field(
        default_factory=list, max_length=4, description="Details the user reveals only when the assistant asks."
    )
    initial_state: dict[str, Any] = Field(
        default_factory=dict,
        description="The world the tools see at the start, as a JSON object (records the tools read or change).",
    )
    expected_calls: list[ExpectedCall] = Field(
        default_factory=list, max_length=8, description="The tool calls a correct assistant makes, in order."
    )
    expected_state: list[StateExpectation] = Field(
        default_factory=list, max_length=4, description="Values the world state must hold after a correct episode."
    )
    report_values: list[str] = Field(
        default_factory=list,
        max_length=4,
        description="Short exact values (names, numbers, ids) the final answer must mention.",
    )
    criteria: list[DraftCriterion] = Field(
        default_factory=list, max_length=4, description="Success criteria specific to this task."
    )


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace ``$ref``s into ``$defs`` by the definitions themselves.

    Not every guided-decoding backend resolves references, and a flat schema is also easier to tighten in place.
    Pydantic's schemas here are not recursive, so plain substitution terminates.
    """
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                merged = {**copy.deepcopy(defs[ref.removeprefix("#/$defs/")]),
                          **{k: v for k, v in node.items() if k != "$ref"}}
                return resolve(merged)
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def draft_json_schema(tool_names: list[str], min_calls: int, max_calls: int) -> dict[str, Any]:
    """TaskDraft's schema with tool names as an enum and the call count bounded by the difficulty's template.

    With no tools (or a template that allows none), ``expected_calls`` must be empty, since an enum with no
    members is not a valid schema.
    """
    schema = inline_refs(TaskDraft.model_json_schema())
    props = schema["properties"]
    calls = props["expected_calls"]
    if not tool_names or max_calls == 0:
        props["expected_calls"] = {"type": "array", "maxItems": 0, "description": calls.get("description", "")}
    else:
        calls["items"]["properties"]["name"]["enum"] = sorted(set(tool_names))
        calls["minItems"] = min_calls
        calls["maxItems"] = max_calls
    # Guided decoding only stops a field when the schema says it must be present; ask for every field so the
    # model neither skips the ones we derive checks from nor invents keys of its own.
    schema["required"] = list(props)
    schema["additionalProperties"] = False
    return schema
