"""Quality gates: code checks on what any accepted trajectory must be, whatever its task's rubric says.

A rubric checks that the task was done (the call, its arguments, a reported value); it says nothing of whether a
reader would keep the row. A small agent model that makes the right call often ends in an answer no one should
train on: ``<pre><code>`` loops, one sentence repeated to the token cap, the tool's name or a call id read out,
the tool's schema dumped, or a sentence that never says what the tool returned. Each gate here is a small pure
function of one trajectory (its final answer, its calls and its tools) that fails such a row with a reason, so the
judge stage can record it (``Verdict.gates``) and acceptance can refuse it (``synth.judge.accept``).

The gates are named in ``synth.config.QualityGate``; ``judge.gates`` picks those that run (default: all).
Thresholds are the named constants below, each with why it sits where it does.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from synth.config import QUALITY_GATES, QualityGate
from synth.judge.checks import MadeCall, final_answer, made_calls, reportable_values, tool_parameters
from synth.schemas.records import TaskRecord, TrajectoryRecord
from synth.schemas.verdict import CheckResult
from synth.text import mentions, normalize

FRAGMENT_WORDS = 6
FRAGMENT_REPEATS = 3
"""A fragment of FRAGMENT_WORDS words seen FRAGMENT_REPEATS times is a loop. Six words, because a normal answer
that lists similar things repeats a frame of three to five words around a value that changes ("The weather in
Paris is ...", "Order 2: status shipped, carrier UPS"), and the value makes every six-word window differ; three
times, because restating a result once (in the answer and in its closing summary) is ordinary, a third time is
not. A loop of a shorter fragment trips it too, once it runs on: "2 2 2 2 2 2 2 2" holds one six-word window three
times. No paragraph of this project's README or docs trips it."""

CODE_BLOCKS_MAX = 4
"""Fenced blocks a coding answer may hold: the function, an example, perhaps a test and a variant. More is a
runaway (a small model re-fencing the same code until the token cap)."""

TAG_REPEATS_MAX = 2
"""The same HTML tag opened more than this many times in an answer's text (outside fenced code) is a markup loop;
a chat answer has no use for a tag three times."""

MARKDOWN_RUN = re.compile(r"[*#`~]{6,}")
"""Six or more markdown marker characters in a row ("******", "######"): no heading or emphasis needs that many.
Rules made of '-' or '=' are left alone, since those are ordinary."""

CODE_TAGS = ("pre", "code")
"""HTML code markup: in an answer to a task that asks for no code, ``<pre><code>`` is the small model's loop, not
formatting."""

TOOL_FORMAT = re.compile(r"</?\s*(?:tool_call|tool_response|tool_calls|function_call|tools)\s*>|<\|[a-z_]+\|>", re.I)
"""The tool-call format's own tags and chat-template tokens: the model's plumbing, never part of an answer."""

SCHEMA_SHAPES = tuple(re.compile(p) for p in (
    r"[\"']\$schema[\"']\s*:",
    r"[\"']additionalProperties[\"']\s*:",
    r"[\"']properties[\"']\s*:\s*\{",
    r"[\"']parameters[\"']\s*:\s*\{",
    r"[\"']required[\"']\s*:\s*\[",
    r"[\"']type[\"']\s*:\s*[\"']object[\"']",
    # One parameter of a tool spec: "timezone": {"type": "string", ...
    r"[\"'][\w.-]+[\"']\s*:\s*\{\s*[\"']type[\"']\s*:\s*[\"'](?:string|integer|number|boolean|array|null)[\"']",
))
"""JSON Schema written out: its keywords as JSON keys, or a parameter's type object. Quoted keys only, so prose
("the hotel's properties: a pool") never matches."""

ROW_ID = re.compile(r"\b(?:traj|task|agent|leaf|eval|dataset|publish|tool)-[0-9a-f]{16}\b")
"""The pipeline's own ids (``synth.schemas.ids``)."""
CALL_ID = re.compile(r"\bchatcmpl-[A-Za-z0-9-]{8,}|\bcall_[A-Za-z0-9]{12,}")
"""Tool-call ids as OpenAI-compatible servers write them."""
ID_MIN_CHARS = 6
"""A trajectory's own id (or a call's) shorter than this is not looked for word for word: too likely by chance."""

TOOL_NAME_LIKE = re.compile(r"[_.\d-]|[a-z][A-Z]")
"""A tool name a user would not write: with an underscore, a dot, a hyphen, a digit or camelCase
(``get_current_time``, ``get-library-docs``, ``searchNodes``); a plain word (``search``) a user writes anyway."""

NOTHING_FOUND = re.compile(r"\b(?:no|not|none|nothing|empty|zero|0|cannot|unable)\b|n't\b")
"""How an answer says a result held nothing (an empty list, ``{}``)."""
FAILED = re.compile(r"\b(?:error|errors|fail|failed|fails|failure|unable|cannot|not|sorry|problem|invalid|denied|"
                    r"unavailable|unsuccessful)\b|n't\b")
"""How an answer says that the calls failed."""
PROSE_WORD_MIN = 7
"""In a plain-text result, a word this long (or any token with a digit, three characters or more) that the user did
not write is something an answer that read the result can repeat."""

_TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z][a-zA-Z0-9]{0,15})(?:\s[^<>]*)?/?\s*>")
_FENCE = "```"
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.S)


@dataclass(frozen=True)
class Episode:
    """What the gates read of one trajectory, taken apart once."""

    traj: TrajectoryRecord
    coding: bool = False
    answer: str | None = None
    calls: list[MadeCall] = field(default_factory=list)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> parameters schema

    @classmethod
    def of(cls, traj: TrajectoryRecord, *, coding: bool = False) -> Episode:
        return cls(traj=traj, coding=coding, answer=final_answer(traj), calls=made_calls(traj),
                   tools=tool_parameters(traj.tools))


Gate = Callable[[Episode], CheckResult]


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _result(name: str, passed: bool, detail: str) -> CheckResult:
    return CheckResult(check_id=name, passed=passed, detail=detail)


def _prose(answer: str) -> str:
    """The answer's words without markup: tags, fences and markdown markers become spaces."""
    text = _TAG.sub(" ", answer).replace(_FENCE, " ")
    return re.sub(r"[*#`~|>_]+", " ", text)


def _outside_code(answer: str) -> str:
    return _FENCED.sub(" ", answer)


def empty_answer(ep: Episode) -> CheckResult:
    """The trajectory ends in an answer with words in it (markup alone is empty)."""
    name = "empty_answer"
    if ep.answer is None:
        return _result(name, False, "no final answer: the last assistant turn calls a tool or is empty")
    if not re.search(r"\w", _prose(ep.answer)):
        return _result(name, False, f"the final answer holds no words, only markup or punctuation: "
                                    f"{_short(ep.answer)}")
    return _result(name, True, "the final answer has words")


def repeated_fragment(ep: Episode) -> CheckResult:
    """No fragment of FRAGMENT_WORDS words comes FRAGMENT_REPEATS times or more."""
    name = "repeated_fragment"
    if ep.answer is None:
        return _result(name, True, "no final answer")
    words = re.findall(r"\w+", _prose(ep.answer).casefold())
    grams = Counter(tuple(words[i:i + FRAGMENT_WORDS]) for i in range(len(words) - FRAGMENT_WORDS + 1))
    if grams:
        gram, count = grams.most_common(1)[0]
        if count >= FRAGMENT_REPEATS:
            return _result(name, False, f"the final answer repeats {' '.join(gram)!r} {count} times")
    return _result(name, True, f"no {FRAGMENT_WORDS}-word fragment comes {FRAGMENT_REPEATS} times")


def markup_loop(ep: Episode) -> CheckResult:
    """No runaway markup: the tool format's tags, a tag over and over, runs of markdown markers; and, where the
    task asks for no code, no ``<pre>``/``<code>`` and no code fence. A coding task's fenced code is its answer:
    fences are allowed there, up to CODE_BLOCKS_MAX blocks, and what is inside them is not read as markup."""
    name = "markup_loop"
    if ep.answer is None:
        return _result(name, True, "no final answer")
    answer = ep.answer
    if m := TOOL_FORMAT.search(answer):
        return _result(name, False, f"the final answer holds the tool format's markup {m.group(0)!r}")
    fences = answer.count(_FENCE)
    text = _outside_code(answer) if ep.coding else answer
    tags = Counter(t.casefold() for closing, t in _TAG.findall(text) if not closing)
    if not ep.coding:
        code_tags = {t: n for t, n in tags.items() if t in CODE_TAGS}
        if code_tags:
            seen = ", ".join(f"<{t}> x{n}" for t, n in sorted(code_tags.items()))
            return _result(name, False, f"HTML code markup in an answer to a task that asks for no code ({seen})")
        if fences:
            return _result(name, False, "a code fence in an answer to a task that asks for no code")
    elif fences > 2 * CODE_BLOCKS_MAX:
        return _result(name, False, f"{fences // 2} fenced code blocks, more than {CODE_BLOCKS_MAX}: a runaway")
    if tags:
        tag, count = tags.most_common(1)[0]
        if count > TAG_REPEATS_MAX:
            return _result(name, False, f"the tag <{tag}> opened {count} times: a markup loop")
    if m := MARKDOWN_RUN.search(text):
        return _result(name, False, f"a run of markdown markers {m.group(0)[:12]!r}")
    return _result(name, True, "no runaway markup")


def names_tool(ep: Episode) -> CheckResult:
    """The answer names no tool of the toolset in a form a user would not write (``get_current_time``)."""
    name = "names_tool"
    if ep.answer is None:
        return _result(name, True, "no final answer")
    named = sorted(
        tool for tool in ep.tools
        if TOOL_NAME_LIKE.search(tool)
        and re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", ep.answer, re.IGNORECASE)
    )
    if named:
        return _result(name, False, f"the final answer names the tool(s) {', '.join(named)}")
    return _result(name, True, "no tool named")


def internal_id(ep: Episode) -> CheckResult:
    """The answer holds no internal id: the trajectory's, its task's or agent's, a call id, or any id of the
    pipeline's own form."""
    name = "internal_id"
    if ep.answer is None:
        return _result(name, True, "no final answer")
    traj = ep.traj
    own = {traj.id, traj.task_id, traj.agent_id} | {c.id for c in ep.calls}
    found = sorted(i for i in own if len(i) >= ID_MIN_CHARS and i in ep.answer)
    found += [m.group(0) for pattern in (ROW_ID, CALL_ID) for m in pattern.finditer(ep.answer)
              if m.group(0) not in found]
    if found:
        return _result(name, False, f"the final answer holds internal id(s) {', '.join(found[:3])}")
    return _result(name, True, "no internal id")


def schema_dump(ep: Episode) -> CheckResult:
    """The answer writes out no JSON Schema (a tool's parameters, keywords such as "properties")."""
    name = "schema_dump"
    if ep.answer is None:
        return _result(name, True, "no final answer")
    for shape in SCHEMA_SHAPES:
        if m := shape.search(ep.answer):
            return _result(name, False, f"the final answer dumps a schema: {_short(m.group(0), 60)}")
    return _result(name, True, "no schema in the answer")


def _empty(result: str | None) -> bool:
    """A result with nothing in it: no text, or JSON whose every leaf is null, "" or an empty container."""
    if result is None or not result.strip():
        return True
    try:
        parsed: Any = json.loads(result)
    except ValueError:
        return False

    def blank(v: Any) -> bool:
        if isinstance(v, dict):
            return all(blank(x) for x in v.values())
        if isinstance(v, list):
            return all(blank(x) for x in v)
        return v is None or (isinstance(v, str) and not v.strip())

    return blank(parsed)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _prose_tokens(result: str, known: str) -> list[str]:
    """Tokens of a plain-text result that an answer which read it could repeat (not the user's own words)."""
    out = []
    for tok in re.findall(r"\w[\w./:@-]*\w", result):
        long_word = tok.isalpha() and len(tok) >= PROSE_WORD_MIN
        if (long_word or (any(ch.isdigit() for ch in tok) and len(tok) >= 3)) and not mentions(known, tok):
            out.append(tok)
    return out


def says_nothing(ep: Episode) -> CheckResult:
    """After tool calls, the answer says something of what they returned: it mentions a value of a result
    (``reportable_values``, as the ``reports_result`` check reads them), says that a result was empty, or, when
    every call failed, says that they failed."""
    name = "says_nothing"
    answered = [c for c in ep.calls if c.result is not None]
    if not answered:
        return _result(name, True, "no tool result to report")
    if ep.answer is None:
        return _result(name, True, "no final answer")
    answer = ep.answer
    good = [c for c in answered if c.ok]
    pool = good or answered
    values = [v for c in pool for v in reportable_values(c.result, c.arguments)]
    if hit := next((v for v in values if mentions(answer, v)), None):
        return _result(name, True, f"the final answer reports {_short(str(hit), 60)}")
    known = " ".join([*(m.content or "" for m in ep.traj.messages if m.role == "user"),
                      *(json.dumps(c.arguments or {}) for c in pool)])
    prose = [t for c in pool if c.result and not _is_json(c.result) for t in _prose_tokens(c.result, known)]
    if hit := next((t for t in prose if mentions(answer, t)), None):
        return _result(name, True, f"the final answer reports {hit!r} from a result")
    if not good:
        if FAILED.search(normalize(answer)):
            return _result(name, True, "every call failed and the answer says so")
        return _result(name, False, f"every call failed and the answer neither says so nor quotes the error: "
                                    f"{_short(answer)}")
    if all(_empty(c.result) for c in good):
        if NOTHING_FOUND.search(normalize(answer)):
            return _result(name, True, "the results were empty and the answer says so")
        return _result(name, False, f"the results were empty and the answer does not say so: {_short(answer)}")
    if not values and not prose:
        return _result(name, True, "the results hold no value to quote")
    return _result(name, False, f"the final answer mentions none of the results' values "
                                f"{_short(json.dumps(values + prose, default=str), 80)}: {_short(answer)}")


def invalid_arguments(ep: Episode) -> CheckResult:
    """Every call names a tool of the toolset and its arguments pass that tool's JSON Schema, types included."""
    name = "invalid_arguments"
    for call in ep.calls:
        if call.name not in ep.tools:
            return _result(name, False, f"call {call.name!r}: the toolset has no such tool")
        if call.arguments is None:
            return _result(name, False, f"call {call.name!r}: the arguments are not a JSON object")
        if call.schema_error is not None:
            return _result(name, False, f"call {call.name!r} fails the tool's schema: {call.schema_error}")
    return _result(name, True, f"{len(ep.calls)} call(s), each valid under its tool's schema")


GATES: dict[QualityGate, Gate] = {
    "empty_answer": empty_answer,
    "repeated_fragment": repeated_fragment,
    "markup_loop": markup_loop,
    "names_tool": names_tool,
    "internal_id": internal_id,
    "schema_dump": schema_dump,
    "says_nothing": says_nothing,
    "invalid_arguments": invalid_arguments,
}
"""Every gate by name, in the order they run and are reported (the names of ``synth.config.QualityGate``)."""


def is_coding(task: TaskRecord | None) -> bool:
    """Whether the task asks for code (its answer's fenced code is the answer, not markup)."""
    return task is not None and (task.difficulty == "coding" or bool(task.rubric and task.rubric.python_tests))


def run_gates(traj: TrajectoryRecord, *, coding: bool = False,
              names: Iterable[QualityGate] = QUALITY_GATES) -> list[CheckResult]:
    """The named gates on ``traj``, in registry order; a gate never raises (a bug in one fails that gate)."""
    ep = Episode.of(traj, coding=coding)
    wanted = set(names)
    out = []
    for gate_name, gate in GATES.items():
        if gate_name not in wanted:
            continue
        try:
            out.append(gate(ep))
        except Exception as exc:  # one malformed row must not stop the judge stage
            out.append(_result(gate_name, False, f"gate could not run: {type(exc).__name__}: {exc}"))
    return out


def failed(results: Iterable[CheckResult]) -> list[str]:
    """The names of the gates that failed."""
    return [r.check_id for r in results if not r.passed]
