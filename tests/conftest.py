"""Session set-up shared by every tier.

Tests that need the real model ask for ``live_url``: the first one makes the server available for the whole
session: ``$SYNTH_BASE_URL`` if set, else the embedded server (started here if it is not running, and stopped at
the end if this session started it). A server that cannot start fails those tests; they never pass by skipping.
Tests of real MCP servers alone start no model server. Integration tests that run code ask for ``sandbox_ready``:
where the sandbox cannot run they fail, naming why, instead of skipping.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def embedded_server():
    if os.environ.get("SYNTH_BASE_URL"):
        yield os.environ["SYNTH_BASE_URL"]
        return
    from synth.config import EmbeddedConfig
    from synth.serve import server

    cfg = EmbeddedConfig()
    started = not server.is_healthy(cfg)
    if started:
        server.start(cfg)
    os.environ["SYNTH_BASE_URL"] = server.base_url(cfg)
    try:
        yield server.base_url(cfg)
    finally:
        os.environ.pop("SYNTH_BASE_URL", None)
        if started:
            server.stop(cfg)


@pytest.fixture
def live_url(embedded_server: str) -> str:
    """The real server's base URL (the first, when several are configured)."""
    return embedded_server.split(",")[0].strip()


@pytest.fixture(scope="session")
def sandbox_ready() -> None:
    """The code sandbox works here; else the test fails with the reason (integration tests never skip it)."""
    from synth.runtime.sandbox import sandbox_available

    ok, why = sandbox_available()
    if not ok:
        pytest.fail(f"the code sandbox is unavailable: {why}; run the integration tier as root on Linux, as CI does")
