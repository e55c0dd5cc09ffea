"""The LLM layer's control flow: retries, balancing, limits, structured replies, usage per role."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from pydantic import BaseModel, Field

from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import (
    EndpointUnavailable,
    LLMPool,
    ReplyInvalid,
    ReplyMalformed,
    RequestTimedOut,
    derive_timeout_s,
)
from tests.fixtures.fake_openai import FakeServer, completion

FAST = LLMConfig(max_retries=3, timeout_s=5, model="fake-model")


class Answer(BaseModel):
    city: str = Field(description="A city name.")
    population: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_retries_5xx_and_429_then_succeeds() -> None:
    codes = {1: 503, 2: 429}

    def script(n: int, body: dict) -> tuple[int, object]:
        if n in codes:
            return codes[n], {"error": {"message": "busy"}}
        return 200, completion("hello")

    async with FakeServer(script) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        result = await pool.chat([{"role": "user", "content": "hi"}], role="agent", seed=3)
        await pool.aclose()
    assert result.content == "hello"
    assert len(server.requests) == 3
    assert server.requests[-1]["seed"] == 3  # the seed reaches the server


async def test_client_errors_are_not_retried() -> None:
    async with FakeServer(lambda n, b: (400, {"error": {"message": "bad schema"}})) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        with pytest.raises(Exception, match="bad schema"):
            await pool.chat([{"role": "user", "content": "hi"}], role="agent")
        await pool.aclose()
    assert len(server.requests) == 1


async def test_no_endpoint_answers_gives_clear_error() -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    pool = LLMPool([EndpointConfig(base_url=dead)], LLMConfig(max_retries=1, timeout_s=2, model="m"))
    with pytest.raises(EndpointUnavailable) as err:
        await pool.chat([{"role": "user", "content": "hi"}], role="agent")
    assert dead in str(err.value)
    assert "make serve" in err.value.hint and "SYNTH_BASE_URL" in err.value.hint


async def test_dead_endpoint_is_routed_around() -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    async with FakeServer(lambda n, b: (200, completion("ok"))) as server:
        pool = LLMPool([EndpointConfig(base_url=dead), EndpointConfig(base_url=server.url)], FAST)
        results = await asyncio.gather(*(pool.chat([{"role": "user", "content": str(i)}], role="agent")
                                         for i in range(6)))
        await pool.aclose()
    assert all(r.content == "ok" for r in results)
    assert len(server.requests) == 6


async def test_concurrency_limit_per_endpoint_and_balancing() -> None:
    async with FakeServer(lambda n, b: (200, completion("a")), delay_s=0.05) as one, \
            FakeServer(lambda n, b: (200, completion("b")), delay_s=0.05) as two:
        pool = LLMPool([EndpointConfig(base_url=one.url, max_concurrency=3),
                        EndpointConfig(base_url=two.url, max_concurrency=3)], FAST)
        await asyncio.gather(*(pool.chat([{"role": "user", "content": "x"}], role="agent") for _ in range(30)))
        await pool.aclose()
    assert one.max_inflight <= 3 and two.max_inflight <= 3
    assert len(one.requests) >= 10 and len(two.requests) >= 10  # both endpoints carry load


async def test_structured_reply_is_schema_constrained_and_validated() -> None:
    async with FakeServer(lambda n, b: (200, completion(json.dumps({"city": "Oslo", "population": 700000})))) as s:
        pool = LLMPool([EndpointConfig(base_url=s.url)], FAST)
        answer = await pool.structured([{"role": "user", "content": "?"}], Answer, role="judge")
        await pool.aclose()
    assert answer == Answer(city="Oslo", population=700000)
    fmt = s.requests[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["city", "population"]
    assert fmt["json_schema"]["schema"]["additionalProperties"] is False  # no invented keys


async def test_invalid_reply_raises_with_raw_output() -> None:
    raw = '{"city": "Oslo", "population": "many"}'
    async with FakeServer(lambda n, b: (200, completion(raw))) as s:
        pool = LLMPool([EndpointConfig(base_url=s.url)], FAST)
        with pytest.raises(ReplyInvalid) as err:
            await pool.structured([{"role": "user", "content": "?"}], Answer, role="judge")
        await pool.aclose()
    assert err.value.raw == raw
    assert "population" in str(err.value)


async def test_usage_recorded_per_role() -> None:
    from synth.schemas.usage import UsageByRole

    async with FakeServer(lambda n, b: (200, completion("x", prompt_tokens=10, completion_tokens=4))) as s:
        pool = LLMPool([EndpointConfig(base_url=s.url)], FAST)
        row = UsageByRole()
        await pool.chat([{"role": "user", "content": "a"}], role="user_sim", usage=row)
        await pool.chat([{"role": "user", "content": "b"}], role="tool_sim", usage=row)
        await pool.chat([{"role": "user", "content": "c"}], role="tool_sim", usage=row)
        await pool.aclose()
    assert (row.user_sim.calls, row.user_sim.prompt_tokens, row.user_sim.completion_tokens) == (1, 10, 4)
    assert row.tool_sim.calls == 2 and row.tool_sim.completion_tokens == 8
    assert row.agent.calls == 0
    assert pool.usage.total().calls == 3


async def test_invalid_structured_reply_is_sampled_again_with_a_new_seed() -> None:
    replies = {1: '{"city": "Oslo", "population": "ma', 2: '{"city": "Oslo", "population": 7}'}
    async with FakeServer(lambda n, b: (200, completion(replies[n]))) as s:
        pool = LLMPool([EndpointConfig(base_url=s.url)], FAST)
        answer = await pool.structured([{"role": "user", "content": "?"}], Answer, role="judge", seed=5,
                                       temperature=0.0)
        await pool.aclose()
    assert answer.population == 7
    assert s.requests[0]["seed"] == 5 and s.requests[1]["seed"] != 5
    assert s.requests[0]["temperature"] == 0.0 and s.requests[1]["temperature"] >= 0.7  # greedy would repeat
    assert pool.usage.judge.calls == 2  # both attempts are paid for and counted


async def test_slow_but_healthy_server_gets_a_longer_deadline() -> None:
    # The first request needs 1.5 s, its deadline is 1 s: the server answers /health, so the same request is
    # sent again with a doubled deadline (2 s) and succeeds; the endpoint is not counted as failed.
    async with FakeServer(lambda n, b: (200, completion("late but fine")),
                          delay_for=lambda n: 1.5 if n == 1 else 1.2) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)],
                       LLMConfig(max_retries=0, slow_retries=2, timeout_s=1.0, model="fake-model"))
        result = await pool.chat([{"role": "user", "content": "hi"}], role="agent")
        await pool.aclose()
    assert result.content == "late but fine"
    assert len(server.requests) == 2 and server.health_checks == 1
    assert pool._endpoints[0].failures == 0


async def test_longer_reply_gets_a_proportionally_longer_deadline() -> None:
    # 1.5 s to answer, llm.timeout_s 1 s for a 100-token reply: a 200-token request gets 2 s and one try.
    async with FakeServer(lambda n, b: (200, completion("long")), delay_for=lambda n: 1.5) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)],
                       LLMConfig(max_retries=0, slow_retries=0, timeout_s=1.0, max_tokens=100, model="fake-model"))
        result = await pool.chat([{"role": "user", "content": "hi"}], role="judge", max_tokens=200)
        await pool.aclose()
    assert result.content == "long" and len(server.requests) == 1 and server.health_checks == 0


async def test_request_stalling_on_healthy_server_is_a_row_error_not_unavailable() -> None:
    async with FakeServer(lambda n, b: (200, completion("never")), delay_s=3) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)],
                       LLMConfig(max_retries=0, slow_retries=1, timeout_s=0.3, model="fake-model"))
        with pytest.raises(RequestTimedOut) as err:
            await pool.chat([{"role": "user", "content": "hi"}], role="agent")
        await pool.aclose()
    assert not isinstance(err.value, EndpointUnavailable)
    assert "answers /health" in str(err.value) and "llm.timeout_s" in err.value.hint
    assert len(server.requests) == 2  # first try + one slow retry with a doubled deadline


async def test_timeouts_with_failing_health_stop_as_unavailable() -> None:
    async with FakeServer(lambda n, b: (200, completion("never")), delay_s=3, health=False) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)],
                       LLMConfig(max_retries=1, slow_retries=5, timeout_s=0.3, model="fake-model"))
        pool.health_timeout_s = 0.5
        with pytest.raises(EndpointUnavailable, match="no LLM endpoint answered"):
            await pool.chat([{"role": "user", "content": "hi"}], role="agent")
        await pool.aclose()
    assert len(server.requests) == 2  # max_retries=1: a down server is not retried with longer deadlines


def test_derived_timeout_follows_rate_and_max_tokens() -> None:
    fast = derive_timeout_s(384, batched_tokens_per_s=360, concurrency=64)
    slow = derive_timeout_s(384, batched_tokens_per_s=21, concurrency=64)
    assert 120 <= fast < slow <= 1800
    assert slow == 1800  # 21 tok/s over 64 streams: a 384-token reply takes ~20 min, capped
    assert derive_timeout_s(2048, 360, 64) > derive_timeout_s(256, 360, 64)


@pytest.mark.parametrize(("reply", "content_type", "says"), [
    ("<html><body>502 Bad Gateway</body></html>", "text/html", "not a chat completion"),
    (json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}),
     "application/json", "no choices"),
    (json.dumps({**completion("hi"), "usage": {"prompt_tokens": "many", "completion_tokens": None}}),
     "application/json", "usage is not token counts"),
    ('{"id": "x", "choices": [{"message": {"content": "cut', "application/json", "not JSON"),
    ("", "application/json", "not JSON (0 characters)"),
])
async def test_garbage_replies_keep_what_the_server_sent(reply: str, content_type: str, says: str) -> None:
    from aiohttp import web

    async with FakeServer(lambda n, b: (200, None)) as server:
        async def garbage(request: web.Request) -> web.Response:
            server.requests.append(await request.json())
            return web.Response(status=200, text=reply, content_type=content_type)

        server._chat = garbage  # type: ignore[method-assign]
        await server.__aexit__()
        await server.__aenter__()
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        with pytest.raises(ReplyMalformed) as err:
            await pool.structured([{"role": "user", "content": "hi"}], Answer, role="agent")
        await pool.aclose()
    assert says in str(err.value)
    assert err.value.kind == "malformed"
    assert err.value.raw is not None and (reply[:20] in err.value.raw or "502 Bad Gateway" in err.value.raw)
    assert "Traceback" not in err.value.raw


async def test_huge_reply_is_capped_in_the_error_with_its_length() -> None:
    junk = "x" * 2_000_206
    async with FakeServer(lambda n, b: (200, completion(junk))) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)],
                       FAST.model_copy(update={"structured_retries": 0, "max_tokens": 4000}))
        with pytest.raises(ReplyInvalid) as err:
            await pool.structured([{"role": "user", "content": "hi"}], Answer, role="agent")
        await pool.aclose()
    raw = err.value.raw or ""
    # Cut to 8 characters a token of max_tokens first (32,000), then to the error's own cap.
    assert len(raw) < 20_100 and raw.endswith("[... cut at 20000 of 32000 characters]")
    assert "cut off at max_tokens" in str(err.value)


async def test_accepted_content_is_cut_at_a_cap_from_max_tokens_and_marked() -> None:
    async with FakeServer(lambda n, b: (200, completion("word " * 100_000))) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        result = await pool.chat([{"role": "user", "content": "hi"}], role="agent", max_tokens=384)
        short = await pool.chat([{"role": "user", "content": "hi"}], role="agent", max_tokens=200_000)
        await pool.aclose()
    assert result.content is not None and len(result.content) == 8 * 384
    assert result.finish_reason == "length" and result.cut_from == 500_000
    assert short.cut_from is None and short.content is not None and len(short.content) == 500_000
