"""Measure an endpoint's generation rate before a run, so the user knows what is coming and deadlines fit it.

Two short probes: one stream alone (latency-bound: what a multi-turn episode's next step waits for) and a batch in
flight at once (throughput-bound: what a stage's many rows share). Each asks for a fixed number of tokens
(``ignore_eos``, which vLLM honours; other servers report what they generated in ``usage``, which is what counts).
"""

from __future__ import annotations

import asyncio
import time

from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.errors import SynthError

PROMPT = [{"role": "user", "content": "Describe, step by step, how a library tracks the books it lends."}]

# The default config's run, measured end to end on the embedded server (the figures, date and machine:
# docs/studies/cpu-serving.md): the completion tokens it generates, and the part that runs one stream at a time
# (the longest episodes' chains of requests, the tools stage's generations, stage start-up), in tokens. The fit is
# rough by design, and high on a slow CPU rather than low, since a user there needs to know what is coming.
DEFAULT_RUN_COMPLETION_TOKENS = 26_500
DEFAULT_RUN_SERIAL_TOKENS = 6_000


class RateProbe(BaseModel):
    base_url: str
    single_tokens_per_s: float = Field(description="Generated tokens/s of one request alone.")
    batched_tokens_per_s: float = Field(description="Generated tokens/s summed over `batch` requests at once.")
    batch: int
    probe_s: float = Field(description="Wall time of both probes.")

    def line(self, expected_s: float | None = None) -> str:
        eta = f"; expected wall time of this run about {_minutes(expected_s)}" if expected_s else ""
        return (f"model server {self.base_url}: {self.single_tokens_per_s:.0f} tokens/s single-stream, "
                f"{self.batched_tokens_per_s:.0f} tokens/s with {self.batch} in flight{eta}")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class RateUnknown(SynthError, ValueError):
    """The probe got answers that say nothing about the rate (no token counts, not a chat completion)."""

    hint = "check that llm.endpoints / SYNTH_BASE_URL is an OpenAI-compatible chat server (a base URL ending in /v1)"


async def _one(client: AsyncOpenAI, model: str, tokens: int, seed: int) -> int:
    resp = await client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=tokens, temperature=0.7, seed=seed,
        extra_body={"ignore_eos": True, "min_tokens": tokens},
    )
    # A server that answers with something else than a chat completion (an HTML page parses as a string) has
    # no usage to read: that answer counts no tokens, and a probe with none at all measured nothing.
    count = getattr(getattr(resp, "usage", None), "completion_tokens", None)
    return count if isinstance(count, int) and count > 0 else 0


async def measure_rate(endpoint: EndpointConfig, model: str, *, tokens: int = 48, batch: int = 16,
                       timeout_s: float = 600) -> RateProbe:
    """One request alone, then ``batch`` at once, ``tokens`` tokens each (a warm-up request first)."""
    client = AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=1, timeout=timeout_s)
    started = time.monotonic()
    try:
        await _one(client, model, 8, seed=0)  # warm-up: the first request of a fresh server compiles graphs
        t0 = time.monotonic()
        single = await _one(client, model, tokens, seed=1)
        single_tps = single / max(time.monotonic() - t0, 1e-6)
        t0 = time.monotonic()
        counts = await asyncio.gather(*(_one(client, model, tokens, seed=2 + i) for i in range(batch)))
        batched_tps = sum(counts) / max(time.monotonic() - t0, 1e-6)
    finally:
        await client.close()
    if not single or not sum(counts):
        raise RateUnknown(f"{endpoint.base_url} answered the probe without token counts")
    return RateProbe(base_url=endpoint.base_url, single_tokens_per_s=round(single_tps, 1),
                     batched_tokens_per_s=round(batched_tps, 1), batch=batch,
                     probe_s=round(time.monotonic() - started, 1))


def expected_run_s(config: PipelineConfig, probe: RateProbe, endpoints: int = 1) -> float:
    """Rough wall time of a run from the default run's measured token counts, scaled by its size.

    The default run's work is scaled by the number of tasks (agents x tasks per agent) and turns; its serial part
    (steps that wait on one stream: the first rows of each stage, the last turns of the longest episode) runs at
    the single-stream rate, the rest at the batched rate of all endpoints together.
    """
    default_tasks, default_turns, default_samples = 6 * 2, 3, 3
    scale = (config.agents.count * config.tasks.per_agent / default_tasks) \
        * (config.rollouts.max_turns / default_turns) * (config.rollouts.samples / default_samples)
    batched = max(probe.batched_tokens_per_s * endpoints, 1e-3)
    parallel_s = DEFAULT_RUN_COMPLETION_TOKENS * scale / batched
    serial_s = DEFAULT_RUN_SERIAL_TOKENS / max(probe.single_tokens_per_s, 1e-3)
    return parallel_s + serial_s
