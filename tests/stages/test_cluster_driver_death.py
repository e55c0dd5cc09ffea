"""Workers die with the pipeline: after ``kill -9`` of the pipeline's process group in the middle
of the rollouts, the ``ray::run_shard`` workers (in their own process groups, so the kill does not reach them)
start no further model call, stop writing rows, and exit.

Local Ray as the pipeline starts it, under a private RAY_TMPDIR so its processes can be told from anyone else's;
the endpoint is the instant server with a delay, so requests are in flight when the kill lands.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from synth.bench import instant_server
from tests.fixtures.cluster import endpoint_set, env_for, free_port, journal_lines, ray_tmpdir, synth_cmd

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
GRACE_S = 0.5  # a request that passed its check just before the kill may still be on the wire


def _processes_of(tmpdir: str) -> dict[int, str]:
    """Processes whose environment names our private RAY_TMPDIR (the killed driver's Ray), pid -> title."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"RAY_TMPDIR={tmpdir}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("driver_death")
    port = free_port()
    with instant_server.running(port, delay_ms=300), ray_tmpdir() as tmpdir:
        env = env_for({"RAY_TMPDIR": tmpdir})
        cmd = synth_cmd(root, "dd", "pipeline", sets=[endpoint_set(port, 16), "ray.workers=2", "ray.num_cpus=2"])
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        rollouts = root / "dd" / "rollouts"
        out: dict = {}
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and proc.poll() is None:
                if rollouts.exists() and sum(map(len, journal_lines(rollouts).values())) >= 1:
                    # The workers are listed just before the kill: they end within moments of it (their
                    # lifeline), and a scan of /proc after it, slow on a loaded machine, could miss them all.
                    workers = {p: t for p, t in _processes_of(tmpdir).items() if "run_shard" in t}
                    os.killpg(proc.pid, signal.SIGKILL)
                    out["at"] = time.time()
                    out["inflight"] = instant_server.get_stats(port)["inflight"]
                    out["workers_at_kill"] = workers
                    break
                time.sleep(0.05)
            proc.wait(timeout=60)
            time.sleep(GRACE_S)
            out["journal_after_grace"] = journal_lines(rollouts)
            time.sleep(4)  # longer than Ray's own 2-4 s to notice a dead owner
            out["journal_later"] = journal_lines(rollouts)
            out["after"] = instant_server.get_stats(port, since=out.get("at", 0) + GRACE_S)
            out["workers_later"] = {p: t for p, t in _processes_of(tmpdir).items() if "run_shard" in t}
        finally:
            for pid in _processes_of(tmpdir):  # the killed driver's orphaned Ray: ours alone, by PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    return out


def test_killed_mid_rollouts(killed: dict) -> None:
    assert "at" in killed, "the pipeline finished before the kill; the test proved nothing"
    assert killed["workers_at_kill"], "no ray::run_shard worker was running at the kill"
    assert killed["inflight"] >= 1  # requests were in flight when the driver died


def test_no_model_call_starts_after_the_driver_is_gone(killed: dict) -> None:
    assert killed["after"]["since"] == 0, killed["after"]["since"]


def test_workers_write_nothing_more_and_exit(killed: dict) -> None:
    assert killed["journal_later"] == killed["journal_after_grace"]
    assert killed["workers_later"] == {}, json.dumps(killed["workers_later"])
