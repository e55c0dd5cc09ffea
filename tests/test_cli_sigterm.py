"""A SIGTERM (kill, a scheduler's stop, a CI timeout) unwinds synth like Ctrl-C: every `finally` runs, so a vLLM
server started for the model under test is stopped instead of left running (Python's default dies at once)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import asyncio, sys, time
from synth.cli import install_term_handler

install_term_handler()
marker = sys.argv[1]

async def serve():
    try:
        print("ready", flush=True)
        await asyncio.sleep(120)
    finally:
        open(marker, "w").write("stopped")

if sys.argv[2] == "async":
    asyncio.run(serve())
else:
    try:
        print("ready", flush=True)
        time.sleep(120)
    finally:
        open(marker, "w").write("stopped")
"""


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sigterm_runs_every_finally(tmp_path: Path, mode: str) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert marker.read_text() == "stopped"
