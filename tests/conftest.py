"""Session set-up shared by every tier.

Tests that need the real model ask for ``live_url``: the first one makes the server available for the whole
session: ``$SYNTH_BASE_URL`` if set, else the embedded server (started here if it is not running, and stopped at
the end if this session started it). A server that cannot start fails those tests; they never pass by skipping.

Tests marked ``sandbox`` run real code in the code sandbox or real programs confined as MCP servers are
(``synth.runtime.sandbox``: Linux namespaces, as root). Where that cannot run they fail, naming why and what to
do, instead of skipping: a suite that skipped its isolation tests would pass green without having checked it.
``make test`` runs them in a tier of their own (CI runs as root); the unit tier leaves them out.

Tests of real MCP servers alone start no model server.

Each tier is a pytest process of its own, and each would import every test module (most of a tier's start-up);
a tier whose ``-m`` requires a marker (sandbox, integration, slow, gpu) imports only the modules that name it.
Every tier marker is applied in its test's own module (checked whenever a run collects a marked test), so a
module that never names the marker holds no test of that tier.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from synth.tools.servers import ServerEntry

TIER_MARKERS = ("integration", "sandbox", "slow", "gpu")
_required = pytest.StashKey[frozenset[str]]()
_sources: dict[Path, str] = {}


def _source(path: Path) -> str:
    if path not in _sources:
        _sources[path] = path.read_text(errors="replace")
    return _sources[path]


def required_markers(markexpr: str) -> frozenset[str]:
    """The tier markers a test must carry to match the ``-m`` expression: with any one of them absent, whatever
    else the test carries, the expression is false. Empty for no expression (or one pytest would refuse)."""
    if not markexpr:
        return frozenset()
    from _pytest.mark.expression import Expression

    try:
        expr = Expression.compile(markexpr)
    except SyntaxError:
        return frozenset()
    idents = getattr(expr, "idents", lambda: ())  # older pytest (the GPU machine's) has no idents()
    names = sorted(set(TIER_MARKERS) | set(idents()))
    required = set()
    for marker in TIER_MARKERS:
        others = [n for n in names if n != marker]  # every marker but this one: each combination of them
        carried = (dict(zip(others, on, strict=True)) for on in itertools.product((False, True), repeat=len(others)))
        if not any(expr.evaluate(lambda name, /, on=on, **_: on.get(name, False)) for on in carried):
            required.add(marker)
    return frozenset(required)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_required] = required_markers(config.getoption("markexpr", ""))


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    required = config.stash.get(_required, frozenset())
    is_test_module = collection_path.name.startswith("test_") and collection_path.suffix == ".py"
    if required and is_test_module and not all(marker in _source(collection_path) for marker in required):
        return True  # it holds no test this tier selects: not imported at all
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Before -m deselects: a tier marker applied from outside its test's module (an imported decorator) would
    # hide the test from the tiers that require that marker (pytest_ignore_collect above).
    for item in items:
        for marker in {m.name for m in item.iter_markers()} & set(TIER_MARKERS):
            if marker not in _source(item.path):
                raise pytest.UsageError(
                    f"{item.nodeid} carries the {marker!r} marker, but {item.path.name} never names it: apply it "
                    f"in the module itself (pytest.mark.{marker}), or a tier that runs -m {marker} misses the test"
                )


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
