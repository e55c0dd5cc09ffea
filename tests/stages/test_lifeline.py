"""A worker's lifeline to its driver: alive while the driver runs, gone the moment it is killed (even unreaped, a
zombie), a reused pid is not mistaken for the driver, and a remote driver is judged by its heartbeat file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from synth.stages import lifeline
from synth.stages.lifeline import DriverGone, DriverRef, Lifeline, heartbeat, this_process
from tests.fixtures.clock import FakeClock, eventually


def _child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _ref_of(pid: int) -> DriverRef:
    stat = lifeline._stat(pid)
    assert stat is not None
    return this_process().model_copy(update={"pid": pid, "start_ticks": stat[1]})


def test_killed_driver_is_gone_even_before_it_is_reaped() -> None:
    proc = _child()
    line = Lifeline(_ref_of(proc.pid))
    assert line.local and line.alive()
    line.check()
    os.kill(proc.pid, signal.SIGKILL)
    assert eventually(lambda: not line.alive(), timeout_s=5)  # a zombie (not yet waited for) counts as gone
    assert lifeline._stat(proc.pid) is not None  # ... and it was still a zombie when judged
    with pytest.raises(DriverGone):
        line.check()
    proc.wait()
    assert not line.alive()


def test_a_reused_pid_is_not_the_driver() -> None:
    proc = _child()
    try:
        ref = _ref_of(proc.pid).model_copy(update={"start_ticks": _ref_of(proc.pid).start_ticks - 1})
        assert not Lifeline(ref).alive()
    finally:
        proc.kill()
        proc.wait()


def test_remote_driver_is_judged_by_its_heartbeat(tmp_path: Path) -> None:
    clock = FakeClock()
    with heartbeat(tmp_path / ".driver.alive", every_s=0.01) as beat:
        remote = this_process(beat).model_copy(update={"boot_id": "another-machine"})
        line = Lifeline(remote, stale_s=5.0, clock=clock)
        assert not line.local
        for _ in range(5):  # 20 s on the worker's clock, each beat seen within 5 s of the one before: alive
            before = beat.stat().st_mtime_ns
            assert eventually(lambda b=before: beat.stat().st_mtime_ns != b), "the driver's heartbeat did not beat"
            clock.advance(4.0)
            assert line.alive()
    assert not beat.exists()  # the driver removes it when the stage is done
    assert not line.alive()


def test_heartbeat_that_stops_changing_means_gone(tmp_path: Path) -> None:
    clock = FakeClock()
    beat = tmp_path / ".driver.alive"
    beat.touch()
    os.utime(beat, (4e9, 4e9))  # the driver's clock is decades ahead: a change counts, not the time it shows
    line = Lifeline(this_process(beat).model_copy(update={"boot_id": "another-machine"}), stale_s=5.0, clock=clock)
    assert line.alive()
    clock.advance(4.9)
    assert line.alive()
    os.utime(beat, (1e9, 1e9))  # a beat, stamped decades behind
    clock.advance(4.9)
    assert line.alive()  # 9.8 s since the first look, 0 s since the change
    clock.advance(4.9)
    assert line.alive()
    clock.advance(0.2)
    assert not line.alive()  # a driver killed with -9 leaves the file behind, unchanged


def test_in_process_run_starts_no_watcher() -> None:
    line = Lifeline(this_process()).start()
    assert line._thread is None and line.alive()


def test_runtime_env_ships_a_checkout_and_nothing_for_an_installed_package(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from synth import paths
    from synth.config import PipelineConfig
    from synth.stages.runner import RUNTIME_EXCLUDES, runtime_env

    env = runtime_env(PipelineConfig())
    assert env is not None and env["working_dir"] == str(paths.REPO_ROOT)
    assert {".git", ".venv", "runs"} <= set(env["excludes"]) and env["excludes"] == RUNTIME_EXCLUDES
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)  # site-packages: no pyproject.toml, no rubrics/
    assert runtime_env(PipelineConfig()) is None
