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
from synth.sim.tool_sim import RUN_PYTHON
from synth.tasks.coding import CodingProblem
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


FREE_TEXT_ARGUMENTS = frozenset({"code", "source", "script", "program", "content", "body", "text", "message"})
"""Parameters whose value is prose or a program: a correct call need not repeat the draft's wording."""

FREE_TEXT_CHARS = 40


def _free_text(key: str, value: Any) -> bool:
    if key.lower() in FREE_TEXT_ARGUMENTS:
        return True
    return isinstance(value, str) and ("\n" in value or len(value) > FREE_TEXT_CHARS)


def _checkable_arguments(call: ExpectedCall, params: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Keep only arguments a correct call must repeat: declared by the tool, fitting its schema, not free text."""
    props = params.get("properties")
    if not isinstance(props, dict):
        props = {}
    kept: dict[str, Any] = {}
    for key, value in call.arguments.items():
        if _free_text(key, value):
            notes.append(f"{call.name}: dropped argument {key!r} (free text is not matched exactly)")
            continue
        if not params.get("properties"):
            kept[key] = value  # a tool that declares no parameters: nothing to hold the key against
            continue
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
    seen: set[str] = set()
    for i, exp in enumerate(draft.expected_state, start=1):
        if exp.path in seen:
            # A second value for the same place is a repeat or a contradiction: either way the first stands.
            notes.append(f"expected_state[{i - 1}]: dropped, {exp.path} is already expected")
            continue
        try:
            jsonpointer.JsonPointer(exp.path)
        except jsonpointer.JsonPointerException as exc:
            notes.append(f"expected_state[{i - 1}]: dropped, {exp.path!r} is not a JSON Pointer ({exc})")
            continue
        seen.add(exp.path)
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


def _result_checks(calls: list[ExpectedCall]) -> list[CodeCheck]:
    return [
        CodeCheck(id=f"reports_{call.name}", kind="reports_result", tool=call.name,
                  description=f"the final answer reports a value from {call.name}'s result")
        for call in {c.name: c for c in calls}.values()
    ]


def _sandbox_check(index: dict[str, dict[str, Any]]) -> list[CodeCheck]:
    if RUN_PYTHON not in index:
        return []
    return [
        CodeCheck(
            id=f"calls_{RUN_PYTHON}",
            kind="tool_called",
            tool=RUN_PYTHON,
            require_ok=True,
            description=f"runs the program with {RUN_PYTHON} (the sandbox) and gets a result",
        )
    ]


def build_rubric(
    draft: TaskDraft,
    difficulty: str,
    tools: list[dict[str, Any]],
    library: RubricLibrary,
    problem: CodingProblem | None = None,
    grounded: ExpectedCall | None = None,
) -> tuple[Rubric, list[str]]:
    """The rubric for a drafted task, and notes on draft parts that were dropped as uncheckable.

    ``problem``: the coding problem the task was written around; its reference tests become the rubric's
    python tests. ``grounded``: the call code chose (synth.tasks.grounded); it replaces the draft's calls, and the
    draft's expected state and values to report (the generator's guesses about a world it does not run) are
    not used."""
    template = library.template(difficulty)
    if grounded is not None:
        draft = draft.model_copy(update={"expected_calls": [grounded], "expected_state": [], "report_values": []})
    index = tool_index(tools)
    notes: list[str] = []
    if not draft.user_goal.strip():
        raise DraftInvalid("user_goal: empty; a task needs a request to start from")
    n_hidden = len([d for d in draft.hidden_details if d.key.strip()])
    if n_hidden < template.min_hidden_details:
        raise DraftInvalid(
            f"hidden_details: {difficulty} tasks need at least {template.min_hidden_details} detail(s) "
            f"the user reveals only when asked; the draft has {n_hidden}"
        )
    n_calls = len(draft.expected_calls)
    if not template.calls.min <= n_calls <= template.calls.max and index:
        raise DraftInvalid(
            f"expected_calls: {difficulty} tasks expect {template.calls.min}..{template.calls.max} "
            f"tool calls; the draft has {n_calls}"
        )
    checks: list[CodeCheck] = []
    python_tests: str | None = None
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
        elif rule == "python_tests":
            if problem is None:
                raise DraftInvalid(f"{difficulty} tasks run python tests, so they need a coding problem")
            python_tests = problem.tests
        elif rule == "sandbox_called":
            checks += _sandbox_check(index)
        elif rule == "call_budget":
            checks.append(CodeCheck(
                id="call_budget", kind="calls_at_most", value=template.calls.max,
                description=f"at most {template.calls.max} successful tool call(s); a failed call may be retried"))
        elif rule == "reports_result":
            checks += _result_checks([c for c in draft.expected_calls if c.name in index])
    criteria = library.base_criteria(difficulty)
    criteria += [
        Criterion(id=f"task_{i}", kind="task", description=c.description.strip(), required=c.required)
        for i, c in enumerate(draft.criteria, start=1)
        if c.description.strip()
    ]
    return Rubric(criteria=criteria, checks=checks, python_tests=python_tests), notes
