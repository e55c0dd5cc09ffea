"""The call cache: a request answered once is answered from the cache in a later run (no request sent, usage
counted as cached), and two identical calls of one row are two calls, each with its own answer."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from synth.config import EndpointConfig, LLMConfig
from synth.errors import DiskFull
from synth.llm import cache as cache_module
from synth.llm.cache import CallCache, call_scope
from synth.llm.client import LLMPool
from synth.schemas.usage import UsageByRole
from tests.fixtures.fake_openai import FakeServer, completion

CONFIG = LLMConfig(max_retries=1, timeout_s=5, model="fake-model")
ASK = [{"role": "user", "content": "pick a number"}]


async def _row(pool: LLMPool, scope: str, usage: UsageByRole) -> list[str | None]:
    """What one row asks: the same request twice (best-of-n without a seed), then another."""
    call_scope.set(scope)
    out = [(await pool.chat(ASK, role="agent", usage=usage)).content for _ in range(2)]
    out.append((await pool.chat(ASK, role="agent", seed=5, usage=usage)).content)
    return out


async def test_a_resumed_run_replays_each_answer_once_and_counts_it_as_cached(tmp_path: Path) -> None:
    async with FakeServer(lambda n, body: (200, completion(f"answer {n}", 10, 3))) as server:
        first_usage = UsageByRole()
        pool = LLMPool([EndpointConfig(base_url=server.url)], CONFIG, cache=CallCache(tmp_path))
        first = await _row(pool, "tasks/t-1#0", first_usage)
        await pool.aclose()
        assert first == ["answer 1", "answer 2", "answer 3"]  # the two identical calls got their own answers
        assert len(server.requests) == 3

        again_usage = UsageByRole()
        pool = LLMPool([EndpointConfig(base_url=server.url)], CONFIG, cache=CallCache(tmp_path))
        again = await _row(pool, "tasks/t-1#0", again_usage)
        assert again == first and len(server.requests) == 3  # the same answers, in the same order, none sent
        retried = await _row(pool, "tasks/t-1#1", UsageByRole())  # a failed row's new attempt asks afresh
        await pool.aclose()
    assert retried == ["answer 4", "answer 5", "answer 6"]
    assert first_usage.agent.calls == 3 and first_usage.agent.cached_calls == 0
    got = again_usage.agent
    assert (got.calls, got.prompt_tokens, got.completion_tokens) == (0, 0, 0)
    assert (got.cached_calls, got.cached_prompt_tokens, got.cached_completion_tokens) == (3, 30, 9)


async def test_an_answer_is_on_disk_before_the_caller_gets_it_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    async with FakeServer(lambda n, body: (200, completion(f"answer {n}"))) as server:
        cache = CallCache(tmp_path)
        pool = LLMPool([EndpointConfig(base_url=server.url)], CONFIG, cache=cache)
        call_scope.set("r#0")
        await pool.chat(ASK, role="agent", seed=1)
        (part,) = tmp_path.glob("part-*.jsonl")
        assert part.read_text().count("\n") == 1  # written (and fsynced) before chat returned
        await pool.aclose()
        cache.close()
    with part.open("a") as fh:
        fh.write('{"key": "abc", "body": {"id"')  # a kill in the middle of a write
    assert len(CallCache(tmp_path)) == 1


@pytest.mark.parametrize("where", ["_write_all", "fsync"])
async def test_a_full_disk_names_the_cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    cache = CallCache(tmp_path / "calls")
    await cache.put("kept", {"choices": []})
    monkeypatch.setattr(*((cache_module, "_write_all") if where == "_write_all" else (cache_module.os, "fsync")), full)
    with pytest.raises(DiskFull) as err:
        await cache.put("key", {"choices": []})
    cache.close()
    part = next((tmp_path / "calls").glob("part-*.jsonl"))
    assert str(part) in str(err.value) and "nothing written before was lost" in str(err.value)
    assert CallCache(tmp_path / "calls").get("kept") is not None  # what was written before is still answered
