"""The embedded server's speed on the pipeline's real request mix, per serving dtype and CPU setting, in one run.

The mix is a pipeline run's own requests, recorded by the LLM layer (``SYNTH_RECORD_REQUESTS=path``): structured
replies with each stage's JSON Schema, agent turns with their tool grammars, judge verdicts. Free chat alone
overstates the rate (guided decoding costs about a quarter of it), so both are measured.

Two servers at a time run side by side on their own ports; rounds alternate between them (A, B, A, B), so the
machine's noise falls on both, and each figure is the median over rounds. Pairs: bf16 vs fp32 (the dtype choice),
then tcmalloc preloaded vs not, at the dtype this CPU gets by default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI
from pydantic import BaseModel

from synth.config import EmbeddedConfig
from synth.errors import SynthError
from synth.machine import machine_info
from synth.paths import REPO_ROOT
from synth.serve import server
from synth.serve.cpu import choose_dtype, read_cpu_info

MIX = REPO_ROOT / "bench" / "requests" / "default_mix.jsonl"
FREE = [{"role": "user", "content": f"Write a short paragraph about {t}."} for t in
        ("trains", "volcanoes", "bread", "chess", "rivers", "owls", "tea", "bridges")]


class BenchSetupError(SynthError):
    """The benchmark cannot start: no recorded requests, or a port it needs is taken."""


class Variant(BaseModel):
    name: str
    dtype: str
    preload_tcmalloc: bool
    port: int


def load_mix(path: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise BenchSetupError(f"{path} holds no requests",
                              hint="record some with SYNTH_RECORD_REQUESTS=<file> synth pipeline")
    random.Random(seed).shuffle(rows)
    return [rows[i % len(rows)] for i in range(n)]


async def _replay(client: AsyncOpenAI, model: str, req: dict[str, Any]) -> int:
    params = {k: v for k, v in req["params"].items() if k not in ("timeout",)}
    resp = await client.chat.completions.create(model=model, messages=req["messages"], **params)
    return resp.usage.completion_tokens if resp.usage else 0


async def replay_all(client: AsyncOpenAI, model: str, reqs: list[dict[str, Any]],
                     concurrency: int) -> tuple[int, float]:
    """Send ``reqs`` as recorded, ``concurrency`` at a time: (completion tokens, wall seconds)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(req: dict[str, Any]) -> int:
        async with sem:
            return await _replay(client, model, req)

    t0 = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(r) for r in reqs)))
    return tokens, time.perf_counter() - t0


async def _rate(client: AsyncOpenAI, model: str, reqs: list[dict[str, Any]], concurrency: int) -> float:
    tokens, wall = await replay_all(client, model, reqs, concurrency)
    return tokens / wall


def _free(n: int, max_tokens: int) -> list[dict[str, Any]]:
    return [{"messages": [FREE[i % len(FREE)]], "params": {"max_tokens": max_tokens, "temperature": 0.7,
                                                           "seed": i}} for i in range(n)]


async def _round(url: str, mix: list[dict[str, Any]], concurrency: int) -> dict[str, float]:
    client = AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=1800)
    try:
        model = (await client.models.list()).data[0].id
        single = await _rate(client, model, _free(1, 64), 1)
        free = await _rate(client, model, _free(len(mix), 64), concurrency)
        structured = await _rate(client, model, mix, concurrency)
    finally:
        await client.close()
    return {"single_stream": single, "free_chat": free, "pipeline_mix": structured}


def _start(v: Variant, kv_gb: int) -> EmbeddedConfig:
    cfg = EmbeddedConfig(port=v.port, dtype=v.dtype, preload_tcmalloc=v.preload_tcmalloc, kv_cache_gb=kv_gb)  # type: ignore[arg-type]
    if server.is_healthy(cfg):
        raise BenchSetupError(f"port {v.port} is taken by a running server", hint="stop it or pick --base-port")
    server.start(cfg)
    return cfg


def compare(pair: list[Variant], mix: list[dict[str, Any]], concurrency: int, rounds: int,
            kv_gb: int) -> dict[str, Any]:
    cfgs = []
    try:
        for v in pair:
            cfgs.append(_start(v, kv_gb))
        for cfg in cfgs:  # warm-up: first requests compile kernels and grammars
            asyncio.run(_round(server.base_url(cfg), mix[:8], concurrency))
        results: dict[str, list[dict[str, float]]] = {v.name: [] for v in pair}
        for _ in range(rounds):
            for v, cfg in zip(pair, cfgs, strict=True):
                results[v.name].append(asyncio.run(_round(server.base_url(cfg), mix, concurrency)))
        infos = {v.name: (server.server_info(cfg) or None) for v, cfg in zip(pair, cfgs, strict=True)}
    finally:
        for cfg in cfgs:
            server.stop(cfg)
    out: dict[str, Any] = {}
    for v in pair:
        med = {k: round(statistics.median(r[k] for r in results[v.name]), 1) for k in results[v.name][0]}
        info = infos[v.name]
        out[v.name] = {**v.model_dump(exclude={"port"}), "tokens_per_s": med,
                       "rounds": [{k: round(x, 1) for k, x in r.items()} for r in results[v.name]],
                       "env_notes": info.env_notes if info else []}
    return out


def to_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# Embedded server speed: {m['cpu']}, {m['cores']} cores ({m['date']})", "",
             f"CPU flags that matter: {', '.join(result['cpu_flags']) or 'none'}. Default dtype here: "
             f"**{result['default_dtype']}** ({result['default_reason']}).", "",
             f"Requests: {result['requests']} per round from `{result['mix']}` (a default pipeline run's own "
             f"requests), {result['concurrency']} in flight; median of {result['rounds']} interleaved rounds; "
             "generated tokens/s.", "",
             "| variant | dtype | tcmalloc | single stream | free chat | pipeline mix |", "|---|---|---|---|---|---|"]
    for comparison in result["comparisons"].values():
        for name, v in comparison.items():
            t = v["tokens_per_s"]
            lines.append(f"| {name} | {v['dtype']} | {'yes' if v['preload_tcmalloc'] else 'no'} | "
                         f"{t['single_stream']} | {t['free_chat']} | {t['pipeline_mix']} |")
    lines += ["", *result.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix", type=Path, default=MIX)
    parser.add_argument("--requests", type=int, default=64, help="Requests per round.")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base-port", type=int, default=8790)
    parser.add_argument("--kv-cache-gb", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    args = parser.parse_args()
    mix = load_mix(args.mix, args.requests)
    cpu = read_cpu_info()
    default = choose_dtype("auto", cpu)
    p = args.base_port
    pairs = {
        "dtype": [Variant(name="bf16", dtype="bfloat16", preload_tcmalloc=True, port=p),
                  Variant(name="fp32", dtype="float32", preload_tcmalloc=True, port=p + 1)],
        "tcmalloc": [Variant(name=f"{default.dtype}+tcmalloc", dtype=default.dtype, preload_tcmalloc=True, port=p),
                     Variant(name=f"{default.dtype}-no-tcmalloc", dtype=default.dtype, preload_tcmalloc=False,
                             port=p + 1)],
    }
    comparisons = {}
    load_start = os.getloadavg()
    for key, pair in pairs.items():
        print(f"comparing {' vs '.join(v.name for v in pair)} ...", flush=True)
        comparisons[key] = compare(pair, mix, args.concurrency, args.rounds, args.kv_cache_gb)
    result = {"benchmark": "embedded_server_speed", "machine": machine_info(), "cpu_flags": cpu.vector_flags(),
              "default_dtype": default.dtype, "default_reason": default.reason, "mix": str(args.mix.name),
              "requests": args.requests, "concurrency": args.concurrency, "rounds": args.rounds,
              "comparisons": comparisons,
              "notes": [f"Load average (1 min) at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}: on a "
                        "shared machine compare variants within a pair (their rounds interleave), not across "
                        "pairs."]}
    args.out.mkdir(parents=True, exist_ok=True)
    slug = "native-bf16" if cpu.native_bf16 else "no-native-bf16"
    (args.out / f"serving_{slug}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"serving_{slug}.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
