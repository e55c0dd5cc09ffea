"""Before the stages start: measure the model server, say what the run will cost, and fit the deadlines to it.

A user on a slow CPU learns in the first minute that the default run takes half an hour there, instead of finding
out from a timeout; and the request deadline follows the measured rate instead of a fixed 120 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
import uuid
from pathlib import Path

import httpx
import openai
from pydantic import BaseModel, Field, ValidationError

from synth.config import EndpointConfig, PipelineConfig
from synth.llm.client import FALLBACK_TIMEOUT_S, EndpointUnavailable, derive_timeout_s, served_model
from synth.llm.rate import RateProbe, expected_run_s, measure_rate
from synth.serve.server import ServerInfo, server_info

log = logging.getLogger(__name__)
PROBE_MAX_AGE_S = 30 * 60.0
"""A measurement of the same server (model and URL) younger than this is used instead of probing again: a run
started again after a kill does not pay the probe's requests twice."""
RATES_DIR = ".rates"  # under runs_dir: measurements by server, shared by the runs there

# What the probe can meet from a server that answers badly: HTTP and API errors, replies that are not JSON or not
# a completion (ValueError, RateUnknown), an empty model list (IndexError), a page instead of a model list
# (EndpointUnavailable's NotOpenAI). None of them may end the run.
PROBE_ERRORS = (openai.APIError, httpx.HTTPError, ValueError, IndexError, EndpointUnavailable)


class StoredRate(BaseModel):
    model: str
    base_url: str
    measured_unix: float
    probe: RateProbe


def _rate_file(runs_dir: Path, model: str, base_url: str) -> Path:
    key = hashlib.sha256(f"{model}\0{base_url.rstrip('/')}".encode()).hexdigest()[:16]
    return runs_dir / RATES_DIR / f"{key}.json"


def recent_rate(runs_dir: Path, model: str, base_url: str, max_age_s: float = PROBE_MAX_AGE_S) -> StoredRate | None:
    """The stored measurement of this server when younger than ``max_age_s``; None otherwise (or unreadable)."""
    path = _rate_file(runs_dir, model, base_url)
    try:
        stored = StoredRate.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None
    age = time.time() - stored.measured_unix
    return stored if 0 <= age < max_age_s and stored.model == model else None


def store_rate(runs_dir: Path, model: str, probe: RateProbe) -> None:
    """Keep a measurement for the next run (written whole, then renamed: a reader never sees half of it)."""
    path = _rate_file(runs_dir, model, probe.base_url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(StoredRate(model=model, base_url=probe.base_url, measured_unix=time.time(),
                                  probe=probe).model_dump_json())
        os.replace(tmp, path)
    except OSError as exc:  # only a saving: the run goes on, the next one measures again
        log.warning("could not keep the measured rate in %s: %s", path.parent, exc)


class Preflight(BaseModel):
    probe: RateProbe | None = Field(default=None, description="Measured rates; None when the probe failed.")
    probe_note: str | None = Field(default=None, description="Why the rate is unknown, or how old a reused "
                                   "measurement is.")
    expected_s: float | None = Field(default=None, description="Rough expected wall time of the run.")
    timeout_s: float = Field(description="The request deadline the run uses.")
    timeout_source: str = Field(description="config, or how it was derived.")
    server: ServerInfo | None = Field(default=None, description="The embedded server's dtype and why.")


async def _served_model(endpoint: EndpointConfig, configured: str | None) -> str:
    if configured:
        return configured
    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=2, timeout=60)
    try:
        # Parsed here, not by the SDK: a page that is no model list would fail inside it as an AttributeError.
        return served_model((await client.models.with_raw_response.list()).text, endpoint.base_url)
    finally:
        await client.close()


def preflight(config: PipelineConfig, endpoints: list[EndpointConfig]) -> tuple[PipelineConfig, Preflight]:
    """Check the input files, then measure, estimate and derive; returns the config with ``llm.timeout_s`` filled
    in when it was unset."""
    from synth.tools.registry import check_files

    check_files()  # before the probe's requests: a broken registry file stops the run before anything is paid
    info = server_info(config.embedded) if not config.endpoint_urls() else None
    probe: RateProbe | None = None
    note: str | None = None
    if config.llm.probe_rate and endpoints:
        try:
            model = asyncio.run(_served_model(endpoints[0], config.llm.model))
            if (stored := recent_rate(config.runs_dir, model, endpoints[0].base_url)) is not None:
                probe = stored.probe
                note = f"measured {(time.time() - stored.measured_unix) / 60:.0f} min ago, not probed again"
            else:
                probe = asyncio.run(measure_rate(endpoints[0], model))
                store_rate(config.runs_dir, model, probe)
        except PROBE_ERRORS as exc:
            # The stages will meet the same server and fail with the full message; the probe only informs.
            note = f"rate unknown: {type(exc).__name__}: {str(exc)[:200]}"
            log.warning("could not measure the model server's rate (%s); using default deadlines", note)
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
    return config, Preflight(probe=probe, probe_note=note, expected_s=round(expected, 0) if expected else None,
                             timeout_s=round(timeout, 1), timeout_source=source, server=info)


def describe(pre: Preflight) -> list[str]:
    """The lines printed before the stages start (and kept in the report)."""
    lines = []
    if pre.server is not None:
        lines.append(f"embedded server: {pre.server.served_name}, dtype {pre.server.dtype} ({pre.server.dtype_reason})"
                     + "".join(f"; {n}" for n in pre.server.env_notes))
    if pre.probe is not None:
        lines.append(pre.probe.line(pre.expected_s) + (f" ({pre.probe_note})" if pre.probe_note else ""))
    elif pre.probe_note:
        lines.append(f"model server: {pre.probe_note}")
    lines.append(f"request deadline {pre.timeout_s:.0f} s ({pre.timeout_source})")
    return lines
