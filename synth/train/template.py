"""The tool-aware chat template: render a trajectory to model text, and find the assistant's part of it.

SmolLM2's own template has no tools, so training and serving use ``templates/tool_chat.jinja``: Hermes-style
``<tool_call>{json}</tool_call>`` blocks, the format vLLM's ``hermes`` tool-call parser reads back. The template
is rendered by the tokenizer's ``apply_chat_template`` (transformers' Jinja environment, the one vLLM renders
with too), so the text trained on is the text the server builds at inference. It is saved with the tokenizer
into every trained checkpoint (``chat_template.jinja``) and passed to vLLM with ``--chat-template``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.errors import SynthError
from synth.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN, TOOL_CALL_PARSER

__all__ = ["TOOL_CALL_CLOSE", "TOOL_CALL_OPEN", "TOOL_CALL_PARSER"]

TEMPLATE_PATH = Path(__file__).parent / "templates" / "tool_chat.jinja"


class TemplateError(SynthError, ValueError):
    """A conversation the template cannot render in a way that training can use."""

    hint = "the row is dropped from training (and counted as unrenderable); fix the rows that produce it"


class Rendered(BaseModel):
    """One conversation as model text, with the character spans the loss is taken on."""

    text: str
    assistant_spans: list[tuple[int, int]] = Field(
        description="[start, end) character ranges of each assistant turn: its text, calls and end token.")


def template_text() -> str:
    return TEMPLATE_PATH.read_text()


def install_template(tokenizer: Any, template: str | None = None) -> Any:
    """Set the tool template on ``tokenizer`` (it is then saved by ``save_pretrained``); returns it."""
    tokenizer.chat_template = template or template_text()
    return tokenizer


def clean_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message with only the keys the template reads and no empty ``tool_calls`` (Parquet rows carry every
    column, set or not)."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content")}
    calls = message.get("tool_calls") or []
    if calls:
        out["tool_calls"] = [{"id": c.get("id"), "type": c.get("type") or "function",
                              "function": {"name": c["function"]["name"],
                                           "arguments": c["function"].get("arguments") or {}}}
                             for c in calls]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
           *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template([clean_message(m) for m in messages], tools=tools or None,
                                         tokenize=False, add_generation_prompt=add_generation_prompt)


def render_for_training(tokenizer: Any, messages: list[dict[str, Any]],
                        tools: list[dict[str, Any]] | None) -> Rendered:
    """The whole conversation, and where each assistant turn sits in it.

    Each assistant turn's span is what the model writes after the generation prompt: the difference between the
    conversation up to that turn (with the prompt) and the conversation through it. That needs a template whose
    renderings are prefixes of one another, which is checked, so a template edit that breaks it fails loudly
    instead of training on the wrong tokens.
    """
    text = render(tokenizer, messages, tools)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], tools, add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1], tools)
        if not through.startswith(prompt) or not text.startswith(through):
            raise TemplateError(f"the chat template does not render message {i} as a continuation of the ones "
                                "before it; assistant tokens cannot be located (check the template's prefixes)")
        # The newline after the end token belongs to the next turn's framing, not to what the model writes.
        end = len(through.rstrip("\n"))
        if end > len(prompt):
            spans.append((len(prompt), end))
    return Rendered(text=text, assistant_spans=spans)
