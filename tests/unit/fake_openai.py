"""A scripted OpenAI-compatible endpoint on 127.0.0.1 for control-flow tests of the LLM layer (never as evidence
that a feature works with a real model: the integration tier does that)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Script = Callable[[int, dict[str, Any]], tuple[int, Any]]


def completion(content: str, prompt_tokens: int = 5, completion_tokens: int = 7) -> dict[str, Any]:
    return {
        "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": "fake-model",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


@dataclass
class FakeServer:
    script: Script
    delay_s: float = 0.0
    delay_for: Callable[[int], float] | None = None  # seconds the n-th request (1-based) takes; overrides delay_s
    requests: list[dict[str, Any]] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    url: str = ""
    health: bool = True  # False: /health stalls, as a wedged server's would
    health_checks: int = 0

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            delay = self.delay_for(len(self.requests)) if self.delay_for else self.delay_s
            if delay:
                await asyncio.sleep(delay)
            status, payload = self.script(len(self.requests), body)
        finally:
            self.inflight -= 1
        return web.Response(status=status, text=json.dumps(payload), content_type="application/json")

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model",
                                                                "created": 0, "owned_by": "test"}]})

    async def _health(self, request: web.Request) -> web.Response:
        self.health_checks += 1
        if not self.health:
            await asyncio.sleep(5)
        return web.Response(status=200)

    async def __aenter__(self) -> FakeServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()  # shutdown_timeout below: stalled handlers must not hold the test
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
