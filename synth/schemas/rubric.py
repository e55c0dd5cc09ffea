"""Rubrics: criteria the judge scores, and checks that code decides without a model."""

from typing import Any, Literal

from pydantic import BaseModel, Field

CheckKind = Literal[
    "tool_called", "tool_called_with", "state_equals", "final_mentions", "no_tool_called", "reports_result",
    "calls_at_most",
]


EvidenceSource = Literal["assistant", "assistant_call", "tool", "user"]
"""Parts of a transcript: the assistant's text, its tool calls, tool results, the user's messages."""
EVIDENCE_LABELS: dict[str, str] = {
    "assistant": "the assistant's messages",
    "assistant_call": "the assistant's tool calls",
    "tool": "tool results",
    "user": "the user's messages",
}


class Criterion(BaseModel):
    id: str
    kind: Literal["core", "prescriptive", "task"] = "task"
    description: str
    weight: float = 1.0
    required: bool = Field(default=False, description="Failing a required criterion fails the trajectory.")
    evidence_from: list[EvidenceSource] | None = Field(
        default=None,
        description="Where the judge's quote must come from (e.g. the assistant's own text for fluency); "
        "None: anywhere in the transcript.",
    )


class CodeCheck(BaseModel):
    """A criterion that code can decide: a call made, a call's arguments, the final world state, a reported value."""

    id: str
    kind: CheckKind
    description: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict, description="Subset the call's arguments must contain.")
    path: str | None = Field(default=None, description="JSON Pointer into the final world state.")
    value: Any = None
    require_ok: bool = Field(
        default=False,
        description="tool_called/tool_called_with: count only calls whose tool result succeeded (recovery tasks).",
    )


class Rubric(BaseModel):
    criteria: list[Criterion]
    checks: list[CodeCheck] = Field(default_factory=list)
    python_tests: str | None = Field(
        default=None,
        description="Coding tasks: asserts the assistant's code must pass, run by the judge in the sandbox.",
    )
