"""Session set-up shared by every tier.

Tests that need the real model ask for ``live_url``: the first one makes the server available for the whole
session: ``$SYNTH_BASE_URL`` if set, else the embedded server (started here if it is not running, and stopped at
the end if this session started it). A server that cannot start fails those tests; they never pass by skipping.

Tests marked ``sandbox`` run real code in the code sandbox or real programs confined as MCP servers are
(``synth.runtime.sandbox``: Linux namespaces, as root). Where that cannot run they fail, naming why and what to
do, instead of skipping: a suite that skipped its isolation tests would pass green without having checked it.
``make test`` runs them in a tier of their own (CI runs as root); the unit tier leaves them out.

Tests of real MCP servers alone start no model server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from synth.tools.servers import ServerEntry

def sandbox_unavailable() -> str | None:
    """Why the sandbox (code runs and confined servers) cannot run here, or None when it can."""
    from synth.runtime import sandbox

    for probe in (sandbox.sandbox_available, sandbox.confinement_available):
        ok, why = probe()
        if not ok:
            return why
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("sandbox") is not None and (why := sandbox_unavailable()) is not None:
        pytest.fail(
            f"the sandbox cannot run here, so this test of the sandbox tier cannot check what it is for: {why}. "
            "Run the sandbox tier as root on Linux, as CI does (`make test-sandbox`), or leave it out with "
            "-m 'not sandbox' (as `make test-fast` does).",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[str]:
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


@pytest.fixture
def fake_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ServerEntry]:
    """Make a ServerEntry whose 'installed' executable runs tests/fixtures/fake_mcp_server.py with the given args
    (``tests.fixtures.mcp.install_fake``). The install cache is redirected to tmp_path, so nothing is installed
    for real and the real cache is untouched."""
    from tests.fixtures.mcp import install_fake

    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    return install_fake
