"""Turn a generator draft into a task's rubric: criteria from ``rubrics/``, code checks from the draft.

Whatever code can decide (a call made, its arguments, a reported value, the final world state) becomes a
``CodeCheck`` so the judge model is never asked about it. Draft parts that could never be checked (arguments
the tool does not take, malformed JSON Pointers) are dropped here with a note, rather than failing every
rollout later.
"""

from __future__ import annotations

from typing import Any

import jsonpointer
import jsonschema

from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from synth.tasks.draft import ExpectedCall, TaskDraft
from synth.tasks.rubrics import RubricLibrary


class DraftInvalid(ValueError):
    """The draft fits the schema but not this agent (e.g. a tool it does not have)."""


def tool_index(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tool name -> its parameters JSON Schema, from OpenAI-form tools."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools:
        fn = tool.get("function", tool)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out[fn["name"]] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _checkable_arguments(call: ExpectedCall, params: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Keep only arguments the tool declares and whose value fits the declared schema."""
    props = params.get("properties")
    if not isinstance(props, dict):
        return dict(call.arguments)
    kept: dict[str, Any] = {}
    for key, value in call.arguments.items():
        if key not in props:
            notes.append(f"{call.name}: dropped argument {key!r} (the tool has no such parameter)")
            continue
        try:
            jsonschema.validate(value, props[key])
        except jsonschema.ValidationError as exc:
            notes.append(f"{call.name}: dropped argument {key!r}: {exc.message}")
            continue
        except jsonschema.SchemaError:
            pass  # a tool with a broken schema still gets its argument checked by equality
        kept[key] = value
    return kept


def _call_checks(
    draft: TaskDraft, tools: dict[str, dict[str, Any]], require_ok: bool, notes: list[str]
) -> list[CodeCheck]:
    checks: list[CodeCheck] = []
    seen: set[str] = set()
    for i, call in enumerate(draft.expected_calls, start=1):
        if call.name not in tools:
            raise DraftInvalid(
                f"expected_calls[{i - 1}].name: {call.name!r} is not a tool of this agent; "
                f"tools: {sorted(tools)}"
            )
        args = _checkable_arguments(call, tools[call.name], notes)
        key = f"{call.name}:{sorted(args.items(), key=lambda kv: kv[0])!r}"
        if key in seen:
            continue
        seen.add(key)
        if args:
            checks.append(
                CodeCheck(
                    id=f"call_{i}_{call.name}",
                    kind="tool_called_with",
                    tool=call.name,
                    arguments=args,
                    require_ok=require_ok,
                    description=f"calls {call.name} with at least {args}",
                )
            )
        else:
            checks.append(
                CodeCheck(
                    id=f"call_{i}_{call.name}",
                    kind="tool_called",
                    tool=call.name,
                    require_ok=require_ok,
                    description=f"calls {call.name}",
                )
            )
    return checks


def _state_checks(draft: TaskDraft, notes: list[str]) -> list[CodeCheck]:
    checks = []
    for i, exp in enumerate(draft.expected_state, start=1):
        try:
            jsonpointer.JsonPointer(exp.path)
        except jsonpointer.JsonPointerException as exc:
            notes.append(f"expected_state[{i - 1}]: dropped, {exp.path!r} is not a JSON Pointer ({exc})")
            continue
        checks.append(
            CodeCheck(
                id=f"state_{i}",
                kind="state_equals",
                path=exp.path,
                value=exp.value,
                description=f"final state has {exp.path} == {exp.value!r}",
            )
        )
    return checks


def _mention_checks(draft: TaskDraft) -> list[CodeCheck]:
    values = [v.strip() for v in draft.report_values if v.strip()]
    return [
        CodeCheck(
            id=f"mentions_{i}", kind="final_mentions", value=v, description=f"final answer mentions {v!r}"
        )
        for i, v in enumerate(dict.fromkeys(values), start=1)
    ]


def build_rubric(
    draft: TaskDraft, difficulty: str, tools: list[dict[str, Any]], library: RubricLibrary
) -> tuple[Rubric, list[str]]:
    """The rubric for a drafted task, and notes on draft parts that were dropped as uncheckable."""
    template = library.template(difficulty)
    index = tool_index(tools)
    notes: list[str] = []
    n_calls = len(draft.expected_calls)
    if not template.calls.min <= n_calls <= template.calls.max and index:
        raise DraftInvalid(
            f"expected_calls: {difficulty} tasks expect {template.calls.min}..{template.calls.max} "
            f"tool calls; the draft has {n_calls}"
        )
    checks: list[CodeCheck] = []
    for rule in template.checks:
        if rule == "expected_calls":
            checks += _call_checks(draft, index, template.require_ok, notes)
        elif rule == "no_tool_called":
            checks.append(
                CodeCheck(
                    id="no_tool_calls", kind="no_tool_called", description="the assistant calls no tool"
                )
            )
        elif rule == "final_mentions":
            checks += _mention_checks(draft)
        elif rule == "state_equals":
            checks += _state_checks(draft, notes)
    criteria = library.base_criteria(difficulty)
    criteria += [
        Criterion(id=f"task_{i}", kind="task", description=c.description.strip(), required=c.required)
        for i, c in enumerate(draft.criteria, start=1)
        if c.description.strip()
    ]
    return Rubric(criteria=criteria, checks=checks), notes
