"""Code checks: the parts of a rubric that code decides from the trajectory, with no model involved.

Every check reads the OpenAI-form messages (assistant ``tool_calls``), the ``CallRecord``s (how each call was
answered) and the final world state. A check never raises: a malformed check or trajectory fails that check
with a detail saying why, so one bad row cannot stop the judge stage.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonpointer
import jsonschema
import jsonschema.exceptions

from synth.schemas.records import TrajectoryRecord
from synth.schemas.rubric import CodeCheck, Rubric
from synth.schemas.verdict import CheckResult
from synth.text import REPORTABLE_MIN_CHARS, as_number, mentions, normalize


@dataclass
class MadeCall:
    """One tool call the assistant made, with its parsed arguments and whether its result succeeded."""

    id: str
    name: str
    arguments: dict[str, Any] | None  # None: the arguments were not a JSON object
    ok: bool
    result: str | None = None  # the tool message that answered it
    schema_error: str | None = None  # why the arguments fail the tool's JSON Schema; None: they pass or no schema


@functools.lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Any:
    """A compiled validator per distinct schema; None for a schema that is itself broken (it cannot judge)."""
    schema = json.loads(schema_json)
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError:
        return None
    return cls(schema)


def tool_parameters(tools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each OpenAI-form tool's name -> its parameters' JSON Schema."""
    out = {}
    for tool in tools:
        fn = tool.get("function", tool)
        if isinstance(fn, dict) and fn.get("name"):
            out[fn["name"]] = fn.get("parameters") or {"type": "object"}
    return out


def schema_error(parameters: dict[str, Any], arguments: dict[str, Any] | None) -> str | None:
    """Why ``arguments`` fail the tool's ``parameters`` schema, types included (``"false"`` is no boolean), or None.

    Strict where ``values_match`` forgives: a call the tool's own schema refuses is not the call the task asked
    for, whatever a lenient server or simulator made of it. A schema that is itself broken checks nothing."""
    if arguments is None:
        return "the arguments are not a JSON object"
    validator = _validator(json.dumps(parameters, sort_keys=True, default=str))
    if validator is None:
        return None
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" (at '{where}')" if where else "")


def made_calls(traj: TrajectoryRecord) -> list[MadeCall]:
    records = {c.tool_call_id: c for c in traj.calls}
    schemas = tool_parameters(traj.tools)
    results = {m.tool_call_id: m.content for m in traj.messages if m.role == "tool" and m.tool_call_id}
    out = []
    for msg in traj.messages:
        if msg.role != "assistant":
            continue
        for tc in msg.tool_calls or []:
            try:
                args: dict[str, Any] | None = tc.function.parsed_arguments()
            except ValueError:  # json.JSONDecodeError is a ValueError too
                args = None
            rec = records.get(tc.id)
            # A call with no record was never answered by the tool layer: it cannot count as a success.
            ok = rec is not None and rec.ok and rec.mode not in ("schema_error", "unknown_tool")
            params = schemas.get(tc.function.name)
            invalid = schema_error(params, args) if params is not None else None
            out.append(MadeCall(tc.id, tc.function.name, args, ok, results.get(tc.id), invalid))
    return out


def final_answer(traj: TrajectoryRecord) -> str | None:
    """The text of the last assistant turn, if that turn answers (has text and calls no tool)."""
    for msg in reversed(traj.messages):
        if msg.role == "assistant":
            if msg.tool_calls or not (msg.content or "").strip():
                return None
            return msg.content
    return None


def values_match(expected: Any, actual: Any, *, subset: bool) -> bool:
    """Equality that forgives what a model or simulator varies without changing meaning.

    Strings compare case- and whitespace-insensitively; numbers numerically (1 == 1.0, and "42" == 42 since
    simulated tools are loose about types); with ``subset``, an expected object may leave keys out.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        if not subset and set(expected) != set(actual):
            return False
        return all(k in actual and values_match(v, actual[k], subset=subset) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(values_match(e, a, subset=subset) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return _boolean(expected) is not None and _boolean(expected) == _boolean(actual)
    num_e, num_a = as_number(expected), as_number(actual)
    if num_e is not None and num_a is not None:
        return num_e == num_a
    if isinstance(expected, str) and isinstance(actual, str):
        return normalize(expected) == normalize(actual)
    return bool(expected == actual)


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and normalize(value) in ("true", "false"):
        return normalize(value) == "true"
    return None


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _calls_of(calls: list[MadeCall], check: CodeCheck) -> tuple[list[MadeCall], str]:
    named = [c for c in calls if c.name == check.tool]
    if not check.require_ok:
        return named, ""
    good = [c for c in named if c.ok]
    failed = len(named) - len(good)
    return good, (f" ({failed} call(s) to it failed and do not count)" if failed else "")


def _tool_called(check: CodeCheck, calls: list[MadeCall]) -> CheckResult:
    if not check.tool:
        return _misconfigured(check, "needs 'tool'")
    hits, why = _calls_of(calls, check)
    if hits:
        return CheckResult(check_id=check.id, passed=True, detail=f"{check.tool} called {len(hits)} time(s)")
    made = sorted({c.name for c in calls}) or "no tools"
    return CheckResult(
        check_id=check.id,
        passed=False,
        detail=f"{check.tool} was never called{why}; the assistant called {made}",
    )


def _tool_called_with(check: CodeCheck, calls: list[MadeCall]) -> CheckResult:
    if not check.tool:
        return _misconfigured(check, "needs 'tool'")
    hits, why = _calls_of(calls, check)
    if not hits:
        made = sorted({c.name for c in calls}) or "no tools"
        return CheckResult(
            check_id=check.id,
            passed=False,
            detail=f"{check.tool} was never called{why}; the assistant called {made}",
        )
    for call in hits:
        if (call.arguments is not None and call.schema_error is None
                and values_match(check.arguments, call.arguments, subset=True)):
            return CheckResult(
                check_id=check.id, passed=True, detail=f"{check.tool} called with {_short(call.arguments)}"
            )

    def seen_one(c: MadeCall) -> str:
        if c.arguments is None:
            return "<arguments not a JSON object>"
        return _short(c.arguments) + (f" (fails the tool's schema: {c.schema_error})" if c.schema_error else "")

    seen = "; ".join(seen_one(c) for c in hits)
    return CheckResult(
        check_id=check.id,
        passed=False,
        detail=f"{check.tool} never called with {_short(check.arguments)}{why}; calls had: {seen}",
    )


def _no_tool_called(check: CodeCheck, calls: list[MadeCall]) -> CheckResult:
    hits = [c for c in calls if check.tool is None or c.name == check.tool]
    if not hits:
        target = check.tool or "any tool"
        return CheckResult(check_id=check.id, passed=True, detail=f"no call to {target}")
    names = ", ".join(c.name for c in hits)
    return CheckResult(check_id=check.id, passed=False, detail=f"{len(hits)} forbidden call(s): {names}")


def _state_equals(check: CodeCheck, state: dict[str, Any]) -> CheckResult:
    if check.path is None:
        return _misconfigured(check, "needs 'path' (a JSON Pointer)")
    try:
        actual = jsonpointer.resolve_pointer(state, check.path)
    except jsonpointer.JsonPointerException as exc:
        keys = sorted(state)[:10]
        return CheckResult(
            check_id=check.id,
            passed=False,
            detail=f"{check.path} not in the final state ({exc}); top-level keys: {keys}",
        )
    if values_match(check.value, actual, subset=False):
        return CheckResult(check_id=check.id, passed=True, detail=f"{check.path} == {_short(actual)}")
    return CheckResult(
        check_id=check.id,
        passed=False,
        detail=f"{check.path} is {_short(actual)}, expected {_short(check.value)}",
    )


def _final_mentions(check: CodeCheck, answer: str | None) -> CheckResult:
    if check.value is None or str(check.value).strip() == "":
        return _misconfigured(check, "needs 'value'")
    if answer is None:
        return CheckResult(check_id=check.id, passed=False, detail="no final assistant answer to look in")
    if mentions(answer, check.value):
        return CheckResult(
            check_id=check.id, passed=True, detail=f"final answer mentions {_short(check.value)}"
        )
    return CheckResult(
        check_id=check.id,
        passed=False,
        detail=f"final answer does not mention {_short(check.value)}: {_short(answer)}",
    )


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def reportable_values(result: str | None, arguments: dict[str, Any] | None) -> list[Any]:
    """Values in a tool's result that an answer reporting it would mention: its scalar leaves (or the whole text
    when it is not JSON), less booleans, short strings, and the call's own arguments (repeating the request
    proves nothing)."""
    if not result or not result.strip():
        return []
    try:
        parsed: Any = json.loads(result)
    except ValueError:
        parsed = result.strip()
    asked = {normalize(str(v)) for v in _leaves(arguments or {})}
    out = []
    for leaf in _leaves(parsed):
        if leaf is None or isinstance(leaf, bool):
            continue
        if isinstance(leaf, str) and len(leaf.strip()) < REPORTABLE_MIN_CHARS:
            continue
        if isinstance(leaf, str) and len(leaf) > 200:
            continue  # prose is paraphrased, not quoted
        if normalize(str(leaf)) in asked:
            continue
        out.append(leaf)
    return out


def _reports_result(check: CodeCheck, calls: list[MadeCall], answer: str | None) -> CheckResult:
    if not check.tool:
        return _misconfigured(check, "needs 'tool'")
    good = [c for c in calls if c.name == check.tool and c.ok]
    if not good:
        return CheckResult(check_id=check.id, passed=False,
                           detail=f"no successful result of {check.tool} to report")
    if answer is None:
        return CheckResult(check_id=check.id, passed=False, detail="no final assistant answer to look in")
    values = reportable_values(good[-1].result, good[-1].arguments)
    if not values:
        # Nothing in the result to quote (an empty list, "done"): the call check alone speaks for the outcome.
        return CheckResult(check_id=check.id, passed=True,
                           detail=f"{check.tool}'s result holds no value to report: {_short(good[-1].result)}")
    hit = next((v for v in values if mentions(answer, v)), None)
    if hit is not None:
        return CheckResult(check_id=check.id, passed=True,
                           detail=f"final answer reports {_short(hit)} from {check.tool}'s result")
    return CheckResult(check_id=check.id, passed=False,
                       detail=f"final answer mentions none of {check.tool}'s result values "
                              f"{_short(values)}: {_short(answer)}")


def _calls_at_most(check: CodeCheck, calls: list[MadeCall]) -> CheckResult:
    limit = as_number(check.value)
    if limit is None or limit < 0:
        return _misconfigured(check, "needs a number 'value'")
    good = [c.name for c in calls if c.ok]
    if len(good) <= limit:
        return CheckResult(check_id=check.id, passed=True, detail=f"{len(good)} successful call(s), at most {limit:g}")
    return CheckResult(check_id=check.id, passed=False,
                       detail=f"{len(good)} successful calls ({', '.join(good)}), more than {limit:g}: "
                              "the same work repeated")


def _misconfigured(check: CodeCheck, why: str) -> CheckResult:
    return CheckResult(check_id=check.id, passed=False, detail=f"check misconfigured: {check.kind} {why}")


def run_check(check: CodeCheck, traj: TrajectoryRecord, calls: list[MadeCall] | None = None) -> CheckResult:
    calls = made_calls(traj) if calls is None else calls
    if check.kind == "tool_called":
        return _tool_called(check, calls)
    if check.kind == "tool_called_with":
        return _tool_called_with(check, calls)
    if check.kind == "no_tool_called":
        return _no_tool_called(check, calls)
    if check.kind == "state_equals":
        return _state_equals(check, traj.final_state)
    if check.kind == "final_mentions":
        return _final_mentions(check, final_answer(traj))
    if check.kind == "calls_at_most":
        return _calls_at_most(check, calls)
    if check.kind == "reports_result":
        return _reports_result(check, calls, final_answer(traj))
    if check.kind in KIND_CHECKS:
        return KIND_CHECKS[check.kind](check, traj, calls)
    return _misconfigured(check, "is not a known check kind")


# The checks of the task kinds code builds (synth.tasks.kinds). Their argument values must match in type as well:
# a request that says "3 km" is answered by the number 3, and "3" (a string) is a call the tool's schema refuses.


def typed_match(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` carries ``expected``: objects as a subset (the call may add optional arguments), lists
    with the same items in any order (the request names them in one order, and none of these tasks asks for one),
    numbers by value but only as numbers, booleans only as booleans, strings case- and whitespace-insensitively,
    and ISO date-times by the moment they name ("2026-03-05T09:00" is "2026-03-05T09:00:00")."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and typed_match(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return False
        left = list(actual)
        for item in expected:
            hit = next((i for i, a in enumerate(left) if typed_match(item, a)), None)
            if hit is None:
                return False
            left.pop(hit)
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float):
        return isinstance(actual, int | float) and float(actual) == float(expected)
    if isinstance(expected, str):
        return isinstance(actual, str) and (normalize(expected) == normalize(actual) or _same_moment(expected, actual))
    return bool(expected == actual)


def _same_moment(expected: str, actual: str) -> bool:
    if "T" not in expected:
        return False  # a date is written one way; a date-time for it is another value
    try:
        want, got = dt.datetime.fromisoformat(expected), dt.datetime.fromisoformat(actual.replace("Z", "+00:00"))
    except ValueError:
        return False
    if want.tzinfo is None:
        got = got.replace(tzinfo=None)  # the request named a wall-clock time; a zone added to it does not move it
    elif got.tzinfo is None:
        return False
    return want == got


def call_turns(traj: TrajectoryRecord) -> dict[str, tuple[int, int]]:
    """Tool call id -> (user turn its reply answers, 1 = the opening; index of the assistant message holding it)."""
    out: dict[str, tuple[int, int]] = {}
    turn = 0
    for i, msg in enumerate(traj.messages):
        if msg.role == "user":
            turn += 1
        elif msg.role == "assistant":
            for tc in msg.tool_calls or []:
                out[tc.id] = (turn, i)
    return out


def _in_turn(check: CodeCheck, calls: list[MadeCall], turns: dict[str, tuple[int, int]]) -> list[MadeCall]:
    return [c for c in calls if check.turn is None or turns.get(c.id, (0, 0))[0] == check.turn]


def _where_turn(check: CodeCheck) -> str:
    return f" in reply to user turn {check.turn}" if check.turn else ""


def _call_made_with(check: CodeCheck, traj: TrajectoryRecord, calls: list[MadeCall]) -> CheckResult:
    if not check.tool:
        return _misconfigured(check, "needs 'tool'")
    hits = [c for c in _in_turn(check, calls, call_turns(traj)) if c.name == check.tool]
    for call in hits:
        if call.arguments is not None and typed_match(check.arguments, call.arguments):
            return CheckResult(check_id=check.id, passed=True,
                               detail=f"{check.tool} called with {_short(call.arguments)}{_where_turn(check)}")
    if not hits:
        made = sorted({c.name for c in calls}) or "no tools"
        return CheckResult(check_id=check.id, passed=False,
                           detail=f"{check.tool} was never called{_where_turn(check)}; the assistant called {made}")
    seen = "; ".join(_short(c.arguments) if c.arguments is not None else "<arguments not a JSON object>"
                     for c in hits)
    return CheckResult(check_id=check.id, passed=False,
                       detail=f"{check.tool} never called with {_short(check.arguments)} (types must match)"
                              f"{_where_turn(check)}; calls had: {seen}")


def _matched(expected: list[Any], made: list[MadeCall]) -> int:
    """How many of the expected calls distinct calls of ``made`` carry (name and typed argument values)."""
    left = list(made)
    n = 0
    for spec in expected:
        hit = next((i for i, c in enumerate(left) if c.name == spec.name and c.arguments is not None
                    and typed_match(spec.arguments, c.arguments)), None)
        if hit is not None:
            left.pop(hit)
            n += 1
    return n


def _calls_in_one_turn(check: CodeCheck, traj: TrajectoryRecord, calls: list[MadeCall]) -> CheckResult:
    if not check.calls:
        return _misconfigured(check, "needs 'calls'")
    turns = call_turns(traj)
    replies: dict[int, list[MadeCall]] = {}
    for call in _in_turn(check, calls, turns):
        replies.setdefault(turns.get(call.id, (0, -1))[1], []).append(call)
    want = len(check.calls)
    best = max((_matched(check.calls, made), index) for index, made in replies.items()) if replies else (0, -1)
    if best[0] == want:
        return CheckResult(check_id=check.id, passed=True,
                           detail=f"one reply made all {want} expected calls{_where_turn(check)}")
    shown = "; ".join(f"{c.name} {_short(c.arguments)}" for c in replies.get(best[1], [])) or "no calls"
    return CheckResult(check_id=check.id, passed=False,
                       detail=f"no reply{_where_turn(check)} made all {want} expected calls "
                              f"{_short([c.model_dump() for c in check.calls])}; the best made {best[0]}: {shown}")


def _only_tools_called(check: CodeCheck, traj: TrajectoryRecord, calls: list[MadeCall]) -> CheckResult:
    others = sorted({c.name for c in calls if c.name not in check.tools})
    if others:
        return CheckResult(check_id=check.id, passed=False,
                           detail=f"called {others}, not among the tools the request needs {check.tools}")
    return CheckResult(check_id=check.id, passed=True, detail=f"called no tool but {check.tools}")


DECLINES = ("can't", "cannot", "can not", "unable", "not able", "don't have", "do not have", "no tool", "sorry")
"""An answer that says the assistant cannot do it is an answer too: calling nothing was right either way."""


def _speaks_to(answer: str, words: list[str]) -> bool:
    """Whether ``answer`` holds one of ``words`` (a word of it starting as the word does, so "stretching" holds
    "stretches"), or declines."""
    said = re.findall(r"[^\W_]+", answer.casefold())
    for word in words:
        stem = word.casefold()[: max(4, len(word) - 2)]
        if any(w.startswith(stem) or (len(w) >= 4 and stem.startswith(w)) for w in said):
            return True
    low = answer.casefold().replace("\u2019", "'")
    return any(d in low for d in DECLINES)


def _answers_without_call(check: CodeCheck, traj: TrajectoryRecord, calls: list[MadeCall]) -> CheckResult:
    """No call, and an answer of a sentence that speaks to the request: one of ``value`` (the words an answer to
    it holds: its topic's, or the answer itself such as "36") or a decline. A model that calls nothing but
    answers "aecopcahc" has not answered."""
    if calls:
        names = ", ".join(c.name for c in calls)
        return CheckResult(check_id=check.id, passed=False,
                           detail=f"no tool serves this request, but the assistant called {names}")
    answer = final_answer(traj)
    if answer is None or len([w for w in answer.split() if re.search(r"[^\W\d_]{2,}", w)]) < 3:
        return CheckResult(check_id=check.id, passed=False, detail=f"no answer in words: {_short(answer)}")
    asked = [normalize(m.content or "") for m in traj.messages if m.role == "user" and (m.content or "").strip()]
    if asked and asked[-1] in normalize(answer) and len(answer) < 1.5 * len(asked[-1]):
        return CheckResult(check_id=check.id, passed=False, detail=f"the answer repeats the request: {_short(answer)}")
    words = [str(w) for w in check.value] if isinstance(check.value, list) else []
    if words and not _speaks_to(answer, words):
        return CheckResult(check_id=check.id, passed=False,
                           detail=f"the answer speaks to none of {_short(words)} and declines nothing: "
                                  f"{_short(answer)}")
    return CheckResult(check_id=check.id, passed=True, detail="answered without calling a tool")


KIND_CHECKS: dict[str, Callable[[CodeCheck, TrajectoryRecord, list[MadeCall]], CheckResult]] = {
    "call_made_with": _call_made_with,
    "calls_in_one_turn": _calls_in_one_turn,
    "only_tools_called": _only_tools_called,
    "answers_without_call": _answers_without_call,
}


def run_checks(traj: TrajectoryRecord, rubric: Rubric) -> list[CheckResult]:
    """Every code check of ``rubric`` against ``traj``, in rubric order."""
    calls = made_calls(traj)
    return [run_check(check, traj, calls) for check in rubric.checks]
