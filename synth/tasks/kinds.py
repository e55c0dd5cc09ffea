"""Task kinds code builds: the calls, their values, the request and the checks, with no generator call.

What a model trained on the data must learn is tool use in general: fill one call from a request in plain words
(``single``), pick the one tool of several that a request needs (``choose``), make several calls in one reply
(``parallel``), see that no tool serves a request and answer without one (``no_tool``), and carry a conversation
into a second call (``follow_up``). For each, code picks the tools and the values (synth.tasks.values), says them
in one of many sentence shapes (synth.tasks.phrasing), keeps a request only when every value can be read back
from it, and writes the checks that hold an episode to exactly those calls. The generator model may reword a
request (``reword``); its wording is kept only when code still finds every value in it.

The generator-written kinds (the difficulties of ``rubrics/task_templates.yaml``) are kinds too: ``KIND_NAMES``
lists both, and ``check_kind`` refuses any other name with the valid list.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from synth.errors import SynthError
from synth.schemas.records import AgentRecord
from synth.schemas.rubric import CallSpec, CodeCheck
from synth.sim.tool_sim import RUN_PYTHON
from synth.tasks.offdomain import pick_request
from synth.tasks.phrasing import (
    Said,
    ask_phrase,
    bare,
    cap,
    clause,
    fold_values,
    inline,
    join_phrases,
    recoverable,
    request,
    tidy,
)
from synth.tasks.values import Arg, arg_for, arguments, pick_arguments
from synth.text import mentions

GENERATED_KINDS = ("single_call", "multi_call", "clarify", "refuse", "recover", "coding")
"""Kinds the generator writes from a template (rubrics/task_templates.yaml)."""


class UnknownTaskKind(SynthError, ValueError):
    """A task kind name no builder or template has."""

    hint = "use one of the valid kinds in tasks.kinds"


# ---- tools and calls -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    params: dict[str, Any]


def tools_of(agent: AgentRecord) -> list[Tool]:
    """The agent's tools (not the sandbox: a program is no value a request states)."""
    out = []
    for tool in agent.tools:
        fn = tool.get("function", tool)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"] != RUN_PYTHON:
            params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
            out.append(Tool(fn["name"], str(fn.get("description") or ""), params))
    return out


PICK_ATTEMPTS = 4


def _pick(tool: Tool, rng: random.Random) -> list[Arg] | None:
    for _ in range(PICK_ATTEMPTS):
        args = pick_arguments(tool.params, rng)
        if args:
            return args
    return None


def groundable(agent: AgentRecord) -> list[Tool]:
    """Tools code can fill a call of (every required argument has a value code can choose and say)."""
    return [t for t in tools_of(agent) if _pick(t, random.Random(f"ground:{t.name}")) is not None]


@dataclass
class Call:
    tool: Tool
    args: list[Arg]

    def spec(self) -> CallSpec:
        return CallSpec(name=self.tool.name, arguments=arguments(self.args))

    @property
    def ask(self) -> str:
        return ask_phrase(self.tool.description, self.tool.name)


@dataclass
class Built:
    """A task code built: the opening, the scripted follow-ups, the expected calls and the checks."""

    kind: str
    opening: Said
    checks: list[CodeCheck]
    calls: list[CallSpec] = field(default_factory=list)
    follow_ups: list[Said] = field(default_factory=list)

    def surfaces(self) -> list[str]:
        return list(self.opening.surfaces) + [s for f in self.follow_ups for s in f.surfaces]


def fallback(ask: str, args: list[Arg]) -> Said:
    """A plain request that states every value as it is (for the rare phrasing that lost one)."""
    parts, surfaces = [], []
    for arg in args:
        leaves = arg.fields or [arg]
        for leaf in leaves:
            values = leaf.value if isinstance(leaf.value, list) and not leaf.fields else [leaf.value]
            shown = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in values]
            parts.append(f"{leaf.words}: {', '.join(shown)}")
            surfaces += shown
    return Said(tidy(f"Could you {ask}? Details: {'; '.join(parts)}."), tuple(surfaces))


def _checked(said: Said, ask: str, args: list[Arg]) -> Said:
    return said if recoverable(said.text, said.surfaces) else fallback(ask, args)


def _vary(call: Call, rng: random.Random, n: int) -> tuple[Arg, list[Arg]] | None:
    """One argument of ``call`` that can take ``n`` different values, and those values (the first its own)."""
    options = [a for a in call.args if a.kind not in ("bool", "list", "object", "quoted") and not a.paired
               and not any(b.paired == a.key for b in call.args)]
    rng.shuffle(options)
    props = call.tool.params.get("properties") or {}
    required = set(call.tool.params.get("required") or [])
    for arg in options:
        values = [arg]
        for _ in range(6 * n):
            other = arg_for(arg.key, props.get(arg.key), rng, required=arg.key in required)
            if other is not None and all(other.value != v.value for v in values):
                other.unit, other.paired = arg.unit, arg.paired
                values.append(other)
            if len(values) == n:
                return arg, values
    return None


def _with(call: Call, old: Arg, new: Arg) -> Call:
    return Call(call.tool, [new if a is old else a for a in call.args])


def _clause(call: Call, rng: random.Random) -> Said:
    """The call as a clause ("get the weather in Lisbon"); a full request when a value got lost in it."""
    said = clause(call.ask, call.args, rng)
    return said if recoverable(said.text, said.surfaces) else fallback(call.ask, call.args)


# ---- the kinds -------------------------------------------------------------------------------------------------

def _call_check(call: CallSpec, turn: int, i: int = 1) -> CodeCheck:
    return CodeCheck(id=f"call_{i}_{call.name}", kind="call_made_with", tool=call.name, arguments=call.arguments,
                     turn=turn, description=f"calls {call.name} with {call.arguments} (types too) in reply to user "
                     f"turn {turn}")


def _reports(name: str) -> CodeCheck:
    return CodeCheck(id=f"reports_{name}", kind="reports_result", tool=name,
                     description=f"the final answer reports a value from {name}'s result")


def _budget(n: int) -> CodeCheck:
    return CodeCheck(id="call_budget", kind="calls_at_most", value=n,
                     description=f"at most {n} successful tool call(s); a failed call may be retried")


def _only(names: list[str]) -> CodeCheck:
    return CodeCheck(id="only_needed_tools", kind="only_tools_called", tools=sorted(set(names)),
                     description=f"calls no tool but {sorted(set(names))}")


def _one_call(rng: random.Random, tools: list[Tool]) -> Call | None:
    if not tools:
        return None
    tool = rng.choice(tools)
    args = _pick(tool, rng)
    return Call(tool, args) if args else None


def build_single(agent: AgentRecord, rng: random.Random) -> Built | None:
    call = _one_call(rng, groundable(agent))
    if call is None:
        return None
    said = _checked(request(call.ask, call.args, rng), call.ask, call.args)
    spec = call.spec()
    return Built("single", said, [_call_check(spec, 1), _reports(spec.name), _budget(1)], [spec])


def _confusable(tools: list[Tool], target: Tool) -> bool:
    """Whether another tool takes one of ``target``'s parameters: then only the request's verb tells them apart."""
    mine = set(target.params.get("properties") or {})
    return any(mine & set(t.params.get("properties") or {}) for t in tools if t.name != target.name)


def build_choose(agent: AgentRecord, rng: random.Random) -> Built | None:
    every = tools_of(agent)
    if len(every) < 2:
        return None
    options = groundable(agent)
    hard = [t for t in options if _confusable(every, t)]
    call = _one_call(rng, hard if hard and rng.random() < 0.7 else options)
    if call is None:
        return None
    said = _checked(request(call.ask, call.args, rng), call.ask, call.args)
    spec = call.spec()
    return Built("choose", said, [_call_check(spec, 1), _only([spec.name]), _reports(spec.name), _budget(1)],
                 [spec])


PARALLEL_SAME = (
    "{Ask} {shared} for each of {each}.", "Could you {ask} {shared} for {each}? One for each, please.",
    "I need this done for {each}: {ask} {shared}.", "Can you {ask} {shared} for {each} at the same time?",
    "Do these together: {ask} {shared} for {each}.", "For {each}, {ask} {shared}.",
    "I'd like to {ask} {shared}, separately for {each}.", "Hi! {Ask} {shared} for {each}, please - each one "
    "separately.", "Please {ask} {shared} - once for {A} and once for {B}.",
    "{Ask} {shared} for {A}, and do the same for {B}.", "Quick one: {ask} {shared} for {A} and also for {B}.",
)
PARALLEL_TWO = (
    "{C1}, and also {c2}.", "Two things, please: {c1}, and {c2}.", "Could you {c1} and {c2}?",
    "I need you to {c1}. At the same time, {c2}.", "Please {c1}; also {c2}.", "{C1}. While you're at it, {c2}.",
    "Can you do two things at once? {C1}, and {c2}.", "Hi! {C1} and {c2}, please.",
)


def _shared(call: Call, varied: Arg) -> list[Arg]:
    return [a for a in call.args if a is not varied and a.key != varied.paired]


def build_parallel(agent: AgentRecord, rng: random.Random) -> Built | None:
    tools = groundable(agent)
    if not tools:
        return None
    if len(tools) >= 2 and rng.random() < 0.4:
        first, second = rng.sample(tools, 2)
        a1, a2 = _pick(first, rng), _pick(second, rng)
        if a1 and a2:
            calls = [Call(first, a1), Call(second, a2)]
            c1, c2 = _clause(calls[0], rng), _clause(calls[1], rng)
            text = rng.choice(PARALLEL_TWO).format(c1=c1.text, C1=cap(c1.text), c2=c2.text)
            said = Said(tidy(text), c1.surfaces + c2.surfaces)
            if not recoverable(said.text, said.surfaces):
                f1, f2 = fallback(calls[0].ask, calls[0].args), fallback(calls[1].ask, calls[1].args)
                said = Said(f"{f1.text} And also: {f2.text}", f1.surfaces + f2.surfaces)
            return _parallel(said, calls)
    n = 3 if rng.random() < 0.25 else 2
    for _ in range(PICK_ATTEMPTS):
        call = _one_call(rng, tools)
        varied = _vary(call, rng, n) if call else None
        if call is None or varied is None:
            continue
        arg, values = varied
        calls = [_with(call, arg, v) for v in values]
        said_values = [bare(v, rng) for v in values]
        ask, rest, folded = fold_values(call.ask, _shared(call, arg), rng)
        said_rest = inline(rest, rng)
        shared = Said(said_rest.text, tuple(folded) + said_rest.surfaces)
        frames = [f for f in PARALLEL_SAME if n == 2 or "{A}" not in f]
        text = rng.choice(frames).format(
            ask=ask, Ask=cap(ask), shared=shared.text,
            each=join_phrases([s.text for s in said_values], rng, values=True),
            A=said_values[0].text, B=said_values[-1].text)
        said = Said(tidy(text), shared.surfaces + tuple(s for v in said_values for s in v.surfaces))
        if not recoverable(said.text, said.surfaces):
            parts = [fallback(c.ask, c.args) for c in calls]
            said = Said(" Also: ".join(p.text for p in parts), tuple(s for p in parts for s in p.surfaces))
        return _parallel(said, calls)
    return None


def _parallel(said: Said, calls: list[Call]) -> Built:
    specs = [c.spec() for c in calls]
    check = CodeCheck(id="calls_in_one_reply", kind="calls_in_one_turn", calls=specs, turn=1,
                      description=f"one reply makes all {len(specs)} calls: "
                      + "; ".join(f"{s.name} {s.arguments}" for s in specs))
    return Built("parallel", said, [check, _only([s.name for s in specs]), _budget(len(specs))], specs)


FOLLOW_SAME = (
    "Now do the same for {B}.", "Thanks! And what about {B}?", "Great. Can you do that again with {B} instead?",
    "Same thing, but {B} this time.", "Perfect - now repeat it for {B}.", "One more: {B}, please.",
    "OK, and now with {B}, please.", "Could you also run it for {B}?", "Nice. Do it once more for {B}.",
)
FOLLOW_OTHER = (
    "Thanks. Now {c2}.", "Also, could you {c2}?", "Next, {c2}, please.", "Great, that helps. Can you {c2} too?",
    "One more thing: {c2}.", "Thanks! {C2}, please.",
)


def build_follow_up(agent: AgentRecord, rng: random.Random) -> Built | None:
    tools = groundable(agent)
    if not tools:
        return None
    calls: list[Call] = []
    follow: Said | None = None
    if len(tools) >= 2 and rng.random() < 0.4:
        first, second = rng.sample(tools, 2)
        a1, a2 = _pick(first, rng), _pick(second, rng)
        if a1 and a2:
            calls = [Call(first, a1), Call(second, a2)]
            c2 = _clause(calls[1], rng)
            follow = Said(tidy(rng.choice(FOLLOW_OTHER).format(c2=c2.text, C2=cap(c2.text))), c2.surfaces)
            if not recoverable(follow.text, follow.surfaces):
                follow = fallback(calls[1].ask, calls[1].args)
    if follow is None:
        for _ in range(PICK_ATTEMPTS):
            call = _one_call(rng, tools)
            varied = _vary(call, rng, 2) if call else None
            if call is None or varied is None:
                continue
            arg, (_, new) = varied
            calls = [call, _with(call, arg, new)]
            said = bare(new, rng)
            follow = Said(tidy(rng.choice(FOLLOW_SAME).format(B=said.text)), said.surfaces)
            break
    if follow is None:
        return None
    opening = _checked(request(calls[0].ask, calls[0].args, rng), calls[0].ask, calls[0].args)
    specs = [c.spec() for c in calls]
    checks = [_call_check(specs[0], 1, 1), _call_check(specs[1], 2, 2), _reports(specs[1].name), _budget(2)]
    return Built("follow_up", opening, checks, specs, [follow])


def build_no_tool(agent: AgentRecord, rng: random.Random) -> Built | None:
    picked = pick_request(agent.tools, agent.domain, rng)
    if picked is None:
        return None
    check = CodeCheck(id="answers_without_call", kind="answers_without_call", value=picked.answer_words(),
                      description=f"no tool serves this {picked.topic} request: the assistant answers it (or says "
                      "it cannot) without calling one")
    return Built("no_tool", Said(picked.text, ()), [check])


@dataclass(frozen=True)
class TaskKind:
    name: str
    build: Callable[[AgentRecord, random.Random], Built | None]
    calls: bool  # whether a correct episode calls tools (an episode may be made to call only then)


KINDS: dict[str, TaskKind] = {
    "single": TaskKind("single", build_single, True),
    "choose": TaskKind("choose", build_choose, True),
    "parallel": TaskKind("parallel", build_parallel, True),
    "no_tool": TaskKind("no_tool", build_no_tool, False),
    "follow_up": TaskKind("follow_up", build_follow_up, True),
}
"""The kinds code builds, by name."""

KIND_NAMES: tuple[str, ...] = (*KINDS, *GENERATED_KINDS)


def check_kind(name: str) -> str:
    """``name`` when it is a task kind; else UnknownTaskKind naming the valid ones."""
    if name not in KIND_NAMES:
        raise UnknownTaskKind(f"unknown task kind {name!r}; valid kinds: {', '.join(KIND_NAMES)}")
    return name


def code_kind(name: str) -> TaskKind | None:
    """The builder of a kind code builds; None for a kind the generator writes."""
    return KINDS.get(check_kind(name))


def can_build(agent: AgentRecord, name: str, seed: int = 0) -> bool:
    """Whether code can build a ``name`` task for ``agent`` (always True for a generator-written kind)."""
    kind = code_kind(name)
    if kind is None:
        return True
    return any(kind.build(agent, random.Random(f"{seed}:{i}")) is not None for i in range(3))


def build(agent: AgentRecord, name: str, seed: int) -> Built | None:
    kind = code_kind(name)
    if kind is None:
        raise UnknownTaskKind(f"task kind {name!r} is written by the generator, not built by code",
                              hint="call synth.tasks.generate.generate_task for it")
    return kind.build(agent, random.Random(seed))


# ---- rewording by the model ------------------------------------------------------------------------------------

class Reworded(BaseModel):
    request: str = Field(min_length=8, max_length=300,
                         description="The same request in the user's own words, one or two sentences.")


def reword_ok(text: str, said: Said, tool_names: list[str]) -> bool:
    """Whether a model's rewording of ``said`` can stand for it: every value still in it, no number it did not
    have (a new number is a new detail the check knows nothing of), no tool name, no markup, no echo of the
    prompt ("The request: ..."), and about its length (a small model appends rambling to a copy)."""
    text, original = text.strip(), said.text.strip()
    if not text or len(text.split()) < 4 or re.search(r"[{}<>\[\]`]", text):
        return False
    if re.search(r"\brequest\b", text, re.IGNORECASE) and not re.search(r"\brequest\b", original, re.IGNORECASE):
        return False
    if len(text) > max(1.5 * len(original), len(original) + 60) or (original in text and text != original):
        return False
    if set(re.findall(r"\d+", text)) - set(re.findall(r"\d+", original)):
        return False
    if any(mentions(text, name) or mentions(text, name.replace("_", " ")) for name in tool_names):
        return False
    return recoverable(text, said.surfaces)
