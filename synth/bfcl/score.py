"""One BFCL item: the request each mode sends, the reply decoded as BFCL decodes it, and BFCL's verdict.

FC mode does what BFCL's OpenAI-compatible FC handler does (``OpenAICompletionsHandler``): the function docs go
through BFCL's ``convert_to_tool`` (BFCL type names to JSON Schema: dict -> object, float -> number with
``format: float``, tuple -> array, any -> string; dots in names -> underscores) as ``tools``; the server's chat
template renders them and its tool parser returns ``tool_calls``; each call is decoded to ``{name:
json.loads(arguments)}``, and a reply without ``tool_calls`` is its text (which then fails to decode, as in BFCL).
Prompt mode sends BFCL's own system prompt (``system_prompt_pre_processing_chat_model``) and decodes the text with
BFCL's ``default_decode_ast_prompting``.

The verdict follows BFCL's eval runner (``_evaluate_single_ast_entry`` and ``_evaluate_single_relevance_entry``,
restated here because ``eval_runner`` imports the whole handler framework): the AST categories are decoded, checked
for the call-list shape, then judged by BFCL's ``ast_checker``; irrelevance is correct when no call is decoded.

One addition in front of BFCL's prompt decoder: it ``eval``s arithmetic it finds in an argument
(``resolve_ast_by_type`` on a ``BinOp``), and an operand there may be any expression, a call included. A reply
whose arithmetic holds anything but numbers, or a power too large to compute quickly, is refused as a decoding
error instead of being run (see ``_unsafe_arithmetic``); every other reply decodes exactly as in BFCL.
"""

from __future__ import annotations

import ast
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from synth.bfcl.data import RELEVANCE, BfclItem, deep
from synth.bfcl.package import FC_MODEL, PROMPT_MODEL, load

Mode = Literal["fc", "prompt"]
MODES: tuple[Mode, ...] = ("fc", "prompt")
MAX_POWER_EXPONENT = 1000  # 10**1000 computes at once; a reply's 9**9**9 would take the decoder minutes


class RawToolCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as the server sent them (a JSON string).")


class Reply(BaseModel):
    """What the server answered, as sent: the text and the parsed tool calls (None: the reply had none)."""

    text: str | None = None
    tool_calls: list[RawToolCall] | None = None
    finish_reason: str | None = None


class Verdict(BaseModel):
    """BFCL's verdict on one reply, with what its decoder made of it."""

    valid: bool
    decoded: Any = Field(default=None, description="The decoded calls, [{name: {param: value}}], when decoded.")
    error: list[Any] = Field(default_factory=list)
    error_type: str | None = None


def fc_tools(item: BfclItem) -> list[dict[str, Any]]:
    """The item's functions as OpenAI ``tools``, converted by BFCL's own ``convert_to_tool``."""
    bfcl = load()
    return bfcl.convert_to_tool(deep(item.functions), bfcl.gorilla_to_openapi,
                                bfcl.model_style.OPENAI_COMPLETIONS)


def request(item: BfclItem, mode: Mode) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chat messages and extra request parameters ``mode`` sends for ``item``."""
    if mode == "fc":
        return deep(item.messages), {"tools": fc_tools(item)}
    messages = load().system_prompt_pre_processing_chat_model(deep(item.messages), deep(item.functions), item.id)
    return messages, {}


def model_result(reply: Reply, mode: Mode) -> Any:
    """The reply as BFCL's handler hands it to ``decode_ast``: FC calls as ``[{name: arguments}]``, else text."""
    if mode == "fc" and reply.tool_calls is not None:
        return [{c.name: c.arguments} for c in reply.tool_calls]
    return reply.text


def _number(node: ast.expr) -> complex | float | int | None:
    """The value of a number literal, signed or not; None for anything else (a nested operation)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        node = node.operand
    return node.value if isinstance(node, ast.Constant) else None


def _unsafe_arithmetic(text: str) -> str | None:
    """Why BFCL's prompt decoder must not see ``text`` (it would ``eval`` more than numbers), else None.

    The text is prepared as ``default_decode_ast_prompting`` and ``ast_parse`` prepare it; text that does not
    parse is left to BFCL's decoder, which fails on it without evaluating anything.
    """
    prepared = text.strip("`\n ")
    prepared = ("" if prepared.startswith("[") else "[") + prepared + ("" if prepared.endswith("]") else "]")
    try:
        tree = ast.parse(prepared.strip().strip("'"), mode="eval")
    except (SyntaxError, ValueError):
        return None
    allowed = (ast.Constant, ast.UnaryOp, ast.BinOp, ast.operator, ast.unaryop)
    for node in ast.walk(tree):
        if not isinstance(node, ast.BinOp):
            continue
        parts = list(ast.walk(node))
        for part in parts:
            if not isinstance(part, allowed) or (
                    isinstance(part, ast.Constant) and not isinstance(part.value, int | float | complex)):
                return f"arithmetic over {type(part).__name__} in {ast.unparse(node)[:80]!r}"
        for part in parts:  # only numbers from here on
            if isinstance(part, ast.BinOp) and isinstance(part.op, ast.Pow) and not (
                    _number(part.left) is not None and (exp := _number(part.right)) is not None
                    and abs(exp) <= MAX_POWER_EXPONENT):
                return f"a power too large to compute: {ast.unparse(part)[:80]!r}"
    return None


def decode(result: Any, mode: Mode) -> list[dict[str, Any]]:
    """BFCL's ``decode_ast`` for ``mode`` (raises, as BFCL's does, on a reply that is not calls)."""
    if mode == "fc":
        # OpenAICompletionsHandler.decode_ast with is_fc_model: text here raises (a str has no .keys()).
        decoded = []
        for invoked in result:
            name = next(iter(invoked.keys()))
            decoded.append({name: json.loads(invoked[name])})
        return decoded
    bfcl = load()
    if isinstance(result, str) and (why := _unsafe_arithmetic(result)):
        raise ValueError(f"refused before BFCL's decoder, which would evaluate it: {why}")
    return bfcl.default_decode_ast_prompting(result, bfcl.return_format.PYTHON, False)


def _jsonable(value: Any) -> Any:
    """The decoded calls as JSON can hold them (BFCL's decoder may return tuples; anything else as its repr)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    return repr(value)


def score(item: BfclItem, mode: Mode, reply: Reply) -> Verdict:
    """BFCL's verdict on ``reply`` to ``item`` in ``mode``."""
    bfcl = load()
    result = model_result(reply, mode)
    if item.category in RELEVANCE:
        # _evaluate_single_relevance_entry: a reply that decodes to a non-empty call list is a call.
        try:
            decoded = decode(result, mode)
        except Exception as exc:  # BFCL counts any decoding failure as "no call"
            return Verdict(valid=True, error=[f"not decoded as calls: {exc}"])
        if bfcl.is_empty_output(decoded):
            return Verdict(valid=True, decoded=_jsonable(decoded))
        return Verdict(valid=False, decoded=_jsonable(decoded),
                       error=["Valid syntax. Successfully decode AST when it should not."],
                       error_type="irrelevance_error:decoder_success")
    # _evaluate_single_ast_entry
    try:
        decoded = decode(result, mode)
    except Exception as exc:  # BFCL: any decoding failure is "ast_decoder:decoder_failed"
        return Verdict(valid=False, error=[f"Invalid syntax. Failed to decode AST. {exc}"],
                       error_type="ast_decoder:decoder_failed")
    if not bfcl.is_function_calling_format_output(decoded):
        return Verdict(valid=False, decoded=_jsonable(decoded),
                       error=["Did not output in the specified format."],
                       error_type="ast_decoder:decoder_wrong_output_format")
    checked = bfcl.ast_checker(deep(item.checker_functions), decoded, deep(item.ground_truth),
                               bfcl.language.PYTHON, item.category, FC_MODEL if mode == "fc" else PROMPT_MODEL)
    return Verdict(valid=bool(checked["valid"]), decoded=_jsonable(decoded),
                   error=_jsonable(checked.get("error") or []), error_type=checked.get("error_type")
                   if not checked["valid"] else None)
