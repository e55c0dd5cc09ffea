"""What a user is told when an endpoint answers badly: rate-limited (429, with its Retry-After) is told apart
from a failing server (5xx, its body quoted) and from a URL that is no OpenAI server (its page quoted)."""

from __future__ import annotations

import time

import pytest

from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import (
    MALFORMED_STOP,
    QUOTE_CHARS,
    LLMPool,
    NotOpenAI,
    RateLimited,
    Refused,
    ReplyMalformed,
    ServerFailing,
)
from tests.fixtures.fake_openai import FakeServer, Raw, completion

FAST = LLMConfig(max_retries=1, timeout_s=5, model="fake-model")
PAGE = "<html><head><title>Sign in</title></head><body>" + "Please sign in to continue. " * 30 + "</body></html>"
HI = [{"role": "user", "content": "hi"}]


async def test_429s_say_rate_limited_with_retry_after_and_wait_it_out() -> None:
    reply = Raw('{"error": {"message": "slow down"}}', "application/json", {"Retry-After": "0.4"})
    async with FakeServer(lambda n, b: (429, reply)) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        started = time.monotonic()
        with pytest.raises(RateLimited) as err:
            await pool.chat(HI, role="agent")
        waited = time.monotonic() - started
        await pool.aclose()
    message = err.value.describe()
    assert "rate-limited" in message and "Retry-After: 0.4" in message and server.url in message
    assert "make serve" not in message  # the server is up: starting one is the wrong advice
    assert waited >= 0.4  # the retry came after the time the server asked for
    assert len(server.requests) == 2


async def test_server_errors_quote_the_body_and_name_the_url() -> None:
    async with FakeServer(lambda n, b: (502, Raw(PAGE))) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        with pytest.raises(ServerFailing) as err:
            await pool.chat(HI, role="agent")
        await pool.aclose()
    message = str(err.value)
    assert "HTTP 502" in message and server.url in message and PAGE[:QUOTE_CHARS] in message
    assert PAGE[:QUOTE_CHARS + 1] not in message and f"({len(PAGE)} characters)" in message
    assert "rate-limited" not in message and "make serve" not in err.value.hint


async def test_a_page_instead_of_a_completion_names_the_url_and_quotes_it() -> None:
    async with FakeServer(lambda n, b: (200, Raw(PAGE))) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        with pytest.raises(ReplyMalformed) as err:
            await pool.chat(HI, role="agent")
        assert not isinstance(err.value, NotOpenAI)  # one bad reply is the row's error, not the stage's end
        for _ in range(MALFORMED_STOP - 2):
            with pytest.raises(ReplyMalformed):
                await pool.chat(HI, role="agent")
        with pytest.raises(NotOpenAI) as stop:  # never one completion from it: the URL is wrong, stop
            await pool.chat(HI, role="agent")
        await pool.aclose()
    assert server.url in str(err.value) and "not a chat completion" in str(err.value)
    assert PAGE[:QUOTE_CHARS] in str(err.value) and "rate-limited" not in str(err.value)
    assert err.value.raw == PAGE  # the row keeps what was sent
    assert server.url in str(stop.value) and f"{MALFORMED_STOP} requests in a row" in str(stop.value)


async def test_garbage_from_a_server_that_answered_before_stays_a_row_error() -> None:
    async with FakeServer(lambda n, b: (200, completion("ok") if n == 1 else Raw(PAGE))) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        assert (await pool.chat(HI, role="agent")).content == "ok"
        for _ in range(MALFORMED_STOP + 1):
            with pytest.raises(ReplyMalformed) as err:
                await pool.chat(HI, role="agent")
            assert not isinstance(err.value, NotOpenAI)
        await pool.aclose()


async def test_a_page_instead_of_a_model_list_is_named_not_a_crash() -> None:
    async with FakeServer(lambda n, b: (200, completion("ok")), models=Raw(PAGE)) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], LLMConfig(max_retries=1, timeout_s=5))
        with pytest.raises(NotOpenAI) as err:
            await pool.chat(HI, role="agent")
        await pool.aclose()
    assert f"{server.url}/models" in str(err.value) and PAGE[:QUOTE_CHARS] in str(err.value)
    assert "/v1" in err.value.hint


@pytest.mark.parametrize(("status", "says"), [(401, "API key"), (404, "base URL")])
async def test_a_refused_key_or_url_stops_at_once_naming_it(status: int, says: str) -> None:
    async with FakeServer(lambda n, b: (status, {"error": {"message": "Invalid API key"}})) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST)
        with pytest.raises(Refused) as err:
            await pool.chat(HI, role="agent")
        await pool.aclose()
    assert len(server.requests) == 1  # not retried: no retry fares better
    assert f"{server.url} refused the request (HTTP {status}" in str(err.value) and "Invalid API key" in str(err.value)
    assert says in err.value.hint and "make serve" not in err.value.hint


async def test_429s_mixed_with_server_errors_still_say_rate_limited() -> None:
    async with FakeServer(lambda n, b: (429, Raw("busy")) if n % 2 else (503, Raw("overloaded"))) as server:
        pool = LLMPool([EndpointConfig(base_url=server.url)], FAST.model_copy(update={"max_retries": 2}))
        with pytest.raises(RateLimited) as err:
            await pool.chat(HI, role="agent")
        await pool.aclose()
    assert "rate-limited (HTTP 429) or failing (HTTP 5xx)" in str(err.value) and "'overloaded'" in str(err.value)
