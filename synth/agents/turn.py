"""The agent's step: one assistant message, either an answer or tool calls, in OpenAI form.

Two ways to get tool calls from a model, with the same messages as the result:
- ``native``: the server's own tool calling (``tools=``, a tool parser on the vLLM side);
- ``schema``: the turn is constrained to a JSON Schema whose choices are "answer" or "call these tools". Each
  tool gets its own branch (``name`` const + that tool's parameters schema), so guided decoding can only write
  arguments the tool accepts. Complex harvested schemas may not compile in the server's grammar engine; then
  the step falls back to a schema with ``arguments: object``, and the tool simulator checks arguments instead.

A third way, for coding tasks (``free_text``): a plain chat reply, no schema and no tools, where the answer
carries its program in a fenced code block that the judge runs against the task's tests. Asked the bank's
requests verbatim, the embedded 135M model wrote passing code in 15 of 216 free-text replies (the blocks of a reply
joined; docs/studies/embedded-acceptance.md) and in 0 of 32 JSON-constrained ``run_python`` calls, whose ``code`` came
out as "123" or a file name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

import openai
from pydantic import BaseModel, Field, RootModel

from synth.llm.client import ReplyInvalid
from synth.prompts import render
from synth.schemas.messages import FunctionCall, Message, ToolCall
from synth.schemas.usage import UsageByRole
from synth.tool_format import TOOL_CALL_OPEN

log = logging.getLogger(__name__)

Mode = Literal["schema", "native", "auto"]
MAX_CALLS = 4
"""Parallel tool calls one step may make at most (``rollouts.max_calls_per_step`` chooses up to this); more would
let a weak model loop inside one reply."""
ANY_TOOL = "*"
"""``require_tool`` value for a step that must call a tool, any of the agent's (OpenAI's ``tool_choice="required"``)."""


class CallChoice(BaseModel):
    name: str = Field(description="Name of the tool to call, exactly as listed.")
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="Arguments object matching the tool's parameters schema."
    )


class AnswerAction(BaseModel):
    action: Literal["answer"] = Field(description="Reply to the user in text.")
    content: str = Field(
        description="Your message to the user: the answer, or a question when you need details from them."
    )


class CallAction(BaseModel):
    action: Literal["call"] = Field(description="Call tools; their results come back before you answer.")
    calls: list[CallChoice] = Field(min_length=1, max_length=MAX_CALLS, description="The tool calls to make.")


class AgentAction(RootModel[Annotated[AnswerAction | CallAction, Field(discriminator="action")]]):
    """The schema-mode assistant turn."""


class ChatPool(Protocol):
    async def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any: ...

    async def structured(self, messages: list[dict[str, Any]], schema: type[Any], **kwargs: Any) -> Any: ...


# Toolsets whose typed schema the server refused; asking again each step would double the requests.
_UNCOMPILABLE: set[str] = set()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def call_id(seed: int, index: int, name: str) -> str:
    """``call_<8 hex>``, derived from the step's seed so a re-run writes the same ids."""
    return "call_" + hashlib.sha256(f"{seed}:{index}:{name}".encode()).hexdigest()[:8]


_DEF_KEYS = ("$defs", "definitions")
GENERIC_ARGUMENTS: dict[str, Any] = {"type": "object"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _arguments_schema(
    parameters: dict[str, Any] | None, shared: dict[str, dict[str, Any]], max_chars: int | None = None
) -> dict[str, Any]:
    """One tool's arguments schema as a branch of the action schema.

    ``$ref``s resolve against the document root, which is now the action schema, so the tool's ``$defs``
    and ``definitions`` move to the root (into ``shared``). A tool whose refs point elsewhere, or whose
    definitions clash with another tool's, gets ``arguments: object`` and relies on the tool simulator.
    """
    params = parameters or {}
    refs = _refs(params)
    if any(not r.startswith(("#/$defs/", "#/definitions/")) for r in refs):
        return GENERIC_ARGUMENTS
    for key in _DEF_KEYS:
        for name, definition in (params.get(key) or {}).items():
            if shared.setdefault(key, {}).setdefault(name, definition) != definition:
                return GENERIC_ARGUMENTS
    schema = {k: v for k, v in params.items() if k not in ("$schema", "$id", "title", *_DEF_KEYS)}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    # Closed objects keep a weak model from inventing argument names; only the decoding grammar changes.
    schema.setdefault("additionalProperties", False)
    if max_chars:
        schema["properties"] = {name: _bounded(prop, max_chars) for name, prop in schema["properties"].items()}
    return schema


def _bounded(prop: Any, max_chars: int) -> Any:
    """A top-level argument's schema with a bound where a weak model would otherwise ramble until max_tokens cuts
    the JSON: free strings (a program, a message) get the answer's character budget, numbers a magnitude bound.
    Not beside a pattern or format: xgrammar refuses ``pattern`` with ``maxLength``."""
    if not isinstance(prop, dict) or {"enum", "const", "pattern", "format"} & set(prop):
        return prop
    if prop.get("type") == "string" and "maxLength" not in prop:
        return {**prop, "maxLength": max_chars}
    if prop.get("type") in ("integer", "number") and not {"minimum", "maximum"} & set(prop):
        return {**prop, "minimum": -ARGUMENT_NUMBER_BOUND, "maximum": ARGUMENT_NUMBER_BOUND}
    return prop


def reply_chars(pool: Any, role: str | None = None, default: int = 2000) -> int:
    """Characters of free text a structured reply of ``role`` may hold so its JSON still closes within the role's
    ``max_tokens`` (a ``RoutedPool`` has one budget per role, ``llm.roles.<role>.max_tokens``).

    Without a bound a weak model rambles until the token limit cuts the JSON and the whole row is lost.
    English runs about 4 characters a token, but junk can run at one: a 135M model fills an answer with digits
    or a code argument with "code_code_..." until the token limit cuts both off. So the bound assumes one
    character a token and keeps 64 tokens for the JSON around the text. Shared by the agent, user and tool
    simulators.
    """
    for_role = getattr(pool, "for_role", None)
    owner = for_role(role) if role is not None and callable(for_role) else pool
    max_tokens = getattr(getattr(owner, "config", None), "max_tokens", None)
    return max(120, max_tokens - 64) if isinstance(max_tokens, int) else default


ARGUMENT_NUMBER_BOUND = 10**15
"""Magnitude bound for unbounded numeric arguments: a weak model otherwise writes digits until max_tokens. Wide
enough for millisecond timestamps and byte counts."""


def action_schema(
    tools: list[dict[str, Any]], *, typed: bool = True, max_chars: int | None = None, call_only: bool = False,
    max_calls: int = MAX_CALLS,
) -> dict[str, Any]:
    """The JSON Schema sent to the server for one schema-mode step (``call_only``: no answer branch, the step
    must call one of ``tools``)."""
    content: dict[str, Any] = {"type": "string", "minLength": 1}
    if max_chars:
        content["maxLength"] = max_chars
    answer = {
        "type": "object",
        "properties": {"action": {"const": "answer"}, "content": content},
        "required": ["action", "content"],
        "additionalProperties": False,
    }
    names = [t["function"]["name"] for t in tools]
    if not names:
        return answer
    shared: dict[str, dict[str, Any]] = {}
    if typed:
        items: dict[str, Any] = {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": t["function"]["name"]},
                        "arguments": _arguments_schema(t["function"].get("parameters"), shared, max_chars),
                    },
                    "required": ["name", "arguments"],
                    "additionalProperties": False,
                }
                for t in tools
            ]
        }
    else:
        items = {
            "type": "object",
            "properties": {"name": {"enum": names}, "arguments": GENERIC_ARGUMENTS},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
    call = {
        "type": "object",
        "properties": {
            "action": {"const": "call"},
            "calls": {"type": "array", "items": items, "minItems": 1, "maxItems": max_calls},
        },
        "required": ["action", "calls"],
        "additionalProperties": False,
    }
    defs = {k: v for k, v in shared.items() if v}
    if call_only:
        return {**call, **defs}
    return {"anyOf": [answer, call], **defs}


def as_action_json(message: Message) -> str:
    """An assistant message as the schema-mode JSON the model itself would have written."""
    if message.tool_calls:
        calls = []
        for tc in message.tool_calls:
            try:
                arguments: Any = json.loads(tc.function.arguments)
            except json.JSONDecodeError:
                arguments = tc.function.arguments
            calls.append({"name": tc.function.name, "arguments": arguments})
        return _dumps({"action": "call", "calls": calls})
    return _dumps({"action": "answer", "content": message.content or ""})


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _type_of(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"][:12])
    if "const" in schema:
        return f"exactly {json.dumps(schema['const'])}"
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type_of(schema.get('items'))}"
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind:
        return str(kind)
    if isinstance(schema.get("$ref"), str):
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " or ".join(_type_of(s) for s in schema[key][:4])
    return "any"


def parameter_lines(parameters: dict[str, Any] | None) -> list[str]:
    """One line per argument: name, type, required or not, description.

    Harvested schemas run to kilobytes of JSON; a small model's context can't hold many of them, and the
    decoding grammar already enforces their exact shape, so the prompt gets this digest instead.
    """
    params = parameters or {}
    required = set(params.get("required") or [])
    lines = []
    for name, schema in (params.get("properties") or {}).items():
        schema = schema if isinstance(schema, dict) else {}
        line = f"{name} ({_type_of(schema)}, {'required' if name in required else 'optional'})"
        if schema.get("description"):
            line += f": {_clip(schema['description'], 200)}"
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        if "properties" in schema or "properties" in items:
            # Nested objects keep a clipped JSON shape: the type name alone says too little.
            nested = {k: v for k, v in schema.items() if k != "description"}
            line += f"; shape: {_clip(_dumps(nested), 300)}"
        lines.append(line)
    return lines


def schema_transcript(messages: list[Message], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as a model without tool support can read it.

    Tool definitions go into the system prompt (agent_turn.j2), the assistant's own turns are shown in the
    JSON it must write, and tool results come back as a user turn, because many chat templates accept only
    system/user/assistant roles and want them alternating.
    """
    system = next((m.content or "" for m in messages if m.role == "system"), "")
    tool_lines = [
        {"name": t["function"]["name"], "description": _clip(t["function"].get("description", ""), 600),
         "parameters": parameter_lines(t["function"].get("parameters"))}
        for t in tools
    ]
    out: list[dict[str, Any]] = [
        {"role": "system", "content": render("agent_turn", system_prompt=system, tools=tool_lines)}
    ]
    names: dict[str, str] = {}
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append({"role": "user", "content": "Tool results:\n" + "\n".join(pending)})
            pending.clear()

    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            name = names.get(m.tool_call_id or "", m.name or "tool")
            pending.append(f"[{name} {m.tool_call_id}] {m.content or ''}")
            continue
        flush()
        if m.role == "assistant":
            for tc in m.tool_calls or []:
                names[tc.id] = tc.function.name
            out.append({"role": "assistant", "content": as_action_json(m)})
        else:
            out.append({"role": "user", "content": m.content or ""})
    flush()
    return out


def _to_message(action: AnswerAction | CallAction, seed: int) -> Message:
    if isinstance(action, AnswerAction):
        return Message(role="assistant", content=action.content)
    calls = [
        ToolCall(id=call_id(seed, i, c.name),
                 function=FunctionCall(name=c.name, arguments=_dumps(c.arguments)))
        for i, c in enumerate(action.calls)
    ]
    return Message(role="assistant", content=None, tool_calls=calls)


def _is_schema_rejection(exc: openai.BadRequestError) -> bool:
    text = str(exc).lower()
    # A prompt over the context window is also a 400, and no other schema would fix it.
    return not ("context length" in text or "maximum context" in text or "too long" in text)


async def _schema_step(
    pool: ChatPool,
    messages: list[Message],
    tools: list[dict[str, Any]],
    *,
    seed: int,
    usage: UsageByRole | None,
    require_tool: str | None = None,
    answer_only: bool = False,
    max_calls: int = MAX_CALLS,
) -> tuple[Message, str | None]:
    transcript = schema_transcript(messages, tools)
    # The model still sees every tool; only the grammar narrows to a call of the required one (or to an answer).
    allowed = ([t for t in tools if t["function"]["name"] == require_tool]
               if require_tool and require_tool != ANY_TOOL else tools)
    if answer_only:
        allowed = []
    call_only = bool(require_tool)
    key = _dumps(sorted(_dumps(t) for t in allowed))
    typed = key not in _UNCOMPILABLE
    budget = reply_chars(pool, "agent")
    try:
        action = await pool.structured(transcript, AgentAction, role="agent", seed=seed, usage=usage,
                                       json_schema=action_schema(allowed, typed=typed, max_chars=budget,
                                                                 call_only=call_only, max_calls=max_calls))
    except openai.BadRequestError as exc:
        if not typed or not _is_schema_rejection(exc):
            raise
        log.warning("server refused the typed tool schema (%s); falling back to arguments: object", exc)
        _UNCOMPILABLE.add(key)
        action = await pool.structured(transcript, AgentAction, role="agent", seed=seed, usage=usage,
                                       json_schema=action_schema(allowed, typed=False, max_chars=budget,
                                                                 call_only=call_only, max_calls=max_calls))
    root = action.root
    return _to_message(root, seed), _dumps(root.model_dump())


async def _native_step(
    pool: ChatPool,
    messages: list[Message],
    tools: list[dict[str, Any]],
    *,
    seed: int,
    usage: UsageByRole | None,
    require_tool: str | None = None,
    answer_only: bool = False,
    bad_words: Sequence[str] = (),
    max_calls: int = MAX_CALLS,
) -> tuple[Message, str | None]:
    params: dict[str, Any] = {"tools": tools} if tools else {}
    if max_calls == 1 and tools and not answer_only:
        # OpenAI's parallel_tool_calls=false: the server returns the reply's first call only (vLLM filters the
        # rest), the one bound native mode has. A fine-tuned 135M writes its call twice in one reply.
        params["parallel_tool_calls"] = False
    if answer_only and tools:
        params["tool_choice"] = "none"
    if answer_only and bad_words:
        # tool_choice=none does not stop the model from writing a call as text; vLLM's bad_words does.
        params["extra_body"] = {"bad_words": list(bad_words)}
    if require_tool == ANY_TOOL:
        params["tool_choice"] = "required"
    elif require_tool:
        params["tool_choice"] = {"type": "function", "function": {"name": require_tool}}
    result = await pool.chat([m.openai() for m in messages], role="agent", seed=seed, usage=usage, **params)
    msg = result.message
    calls = []
    raw = msg.model_dump_json() if hasattr(msg, "model_dump_json") else str(msg)
    for i, tc in enumerate(getattr(msg, "tool_calls", None) or []):
        arguments = tc.function.arguments
        if not isinstance(arguments, str):
            arguments = _dumps(arguments)
        try:
            FunctionCall(name=tc.function.name, arguments=arguments or "{}").parsed_arguments()
        except ValueError as exc:
            # Schema mode can't write such a call; in native mode it is the same bad reply, and kept it would
            # break the dataset's arguments-as-dicts view.
            why = f"tool call {tc.function.name!r}: arguments are not a JSON object: {exc}"
            raise ReplyInvalid(why, raw) from exc
        calls.append(ToolCall(id=tc.id or call_id(seed, i, tc.function.name),
                              function=FunctionCall(name=tc.function.name, arguments=arguments or "{}")))
        if "parallel_tool_calls" in params:
            break  # a server that ignores the flag: its first call, as one that honours it returns
    if calls:
        return Message(role="assistant", content=msg.content or None, tool_calls=calls), raw
    if answer_only and TOOL_CALL_OPEN in (msg.content or ""):
        # tool_choice=none only keeps the server from parsing calls; a call written as text is no answer, and
        # kept it would teach a trained model to write its calls where no parser reads them.
        raise ReplyInvalid("a step that must answer wrote a tool call as text", raw)
    return Message(role="assistant", content=msg.content or ""), raw


def text_transcript(messages: list[Message]) -> list[dict[str, Any]]:
    """The conversation for a free-text step: the agent's own system prompt, then plain alternating turns.

    Nothing is added to the system prompt: told to answer "in one ```python block", the 135M model passed 3 of 72
    requests against 7 of 72 with its own prompt, same seeds (docs/studies/embedded-acceptance.md). Tool turns (none
    in a free-text episode, but a caller may mix) are shown as the schema-mode transcript shows them: calls as
    action JSON, results as a user turn.
    """
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for m in messages:
        if m.role == "tool":
            pending.append(f"[{m.name or 'tool'} {m.tool_call_id}] {m.content or ''}")
            continue
        if pending:
            out.append({"role": "user", "content": "Tool results:\n" + "\n".join(pending)})
            pending.clear()
        if m.role == "assistant":
            out.append({"role": "assistant", "content": as_action_json(m) if m.tool_calls else (m.content or "")})
        else:
            out.append({"role": m.role, "content": m.content or ""})
    if pending:
        out.append({"role": "user", "content": "Tool results:\n" + "\n".join(pending)})
    return out


async def _text_step(
    pool: ChatPool, messages: list[Message], *, seed: int, usage: UsageByRole | None
) -> tuple[Message, str | None]:
    result = await pool.chat(text_transcript(messages), role="agent", seed=seed, usage=usage)
    content = result.content or ""
    if not content.strip():
        raise ReplyInvalid("free-text agent reply is empty", content)
    # A reply cut at max_tokens is kept as written: a code block it left open is no program (code_tests).
    return Message(role="assistant", content=content), content


async def agent_step(
    pool: ChatPool,
    messages: list[Message],
    tools: list[dict[str, Any]],
    *,
    seed: int,
    usage: UsageByRole | None = None,
    mode: Mode = "schema",
    require_tool: str | None = None,
    free_text: bool = False,
    answer_only: bool = False,
    max_calls: int = MAX_CALLS,
    bad_words: Sequence[str] = (),
) -> tuple[Message, str | None]:
    """One assistant message for ``messages`` (which start with the agent's system prompt) and its raw reply.

    ``require_tool``: the step must call this tool (one of ``tools``), as OpenAI's named ``tool_choice``; ``"*"``
    (ANY_TOOL): it must call one of ``tools``, its choice which (``tool_choice="required"``).
    ``answer_only``: the step must answer, calling no tool (``tool_choice="none"``; in schema mode the grammar has
    only the answer branch), while the model still sees the tools and the calls it made.
    ``free_text``: a plain text answer with no schema and no tool call (coding tasks answered with a code block).
    ``max_calls``: parallel calls the step may make (schema mode: the grammar's bound; native mode bounds only 1,
    as ``parallel_tool_calls=false``: the reply's first call is kept).
    ``bad_words``: with ``answer_only`` in native mode, strings the answer may not contain (vLLM's bad_words; schema
    mode needs none, its grammar has only the answer branch).

    Raises ``ReplyInvalid`` (raw output attached) when the reply does not validate, ``EndpointUnavailable``
    when no endpoint answers.
    """
    if answer_only and require_tool:
        raise ValueError("an answer-only step calls no tool, so it cannot require one")
    if require_tool == ANY_TOOL and not tools:
        raise ValueError("require_tool='*' (call any tool) needs at least one tool")
    if require_tool and require_tool != ANY_TOOL and require_tool not in [t["function"]["name"] for t in tools]:
        raise ValueError(f"require_tool {require_tool!r} is not one of the agent's tools")
    if free_text:
        if require_tool:
            raise ValueError("a free-text step calls no tool, so it cannot require one")
        return await _text_step(pool, messages, seed=seed, usage=usage)
    if mode == "native":
        return await _native_step(pool, messages, tools, seed=seed, usage=usage, require_tool=require_tool,
                                  answer_only=answer_only, bad_words=bad_words, max_calls=max_calls)
    if mode in ("schema", "auto"):
        return await _schema_step(pool, messages, tools, seed=seed, usage=usage, require_tool=require_tool,
                                  answer_only=answer_only, max_calls=max_calls)
    raise ValueError(f"unknown tool-calling mode {mode!r}; use 'schema', 'native' or 'auto'")
