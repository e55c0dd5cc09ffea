"""The tool template: a trajectory with tool calls renders to Hermes text and its calls read back; the loss mask
covers exactly the assistant's turns; a trained checkpoint served by real vLLM with the template and the hermes
parser returns the calls as ``tool_calls`` and answers from the tool's result."""

from __future__ import annotations

import json
import re

import pytest

from tests.fixtures.train import TOOL, conversation, tool_calling_checkpoint

CALL_BLOCK = re.compile(r"<tool_call>\n(.*?)\n</tool_call>", re.DOTALL)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from synth.serve.checkpoint import ensure_checkpoint
    from synth.train.template import install_template

    return install_template(AutoTokenizer.from_pretrained(ensure_checkpoint()))


def _two_calls() -> list[dict]:
    msgs = conversation("Oslo", 3)
    # Two calls in one turn, one with arguments as an object (SFT view), one as a JSON string (OpenAI form).
    msgs[2]["tool_calls"].append({"id": "call_b", "type": "function",
                                  "function": {"name": "get_weather", "arguments": '{"city": "Bergen"}'}})
    msgs.insert(4, {"role": "tool", "tool_call_id": "call_b", "content": '{"temp_c": 5}'})
    return msgs


def test_calls_round_trip_through_the_text(tokenizer) -> None:
    from synth.train.template import render

    text = render(tokenizer, _two_calls(), [TOOL])
    # The system turn shows the format with placeholders; the calls are in the conversation after it.
    conversation_text = text.split("<|im_end|>", 1)[1]
    calls = [json.loads(block) for block in CALL_BLOCK.findall(conversation_text)]
    assert calls == [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                     {"name": "get_weather", "arguments": {"city": "Bergen"}}]
    # Tools are listed in the system turn, results come back as one user turn of tool_response blocks.
    system = text.split("<|im_end|>")[0]
    assert "You answer weather questions." in system and json.dumps(TOOL) in system
    assert text.count("<tool_response>") == 2 and text.count("<|im_start|>user") == 2


def test_vllm_hermes_parser_reads_the_calls(tokenizer) -> None:
    """vLLM's own parser class (the one ``--tool-call-parser hermes`` loads) on the assistant's text."""
    from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser

    from synth.train.template import render_for_training

    rendered = render_for_training(tokenizer, _two_calls(), [TOOL])
    start, end = rendered.assistant_spans[0]
    model_text = rendered.text[start:end].removesuffix("<|im_end|>")
    info = Hermes2ProToolParser(tokenizer).extract_tool_calls(model_text, request=None)
    assert info.tools_called
    assert [(c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls] == [
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Bergen"})]


def test_loss_mask_is_the_assistant_turns(tokenizer) -> None:
    from synth.train.data import IGNORE, tokenize

    ex = tokenize(tokenizer, {"messages": _two_calls(), "tools": [TOOL]})
    trained = tokenizer.decode([t for t, label in zip(ex.input_ids, ex.labels, strict=True) if label != IGNORE])
    assert trained == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
                       '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Bergen"}}\n</tool_call>'
                       '<|im_end|>It is 3 degrees in Oslo.<|im_end|>')


def test_generation_prompt_is_a_prefix_of_the_turn(tokenizer) -> None:
    from synth.train.template import render

    msgs = conversation("Oslo", 3)
    prompt = render(tokenizer, msgs[:2], [TOOL], add_generation_prompt=True)
    assert render(tokenizer, msgs[:3], [TOOL]).startswith(prompt) and prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.integration
def test_served_checkpoint_returns_tool_calls(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Real vLLM: a checkpoint trained by ``synth train`` is served as it is, with the template and the hermes
    parser; it calls the tool through ``tool_calls``, then answers from the tool's result."""
    from openai import OpenAI

    from synth.config import EmbeddedConfig
    from synth.serve import server
    from synth.train.template import TEMPLATE_PATH, TOOL_CALL_PARSER

    checkpoint = tool_calling_checkpoint(tmp_path_factory.getbasetemp() / "tool-caller")
    emb = EmbeddedConfig(port=8777, model_dir=checkpoint, served_name="tool-caller", chat_template=TEMPLATE_PATH,
                         tool_call_parser=TOOL_CALL_PARSER, kv_cache_gb=1, max_model_len=2048)
    assert not server.is_healthy(emb), "port 8777 is taken; this test needs it free"
    server.start(emb)
    try:
        client = OpenAI(base_url=server.base_url(emb), api_key="EMPTY", timeout=300)
        msgs = conversation("Oslo", 3)
        first = client.chat.completions.create(model="tool-caller", messages=msgs[:2], tools=[TOOL],
                                               temperature=0, max_tokens=64)
        reply = first.choices[0].message
        assert reply.tool_calls, f"no tool_calls; the server returned content {reply.content!r}"
        call = reply.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
        assert first.choices[0].finish_reason == "tool_calls"
        # rollouts.max_calls_per_step=1 in native mode sends parallel_tool_calls=false: the server takes it and
        # returns the same single call.
        single = client.chat.completions.create(model="tool-caller", messages=msgs[:2], tools=[TOOL],
                                                temperature=0, max_tokens=64, parallel_tool_calls=False)
        assert [c.function.name for c in single.choices[0].message.tool_calls or []] == ["get_weather"]
        history = [*msgs[:2], {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                   {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 3}'}]
        second = client.chat.completions.create(model="tool-caller", messages=history, tools=[TOOL],
                                                temperature=0, max_tokens=64)
        assert second.choices[0].message.content == "It is 3 degrees in Oslo."
    finally:
        server.stop(emb)
