"""Which endpoints a run talks to: the configured ones, else ``$SYNTH_BASE_URL``, else the embedded server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from synth.config import EndpointConfig, PipelineConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def endpoints_for(config: PipelineConfig, *, keep_server: bool = False) -> Iterator[list[EndpointConfig]]:
    """Yield the endpoints to use. Starts the embedded server only when nothing is configured, and stops it
    at the end only if this call started it (``keep_server`` leaves it running for the next command)."""
    configured = config.endpoint_urls()
    if configured:
        yield configured
        return
    from synth.serve import server

    already = server.is_healthy(config.embedded)
    if not already:
        log.info("no endpoint configured: starting the embedded vLLM server (first start compiles ~1-4 min)")
        server.start(config.embedded)
    try:
        yield [EndpointConfig(base_url=server.base_url(config.embedded), max_concurrency=64)]
    finally:
        if not already and not keep_server:
            server.stop(config.embedded)
