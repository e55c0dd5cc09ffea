"""Fixtures for the tool registry tests: fake MCP servers installed into a throwaway cache."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from synth.tools.servers import ServerEntry, install_root

FAKE_SERVER = Path(__file__).with_name("fake_server.py")


@pytest.fixture
def fake_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., ServerEntry]:
    """Make a ServerEntry whose 'installed' executable runs fake_server.py with the given args.

    The cache is redirected to tmp_path, so nothing is installed for real and the real cache is untouched.
    """
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))

    def make(server_id: str, *args: str) -> ServerEntry:
        entry = ServerEntry(
            id=server_id,
            registry="pypi",
            package="fake-mcp",
            version="0.0.1",
            command="fake-mcp",
            args=list(args),
            category="testing",
        )
        exe = install_root(entry) / "bin" / "fake-mcp"
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (install_root(entry) / ".installed").write_text("fake\n")
        return entry

    return make


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())
