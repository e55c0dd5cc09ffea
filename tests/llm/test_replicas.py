"""Several replicas behind ``llm.endpoints``: the pool sends to all of them, a replica killed mid-run loses nothing
(its requests move to the others), and a replica that comes back on its address is used again.

- integration tier: the shared embedded vLLM server plus a second replica that dies (an instant server process,
  killed with SIGKILL and started again on the same port);
- slow tier: two real embedded vLLM servers of our own on ports 8771/8772, one killed (its process group, SIGKILL)
  mid-run and started again.

The load is what a pipeline puts on the pool: bursts of concurrent requests (a stage keeps up to the endpoints'
``max_concurrency`` in flight).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from synth.bench import instant_server
from synth.config import EmbeddedConfig, EndpointConfig, LLMConfig
from synth.llm.client import LLMPool
from tests.fixtures.cluster import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(5400)]


def _served_model(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url}/models", timeout=30) as resp:
        return json.loads(resp.read())["data"][0]["id"]


def _vllm_served(base_url: str) -> int:
    """Requests a vLLM server finished, from its Prometheus metrics."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return int(sum(float(v) for v in re.findall(r'^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$', text, re.M)))


def _count_by_endpoint(pool: LLMPool) -> Counter[str]:
    """Replies each endpoint gave, counted on the client side (a shared server also serves others)."""
    answered: Counter[str] = Counter()
    send = pool._call

    async def counted(ep: Any, *args: Any, **kwargs: Any) -> Any:
        result = await send(ep, *args, **kwargs)
        answered[ep.config.base_url] += 1
        return result

    pool._call = counted  # type: ignore[method-assign]
    return answered


async def _burst(pool: LLMPool, n: int, tag: str, during: Callable[[int], Any] | None = None) -> list[str]:
    """``n`` concurrent short chats; ``during(k)`` runs after the k-th reply (e.g. to kill a replica)."""
    finished = 0

    async def one(i: int) -> str:
        nonlocal finished
        result = await pool.chat([{"role": "user", "content": f"Say one word about {tag} {i}."}], role="agent",
                                 seed=i, max_tokens=8, temperature=0.0)
        finished += 1
        if during is not None:
            await asyncio.to_thread(during, finished)
        return result.content or ""

    return await asyncio.gather(*(one(i) for i in range(n)))


async def test_real_server_and_a_replica_that_dies_and_comes_back(live_url: str) -> None:
    port = free_port()
    proc = instant_server.start(port)
    try:
        model = _served_model(live_url)
        endpoints = [EndpointConfig(base_url=live_url, max_concurrency=8),
                     EndpointConfig(base_url=instant_server.base_url(port), max_concurrency=8)]
        pool = LLMPool(endpoints, LLMConfig(model=model, max_retries=6))
        answered = _count_by_endpoint(pool)
        replica = instant_server.base_url(port)
        first = await _burst(pool, 24, "rivers")
        assert len(first) == 24
        assert answered[live_url] >= 1 and answered[replica] >= 1  # both replicas answered
        assert instant_server.get_stats(port)["requests"] >= answered[replica]
        killed = {}

        def kill_after(k: int) -> None:
            if k == 4 and not killed:
                proc.kill()  # SIGKILL mid-burst: its requests in flight fail and move to the real server
                proc.wait()
                killed["at"] = k

        before = answered.copy()
        second = await _burst(pool, 24, "owls", during=kill_after)
        assert killed and len(second) == 24  # nothing lost: every request of the burst got its reply
        assert sum(answered.values()) - sum(before.values()) == 24
        back = instant_server.start(port)  # the replica comes back on its address
        try:
            before = answered.copy()
            third = await _burst(pool, 24, "kites")
            assert len(third) == 24
            assert answered[replica] > before[replica]  # ... and is used again
            assert instant_server.get_stats(port)["requests"] >= 1
        finally:
            instant_server.stop(back)
        await pool.aclose()
    finally:
        instant_server.stop(proc)


@pytest.mark.slow
async def test_two_embedded_vllm_replicas_one_killed_and_restarted() -> None:
    from synth.serve import server

    # A first start compiles for minutes on a loaded 2-core machine (600 s was not enough at load average 25).
    cfgs = [EmbeddedConfig(port=port, kv_cache_gb=1, max_model_len=2048, startup_timeout_s=1800)
            for port in (8771, 8772)]
    started = []
    try:
        for cfg in cfgs:
            server.start(cfg)
            started.append(cfg)
        urls = [server.base_url(c) for c in cfgs]
        pool = LLMPool([EndpointConfig(base_url=u, max_concurrency=8) for u in urls],
                       LLMConfig(model=_served_model(urls[0]), max_retries=6))
        answered = _count_by_endpoint(pool)
        before = [_vllm_served(u) for u in urls]
        assert len(await _burst(pool, 16, "rivers")) == 16
        assert all(answered[u] >= 1 for u in urls)  # both answered ...
        assert all(_vllm_served(u) > b for u, b in zip(urls, before, strict=True))  # ... as their servers count

        def kill_after(k: int) -> None:
            if k == 3:
                pid = server._read_pid(cfgs[1])
                assert pid is not None
                os.killpg(os.getpgid(pid), signal.SIGKILL)

        total = sum(answered.values())
        assert len(await _burst(pool, 16, "owls", during=kill_after)) == 16  # the other replica finished it all
        assert sum(answered.values()) - total == 16
        assert not server.is_healthy(cfgs[1])
        server.start(cfgs[1])  # back on its port
        restarted, again = _vllm_served(urls[1]), answered[urls[1]]
        assert len(await _burst(pool, 24, "kites")) == 24
        assert answered[urls[1]] > again and _vllm_served(urls[1]) > restarted  # used again
        await pool.aclose()
    finally:
        for cfg in started:
            server.stop(cfg)
