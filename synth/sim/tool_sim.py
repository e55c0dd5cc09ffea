"""The stateful, stochastic tool simulator: answers an agent's tool calls the way a real server would.

``ToolSimulator.call`` answers one call the way its tool would, or raises what the tool would fail with (a
``synth.tools.errors.ToolError`` worded as the tool message, or any exception a tool implementation raised); the
episode's one boundary (``synth.sim.episode.answer_call``) turns a raised failure into the tool message and its
``CallRecord`` (``failed_call``), tau2-bench style:
- unknown tool or arguments that break the tool's JSON Schema: the error a real server gives, no model call;
- a tool that a ``RealToolHub`` serves (and ``real_exec`` on): called for real;
- ``run_python``: run in the sandbox;
- anything else: the model plays the tool, given the parts of the world state the call concerns
  (``synth.sim.state_view``), and returns a result plus an RFC 6902 patch. The world applies the patch whole
  or not at all (it must apply and keep the world's JSON Schema); a rejected patch gets one fresh sample, and
  if that is rejected too the call fails ("nothing was changed"): a result never claims a change the state
  does not show. A result that is an error changes nothing.
Given ``examples`` (real answers of the same tool to other calls, ``ToolExample``), the simulator shows them in its
prompt and shapes its result like them (``result_shape``): a JSON object with the same fields and kinds, a list,
or plain text, or an ``Error: ...`` string. The fidelity replay (``synth.sim.fidelity``) measured why: without them
a small model invents a result of any shape, and a caller (or a check) that reads the real fields finds none.
Injected failures (errors, timeouts, empty and partial results) are drawn from a ``random.Random`` seeded by
the episode seed and the call's index, so the same calls under the same seed fail the same way; they never
change state.
"""

from __future__ import annotations

import functools
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jsonschema
import jsonschema.exceptions
from pydantic import BaseModel, Field

from synth.agents.turn import reply_chars
from synth.config import RolloutsStageConfig
from synth.prompts import render
from synth.schemas.messages import ToolCall
from synth.schemas.records import CallRecord
from synth.schemas.usage import UsageByRole
from synth.sim.state_view import state_view
from synth.sim.world import PatchEvent, PatchOp, WorldState, sub_seed
from synth.tools.builtin import RUN_PYTHON as BUILTIN_RUN_PYTHON
from synth.tools.effects import reads_only
from synth.tools.errors import ChangeRejected, InjectedFailure, InvalidArguments, ToolError, ToolFailed, UnknownTool

log = logging.getLogger(__name__)

Injected = Literal["none", "error", "timeout", "empty", "partial"]

# One definition of the sandbox tool, shared with the agents stage that hands it to coding agents.
RUN_PYTHON = BUILTIN_RUN_PYTHON.function.name
RUN_PYTHON_TOOL: dict[str, Any] = BUILTIN_RUN_PYTHON.openai()

SERVER_ERRORS = (
    "Error 503: service temporarily unavailable",
    "Error 500: internal server error",
    "Error 429: rate limit exceeded, retry later",
    "Error 502: bad gateway",
)
TIMEOUT_MESSAGE = "Error: tool call timed out after 30s"
EMPTY_RESULTS = ("[]", "{}", "null", "")
STATE_CHARS = 6000
"""Characters of world state shown to the simulator (``state_view`` picks which parts); a small model's context
can't take an unbounded state."""
CUT_OFF_WRITE = "Error: the connection was cut before the service confirmed the change; nothing was changed"
REJECTED_CHANGE = "Error: {name} failed: the service could not apply the change; nothing was changed"
REJECTED_NOTE = (
    "Your patch (paths {paths}) was rejected and nothing changed: {error}. Answer the same call again: "
    "a patch that applies to the state as shown (existing paths, the same kinds of values), "
    "or an 'Error: ...' result if the call cannot be served."
)


POINTER = r"^(/[A-Za-z0-9_.@:+~-]{1,40}){1,6}$"
"""JSON Pointers the simulator may write: short, few levels (a weak model writes paths until max_tokens)."""


def _value_defs(depth: int, *, chars: int = 200, items: int = 8) -> dict[str, Any]:
    """``$defs`` for JSON values nested at most ``depth`` deep, with short strings and few items/keys.

    ``result: Any`` lets guided decoding write JSON without end (a 135M model does, until max_tokens cuts the
    reply and the row is lost); these bounds keep any reply closable while leaving room for realistic results.
    """
    defs: dict[str, Any] = {
        "v0": {"anyOf": [{"type": "string", "maxLength": chars}, {"type": "number"}, {"type": "boolean"},
                         {"type": "null"}]}
    }
    for level in range(1, depth + 1):
        inner = {"$ref": f"#/$defs/v{level - 1}"}
        defs[f"v{level}"] = {"anyOf": [
            {"$ref": "#/$defs/v0"},
            {"type": "array", "items": inner, "maxItems": items},
            {"type": "object", "additionalProperties": inner, "maxProperties": items,
             "propertyNames": {"type": "string", "pattern": r"^[A-Za-z0-9_.@:+~-]{1,40}$"}},
        ]}
    return defs


def reply_schema(chars: int = 2000, reads_only: bool = False, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON Schema sent for ``ToolSimReply``: the same shape, bounded so the reply can close.

    ``chars`` bounds a plain-text result; strings nested in a JSON result get an eighth of it each.
    ``reads_only``: the call only reads (``synth.tools.effects``), so its patch must be empty.
    ``result``: the schema of the result (``result_shape``) in place of any bounded JSON value or text.
    """
    pointer = {"type": "string", "pattern": POINTER}
    op = {
        "type": "object",
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": pointer,
            "value": {"$ref": "#/$defs/v3"},
            "from": pointer,
        },
        "required": ["op", "path"],
        "additionalProperties": False,
    }
    return {
        "$defs": _value_defs(4, chars=max(40, chars // 8)),
        "type": "object",
        "properties": {
            "result": result or {"anyOf": [{"type": "string", "maxLength": chars}, {"$ref": "#/$defs/v4"}]},
            "patch": {"type": "array", "items": op, "maxItems": 0 if reads_only else 4},
        },
        "required": ["result", "patch"],
        "additionalProperties": False,
    }


EXAMPLES_SHOWN = 2
"""Real answers shown per tool: enough to show the form, few enough to leave the context to the state."""
EXAMPLE_CHARS = 600


class ToolExample(BaseModel):
    """A real answer of a tool, kept to show the simulator what the tool returns (``examples=``)."""

    arguments: dict[str, Any] = Field(default_factory=dict, description="The call's arguments.")
    result: str = Field(description="The tool message the real server answered.")
    ok: bool = Field(default=True, description="False: the server answered with an error.")


def _shape_of(value: Any, chars: int, depth: int = 0) -> dict[str, Any]:
    """The schema of a value like ``value``: the same keys (all required, no others) and kinds, bounded sizes."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, (int, float)):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string", "maxLength": chars}
    if depth >= 3 or value is None:
        return {"$ref": "#/$defs/v2"}
    if isinstance(value, list):
        items = _shape_of(value[0], chars, depth + 1) if value else {"$ref": "#/$defs/v2"}
        return {"type": "array", "items": items, "maxItems": 8}
    if isinstance(value, dict):
        props = {str(k): _shape_of(v, chars, depth + 1) for k, v in list(value.items())[:12]}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    return {"$ref": "#/$defs/v2"}


def result_shape(examples: Sequence[ToolExample], chars: int = 2000) -> dict[str, Any] | None:
    """The schema a simulated result must keep, from the tool's real answers: the JSON form of the first answer
    that succeeded (object or list) or an ``{"error": ...}`` object, else plain text. None without a successful
    answer (nothing shows the form)."""
    good = next((e for e in examples if e.ok), None)
    if good is None:
        return None
    # An error is {"error": "..."} (made "Error: ..." on receipt, ``_error_text``): a free string beside the shape
    # lets a small model skip the shape, and xgrammar (vLLM's guided decoding) refuses a pattern with a length bound.
    error = {"type": "object", "properties": {"error": {"type": "string", "maxLength": max(40, chars // 4)}},
             "required": ["error"], "additionalProperties": False}
    try:
        value = json.loads(good.result)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, (dict, list)):
        return {"anyOf": [_shape_of(value, max(40, chars // 8)), error]}
    return {"type": "string", "maxLength": chars}


def _is_object_shape(shape: dict[str, Any] | None) -> bool:
    """Whether a shaped result takes its errors as ``{"error": ...}`` (a JSON shape) rather than as text."""
    return shape is not None and "anyOf" in shape


def _error_text(result: Any) -> Any:
    """A shaped reply's error object as the tool message a failed call carries; any other result as it is."""
    if isinstance(result, dict) and list(result) == ["error"] and isinstance(result["error"], str):
        text = result["error"].strip()
        return text if text.lower().startswith("error") else f"Error: {text}"
    return result


class ToolSimReply(BaseModel):
    """What the tool simulator answers for one call."""

    result: Any = Field(
        description="What the tool returns to the caller: a JSON object, list or string, realistic and "
        "consistent with the state. For a failed request, a string starting with 'Error:'."
    )
    patch: list[PatchOp] = Field(
        default_factory=list,
        max_length=8,
        description="RFC 6902 JSON Patch operations this call makes to the state; [] if it only reads.",
    )


class RealCallResultLike(Protocol):
    content: str
    server: str


class ToolHub(Protocol):
    """What the simulator needs from ``synth.sim.real_exec.RealToolHub`` (structural: no servers in tests).

    ``call`` returns the server's answer or raises (a ``ToolError`` worded as the tool message)."""

    def tools(self) -> list[Any]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> RealCallResultLike: ...

    def snapshot(self) -> dict[str, Any]: ...


class StructuredPool(Protocol):
    async def structured(self, messages: list[dict[str, Any]], schema: type[Any], **kwargs: Any) -> Any: ...


@dataclass
class ToolOutcome:
    """One answered call: the tool message's content, how it was answered, and its patch, if any."""

    content: str
    record: CallRecord
    patch: PatchEvent | None = None


@dataclass
class _Seen:
    name: str
    arguments: str
    content: str


def _tool_name(tool: dict[str, Any]) -> str:
    return str(tool.get("function", {}).get("name", ""))


def _hub_names(hub: ToolHub | None) -> set[str]:
    if hub is None:
        return set()
    # A method on RealToolHub; a plain list attribute is accepted too.
    specs = hub.tools() if callable(hub.tools) else hub.tools
    names = set()
    for spec in specs:
        fn = getattr(spec, "function", None)
        names.add(getattr(fn, "name", None) or _tool_name(spec if isinstance(spec, dict) else {}))
    return names


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def _validator(schema_json: str) -> Any:
    """A compiled validator per distinct schema (checking a schema costs far more than using it)."""
    schema = json.loads(schema_json)
    try:
        validator_cls = jsonschema.validators.validator_for(schema)
        validator_cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        # A harvested schema that is itself broken can't judge arguments; let the call through rather than
        # invent an error the real server would not give.
        log.debug("invalid parameters schema (%s); arguments not checked", exc.message)
        return None
    return validator_cls(schema)


def argument_error(tool: dict[str, Any], raw_arguments: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and check a call's arguments against the tool's JSON Schema; errors read like a real server's."""
    name = _tool_name(tool)
    try:
        arguments = json.loads(raw_arguments or "{}")
    except json.JSONDecodeError as exc:
        return None, f"Error: invalid arguments for tool {name}: not valid JSON ({exc.msg} at char {exc.pos})"
    if not isinstance(arguments, dict):
        got = type(arguments).__name__
        return None, f"Error: invalid arguments for tool {name}: expected an object, got {got}"
    validator = _validator(dumps(tool.get("function", {}).get("parameters") or {"type": "object"}))
    if validator is None:
        return arguments, None
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        at = f" (at '{where}')" if where else ""
        return arguments, f"Error: invalid arguments for tool {name}: {error.message}{at}"
    return arguments, None


def partial_result(result: Any, rng: random.Random) -> Any:
    """Cut a result short the way a paginated or interrupted server does, and say so."""
    if isinstance(result, list) and len(result) > 1:
        keep = rng.randint(1, len(result) - 1)
        return {"items": result[:keep], "partial": True, "note": f"showing {keep} of {len(result)} results"}
    if isinstance(result, dict):
        lists = [k for k, v in result.items() if isinstance(v, list) and len(v) > 1]
        out = dict(result)
        if lists:
            key = max(lists, key=lambda k: len(result[k]))
            out[key] = result[key][: rng.randint(1, len(result[key]) - 1)]
        else:
            # Nothing to paginate: drop trailing fields, as a response cut off mid-stream would.
            keys = list(result)
            for k in keys[max(1, len(keys) // 2):]:
                out.pop(k)
        out["partial"] = True
        return out
    if isinstance(result, str) and len(result) > 20:
        return result[: len(result) // 2] + " ... [truncated: partial response]"
    return {"result": result, "partial": True}


def _content(result: Any) -> str:
    return result if isinstance(result, str) else dumps(result)


class ToolSimulator:
    """Answers the tool calls of one episode, in order; ``calls`` and ``world`` hold what happened."""

    def __init__(
        self,
        tools: list[dict[str, Any]],
        world: WorldState,
        pool: StructuredPool,
        cfg: RolloutsStageConfig,
        *,
        seed: int,
        usage: UsageByRole | None = None,
        hub: ToolHub | None = None,
        examples: Mapping[str, Sequence[ToolExample]] | None = None,
    ) -> None:
        self.tools = {_tool_name(t): t for t in tools}
        self.examples = {name: list(found) for name, found in (examples or {}).items()}
        self.world = world
        self.pool = pool
        self.cfg = cfg
        self.seed = seed
        self.usage = usage
        self.hub = hub
        self._real = _hub_names(hub) if cfg.real_exec else set()
        self._sandbox_ok = cfg.real_exec and RUN_PYTHON in self.tools
        self._index = 0
        self._seen: list[_Seen] = []
        self.calls: list[CallRecord] = []

    def _draw(self, rng: random.Random) -> Injected:
        # One uniform draw against cumulative rates, so each kind's rate is exactly its configured share.
        u = rng.random()
        for kind, rate in (("error", self.cfg.error_rate), ("timeout", self.cfg.timeout_rate),
                           ("empty", self.cfg.empty_rate), ("partial", self.cfg.partial_rate)):
            if u < rate:
                return kind  # type: ignore[return-value]
            u -= rate
        return "none"

    async def call(self, tool_call: ToolCall) -> ToolOutcome:
        """Answer one call, or raise what its tool failed with (see ``failed_call``).

        ``ReplyInvalid`` (and the pool's other errors) mean the simulator's model is unusable, not the tool."""
        index = self._index
        self._index += 1
        # Every call draws, whatever branch it takes, so one call's outcome never shifts another's.
        rng = random.Random(sub_seed(self.seed, "tool", index))
        injected = self._draw(rng)
        outcome = await self._answer(tool_call, index, injected, rng)
        self._keep(tool_call, outcome)
        return outcome

    def failed_call(self, tool_call: ToolCall, exc: BaseException, content: str) -> ToolOutcome:
        """The outcome of a call whose tool raised ``exc``, recorded like any answered call: ``content`` is the
        tool message the boundary made of it; a ``ToolError`` says how the call was answered, else its route."""
        record = self._record(tool_call, "simulated", ok=False)
        record.mode = (exc.mode if isinstance(exc, ToolError) else None) or self.route(tool_call.function.name)
        if isinstance(exc, ToolError):
            record.injected, record.server = exc.injected, exc.server
            record.patch_applied, record.patch_error = exc.patch_applied, exc.patch_error
        outcome = ToolOutcome(content, record)
        self._keep(tool_call, outcome)
        return outcome

    def route(self, name: str) -> str:
        """How a call to ``name`` is answered now: unknown_tool, sandbox, real or simulated."""
        if name not in self.tools:
            return "unknown_tool"
        if name == RUN_PYTHON and self._sandbox_ok:
            return "sandbox"
        if name in self._real and self.hub is not None:
            return "real"
        return "simulated"

    def _keep(self, tool_call: ToolCall, outcome: ToolOutcome) -> None:
        self.calls.append(outcome.record)
        self._seen.append(_Seen(tool_call.function.name, tool_call.function.arguments, outcome.content[:400]))

    def _record(self, tc: ToolCall, mode: str, injected: Injected = "none", ok: bool = True) -> CallRecord:
        return CallRecord(tool_call_id=tc.id, name=tc.function.name, mode=mode,  # type: ignore[arg-type]
                          injected=injected, ok=ok)

    async def _answer(self, tc: ToolCall, index: int, injected: Injected, rng: random.Random) -> ToolOutcome:
        name = tc.function.name
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "(none)"
            raise UnknownTool(f"Error: unknown tool '{name}'. Available tools: {known}")
        arguments, error = argument_error(tool, tc.function.arguments)
        if error is not None or arguments is None:
            raise InvalidArguments(error or "Error: invalid arguments")
        if name == RUN_PYTHON and self._sandbox_ok:
            sandboxed = await self._sandbox(tc, arguments)
            if sandboxed is not None:
                return sandboxed
        if name in self._real and self.hub is not None:
            real = await self.hub.call(name, arguments)  # raises what the server failed with
            record = self._record(tc, "real")
            record.server = real.server
            return ToolOutcome(real.content, record)
        return await self._simulate(tc, tool, arguments, index, injected, rng)

    async def _sandbox(self, tc: ToolCall, arguments: dict[str, Any]) -> ToolOutcome | None:
        try:
            from synth.runtime.sandbox import SandboxError, run_python_async
        except ImportError:  # pragma: no cover - the module ships with the package
            return None
        try:
            res = await run_python_async(str(arguments.get("code", "")))
        except SandboxError as exc:
            # Without isolation the code must not run; simulate instead so the episode can go on.
            log.warning("run_python simulated, sandbox unavailable: %s", exc)
            self._sandbox_ok = False
            return None
        body = {"exit_code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr}
        if res.timed_out:
            body["error"] = f"killed: {res.killed or 'wall_time'}"
        return ToolOutcome(dumps(body), self._record(tc, "sandbox", ok=res.ok))

    async def _simulate(
        self, tc: ToolCall, tool: dict[str, Any], arguments: dict[str, Any], index: int, injected: Injected,
        rng: random.Random,
    ) -> ToolOutcome:
        if injected == "error":
            raise InjectedFailure(rng.choice(SERVER_ERRORS), injected=injected)
        if injected == "timeout":
            raise InjectedFailure(TIMEOUT_MESSAGE, injected=injected)
        if injected == "empty":
            return ToolOutcome(rng.choice(EMPTY_RESULTS), self._record(tc, "simulated", injected))
        prompt = self._prompt(tool, arguments)
        read = reads_only(tc.function.name)
        shape = result_shape(self.examples.get(tc.function.name, []), reply_chars(self.pool, "tool_sim"))
        reply = await self._ask(prompt, sub_seed(self.seed, "tool_sim", index), reads_only=read, shape=shape)
        if injected == "partial":
            # A cut-off response is not trusted to have committed anything: the patch is dropped, and a call that
            # would have changed the state says that it did not, instead of showing half a success.
            if reply.patch:
                raise InjectedFailure(CUT_OFF_WRITE, injected=injected)
            return ToolOutcome(_content(partial_result(reply.result, rng)),
                               self._record(tc, "simulated", injected))
        event = self._commit(tc, reply)
        if not event.applied and not _is_error(reply.result):
            # One fresh sample, told why its change was refused; the result and the patch come from one reply,
            # so what the call says is what the state shows.
            log.info("tool %s: patch rejected (%s); asking once more", tc.function.name, event.error)
            retry = [*prompt, {"role": "assistant", "content": reply.model_dump_json(by_alias=True)},
                     {"role": "user", "content": REJECTED_NOTE.format(
                         error=event.error, paths=", ".join(str(op.get("path")) for op in event.ops))}]  # fmt: skip
            reply = await self._ask(retry, sub_seed(self.seed, "tool_sim", index, "retry"), reads_only=read,
                                    shape=shape)
            event = self._commit(tc, reply)
        if not event.applied and not _is_error(reply.result):
            raise ChangeRejected(REJECTED_CHANGE.format(name=tc.function.name), patch_applied=False,
                                 patch_error=event.error)  # fmt: skip
        if _is_error(reply.result):
            # The simulated tool answered that the call failed: a tool failure like a real server's.
            raise ToolFailed(_content(reply.result), patch_applied=event.applied, patch_error=event.error)
        record = self._record(tc, "simulated")
        record.patch_applied, record.patch_error = event.applied, event.error
        return ToolOutcome(_content(reply.result), record, event)

    async def _ask(self, messages: list[dict[str, Any]], seed: int, reads_only: bool = False,
                   shape: dict[str, Any] | None = None) -> ToolSimReply:  # fmt: skip
        reply: ToolSimReply = await self.pool.structured(
            messages, ToolSimReply, role="tool_sim", seed=seed, usage=self.usage,
            json_schema=reply_schema(reply_chars(self.pool, "tool_sim"), reads_only=reads_only, result=shape),
        )  # fmt: skip
        if shape is not None:
            reply = reply.model_copy(update={"result": _error_text(reply.result)})
        if reads_only and reply.patch:
            # A server without guided decoding can still write one; a call that only reads changes nothing.
            log.info("tool sim: dropped a patch of %d ops from a read-only call", len(reply.patch))
            reply = reply.model_copy(update={"patch": []})
        return reply

    def _commit(self, tc: ToolCall, reply: ToolSimReply) -> PatchEvent:
        if _is_error(reply.result) and reply.patch:
            # A call that answers with an error changed nothing, whatever patch came with it.
            event = PatchEvent(call_id=tc.id, ops=[op.rfc6902() for op in reply.patch], applied=False,
                               error="dropped: the call answered with an error, so it changes nothing")  # fmt: skip
            self.world.events.append(event)
            return event
        return self.world.apply(tc.id, reply.patch)

    def _prompt(self, tool: dict[str, Any], arguments: dict[str, Any]) -> list[dict[str, Any]]:
        fn = tool.get("function", {})
        name = str(fn.get("name", ""))
        state, partial = state_view(self.world.doc, name, arguments, budget=STATE_CHARS)
        system = render(
            "tool_sim",
            tool_name=name,
            description=str(fn.get("description", ""))[:800],
            parameters=dumps(fn.get("parameters", {}))[:1500],
            state=state,
            partial=partial,
            recent=self._seen[-4:],
            reads_only=reads_only(name),
            examples=[{"arguments": dumps(e.arguments), "result": e.result[:EXAMPLE_CHARS], "ok": e.ok}
                      for e in self.examples.get(name, [])[:EXAMPLES_SHOWN]],
            error_object=_is_object_shape(result_shape(self.examples.get(name, []))),
        )
        user = f"Call: {name}({dumps(arguments)})"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _is_error(result: Any) -> bool:
    return isinstance(result, str) and result.lstrip().lower().startswith("error")
