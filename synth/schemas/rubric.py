"""Rubrics: criteria the judge scores, and checks that code decides without a model."""

from typing import Any, Literal

from pydantic import BaseModel, Field

CheckKind = Literal[
    "tool_called", "tool_called_with", "state_equals", "final_mentions", "no_tool_called", "reports_result",
    "calls_at_most", "call_made_with", "calls_in_one_turn", "only_tools_called", "answers_without_call",
]
"""``call_made_with``, ``calls_in_one_turn``, ``only_tools_called`` and ``answers_without_call`` are the checks of
the task kinds code builds (synth.tasks.kinds): their argument values must match in type too (a string "3" is not
the integer 3), where ``tool_called_with`` forgives a simulated tool's looseness about types."""


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


class CallSpec(BaseModel):
    """One call a check expects: the tool and the argument values it must carry (a subset of its arguments)."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


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
    calls: list[CallSpec] = Field(
        default_factory=list,
        description="calls_in_one_turn: the calls one assistant reply must hold, each with its argument values.")
    tools: list[str] = Field(
        default_factory=list, description="only_tools_called: the only tools the assistant may call.")
    turn: int | None = Field(
        default=None, ge=1,
        description="call_made_with / calls_in_one_turn: the user turn (1 = the opening) whose reply must make "
        "the call(s), i.e. after that user message and before the next; None: any turn.")


class Rubric(BaseModel):
    criteria: list[Criterion]
    checks: list[CodeCheck] = Field(default_factory=list)
    python_tests: str | None = Field(
        default=None,
        description="Coding tasks: asserts the assistant's code must pass, run by the judge in the sandbox.",
    )


def calls_expected_by_turn(rubric: Rubric | None) -> dict[int, int]:
    """How many calls each user turn of a code-built task expects (1 = the opening), read from its call checks:
    what lets an episode force a call only where one is expected, and let a reply make as many as expected."""
    out: dict[int, int] = {}
    for check in rubric.checks if rubric is not None else []:
        if check.kind == "call_made_with":
            n = 1
        elif check.kind == "calls_in_one_turn":
            n = len(check.calls)
        else:
            continue
        turn = check.turn or 1
        out[turn] = out.get(turn, 0) + n
    return out
