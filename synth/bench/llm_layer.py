"""Throughput of the pipeline's LLM layer against the raw server, same requests, same concurrency, one run.

(a) ``raw``: ``AsyncOpenAI`` straight to the server, an ``asyncio.Semaphore`` for the concurrency;
(b) ``layer``: ``LLMPool.chat`` (balancing, retries, usage accounting) with the same limit.
Each side runs twice, interleaved (raw, layer, raw, layer), to spread the machine's noise over both; the rate
is generated tokens over wall time. Target: layer / raw >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from openai import AsyncOpenAI

from synth.config import EmbeddedConfig, EndpointConfig, LLMConfig
from synth.llm.client import LLMPool
from synth.machine import machine_info
from synth.paths import REPO_ROOT

PROMPTS = [
    "Write a short paragraph about {topic}.",
    "List five facts about {topic}.",
    "Explain {topic} to a child in a few sentences.",
    "Give three tips related to {topic}.",
]
TOPICS = ["trains", "volcanoes", "bread", "chess", "rivers", "owls", "tea", "bridges", "glaciers", "kites"]


def requests(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": PROMPTS[i % len(PROMPTS)].format(topic=TOPICS[i % len(TOPICS)])}]
            for i in range(n)]


async def run_raw(base_url: str, model: str, reqs, concurrency: int, max_tokens: int) -> tuple[int, float]:
    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, msgs) -> int:
        async with sem:
            r = await client.chat.completions.create(model=model, messages=msgs, max_tokens=max_tokens,
                                                     temperature=0.7, seed=i)
            return r.usage.completion_tokens

    t = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i, m) for i, m in enumerate(reqs))))
    wall = time.perf_counter() - t
    await client.close()
    return tokens, wall


async def run_layer(base_url: str, model: str, reqs, concurrency: int, max_tokens: int) -> tuple[int, float]:
    pool = LLMPool([EndpointConfig(base_url=base_url, max_concurrency=concurrency)], LLMConfig(model=model))

    async def one(i: int, msgs) -> int:
        r = await pool.chat(msgs, role="agent", seed=i, max_tokens=max_tokens, temperature=0.7)
        return r.usage.completion_tokens

    t = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i, m) for i, m in enumerate(reqs))))
    wall = time.perf_counter() - t
    await pool.aclose()
    return tokens, wall


async def bench(base_url: str, n: int, concurrency: int, max_tokens: int, repeats: int) -> dict:
    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY")
    model = (await client.models.list()).data[0].id
    await client.close()
    reqs = requests(n)
    await run_raw(base_url, model, reqs[: min(8, n)], concurrency, 16)  # warm-up, not counted
    sides: dict[str, list[tuple[int, float]]] = {"raw": [], "layer": []}
    for _ in range(repeats):
        sides["raw"].append(await run_raw(base_url, model, reqs, concurrency, max_tokens))
        sides["layer"].append(await run_layer(base_url, model, reqs, concurrency, max_tokens))
    rates = {k: sum(t for t, _ in v) / sum(w for _, w in v) for k, v in sides.items()}
    return {
        "benchmark": "llm_layer_vs_raw", "machine": machine_info(), "server": base_url, "model": model,
        "requests": n, "concurrency": concurrency, "max_tokens": max_tokens, "repeats": repeats,
        "raw_tokens_per_s": round(rates["raw"], 1), "layer_tokens_per_s": round(rates["layer"], 1),
        "ratio": round(rates["layer"] / rates["raw"], 3), "target_ratio": 0.95,
        "runs": {k: [{"tokens": t, "wall_s": round(w, 2)} for t, w in v] for k, v in sides.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default=None, help="Server to measure (default: the embedded one).")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.base_url:
        result = asyncio.run(bench(args.base_url, args.requests, args.concurrency, args.max_tokens, args.repeats))
    else:
        from synth.serve import server

        cfg = EmbeddedConfig()
        started = not server.is_healthy(cfg)
        if started:
            server.start(cfg)
        try:
            result = asyncio.run(bench(server.base_url(cfg), args.requests, args.concurrency, args.max_tokens,
                                       args.repeats))
        finally:
            if started:
                server.stop(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "llm_layer.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw {result['raw_tokens_per_s']} tok/s, layer {result['layer_tokens_per_s']} tok/s, "
          f"ratio {result['ratio']} (target >= 0.95) -> {path}")


if __name__ == "__main__":
    main()
