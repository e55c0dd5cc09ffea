"""Before the stages start: measure the model server, say what the run will cost, and fit the deadlines to it.

A user on a slow CPU learns in the first minute that the default run takes half an hour there, instead of finding
out from a timeout; and the request deadline follows the measured rate instead of a fixed 120 s.
"""

from __future__ import annotations

import asyncio
import logging

import openai
from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.llm.client import FALLBACK_TIMEOUT_S, derive_timeout_s
from synth.llm.rate import RateProbe, expected_run_s, measure_rate
from synth.serve.server import ServerInfo, server_info

log = logging.getLogger(__name__)


class Preflight(BaseModel):
    probe: RateProbe | None = Field(default=None, description="Measured rates; None when the probe failed.")
    expected_s: float | None = Field(default=None, description="Rough expected wall time of the run.")
    timeout_s: float = Field(description="The request deadline the run uses.")
    timeout_source: str = Field(description="config, or how it was derived.")
    server: ServerInfo | None = Field(default=None, description="The embedded server's dtype and why.")


async def _served_model(endpoint: EndpointConfig, configured: str | None) -> str:
    if configured:
        return configured
    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=2, timeout=60)
    try:
        return (await client.models.list()).data[0].id
    finally:
        await client.close()


def preflight(config: PipelineConfig, endpoints: list[EndpointConfig]) -> tuple[PipelineConfig, Preflight]:
    """Measure, estimate and derive; returns the config with ``llm.timeout_s`` filled in when it was unset."""
    info = server_info(config.embedded) if not config.endpoint_urls() else None
    probe: RateProbe | None = None
    if config.llm.probe_rate and endpoints:
        try:
            model = asyncio.run(_served_model(endpoints[0], config.llm.model))
            probe = asyncio.run(measure_rate(endpoints[0], model))
        except (openai.APIError, IndexError) as exc:
            # The stages will meet the same server and fail with the full message; the probe only informs.
            log.warning("could not measure the model server's rate (%s); using default deadlines", exc)
    expected = expected_run_s(config, probe, endpoints=len(endpoints)) if probe else None
    if config.llm.timeout_s is not None:
        timeout, source = config.llm.timeout_s, "llm.timeout_s"
    elif probe is not None:
        concurrency = max(e.max_concurrency for e in endpoints)
        timeout = derive_timeout_s(config.llm.max_tokens, probe.batched_tokens_per_s, concurrency)
        source = (f"derived: 3x a {config.llm.max_tokens}-token reply at {probe.batched_tokens_per_s:.0f} "
                  f"tokens/s shared by {concurrency} requests, +30 s, within 120-1800 s")
        config = config.model_copy(update={"llm": config.llm.model_copy(update={"timeout_s": timeout})})
    else:
        timeout, source = FALLBACK_TIMEOUT_S, "default (no rate measured)"
    return config, Preflight(probe=probe, expected_s=round(expected, 0) if expected else None,
                             timeout_s=round(timeout, 1), timeout_source=source, server=info)


def describe(pre: Preflight) -> list[str]:
    """The lines printed before the stages start (and kept in the report)."""
    lines = []
    if pre.server is not None:
        lines.append(f"embedded server: {pre.server.served_name}, dtype {pre.server.dtype} ({pre.server.dtype_reason})"
                     + "".join(f"; {n}" for n in pre.server.env_notes))
    if pre.probe is not None:
        lines.append(pre.probe.line(pre.expected_s))
    lines.append(f"request deadline {pre.timeout_s:.0f} s ({pre.timeout_source})")
    return lines
