"""Session set-up shared by every tier.

When the selected tests include the integration tier, the real embedded vLLM server is made available once for
the whole session: ``$SYNTH_BASE_URL`` if set, else the embedded server (started here if it is not running, and
stopped at the end if this session started it). A server that cannot start fails the session; integration tests
never pass by skipping in CI.
"""

from __future__ import annotations

import os

import pytest


def _needs_server(session: pytest.Session) -> bool:
    return any(item.get_closest_marker("integration") and not item.get_closest_marker("gpu")
               for item in session.items)


@pytest.fixture(scope="session", autouse=True)
def embedded_server(request: pytest.FixtureRequest):
    if os.environ.get("SYNTH_BASE_URL") or not _needs_server(request.session):
        yield os.environ.get("SYNTH_BASE_URL")
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
def live_url(embedded_server: str | None) -> str:
    """The real server's base URL for integration tests; a missing server is a failure, not a skip."""
    url = os.environ.get("SYNTH_BASE_URL", "").split(",")[0].strip()
    if not url:
        pytest.fail("integration test without a server: mark it @pytest.mark.integration so the session starts one")
    return url
