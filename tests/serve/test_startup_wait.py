"""A server that starts slowly on a loaded machine is waited for while it works; one that does nothing is not."""

import sys
from pathlib import Path

import pytest

from synth.config import EmbeddedConfig
from synth.serve import server
from tests.fixtures.clock import FakeClock, eventually


def test_progress_keeps_the_wait_going_past_the_stall_limit() -> None:
    clock = FakeClock()
    watch = server.StartupWatch(stall_s=10, max_s=100, clock=clock)
    for i in range(30):  # 60 s of start-up, CPU time growing, never a log line
        clock.t = 2.0 * i
        assert watch.expired((0.5 * i, 100)) is None


def test_no_cpu_and_no_log_for_the_stall_limit_is_hung() -> None:
    clock = FakeClock()
    watch = server.StartupWatch(stall_s=10, max_s=100, clock=clock)
    assert watch.expired((5.0, 100)) is None
    clock.t = 9
    assert watch.expired((5.001, 100)) is None  # less than a tick of CPU is no progress
    clock.t = 11
    assert "no progress for 10 s" in (watch.expired((5.001, 100)) or "")


def test_log_output_alone_is_progress_and_the_cap_still_holds() -> None:
    clock = FakeClock()
    watch = server.StartupWatch(stall_s=10, max_s=30, clock=clock)
    for i in range(15):
        clock.t = 2.0 * i
        assert watch.expired((1.0, 100 + i)) is None
    clock.t = 31
    assert "still starting after 30 s" in (watch.expired((1.0, 200)) or "")


def _fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> EmbeddedConfig:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setattr(server, "command", lambda cfg, model_dir, dtype: [sys.executable, "-c", script])
    return EmbeddedConfig(port=18999, model_dir=str(model), startup_timeout_s=1.5, startup_max_s=60)


def test_a_silent_busy_start_up_is_not_killed_at_the_stall_limit(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # 2.5 s of silent CPU work (as vLLM compiling), past the 1.5 s stall limit, then idle forever: hung only after
    # the work stops.
    cfg = _fake_server(tmp_path, monkeypatch, "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass\n"
                                              "time.sleep(600)")
    import time

    t0 = time.monotonic()
    with pytest.raises(server.ServerError, match="no progress for 2 s"):
        server.start(cfg)
    assert time.monotonic() - t0 > 2.5  # a fixed 1.5 s deadline would have killed it while it worked
    assert not server._pidfile(cfg).exists()  # and the hung one was stopped


def test_group_cpu_counts_the_servers_children() -> None:
    import subprocess

    # The parent idles; its child (an engine worker) does the work and stays alive: the group's time is the child's.
    child = "import time\nwhile time.process_time() < 1: pass\ntime.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys\nsubprocess.Popen([sys.executable, "
                               f"'-c', {child!r}])\nimport time\ntime.sleep(30)"], start_new_session=True)
    try:
        # The child burns a second of CPU; the parent alone never gets near 0.6 s.
        assert eventually(lambda: server._group_cpu_s(parent.pid) >= 0.6, timeout_s=30)
    finally:
        import os
        import signal

        os.killpg(parent.pid, signal.SIGKILL)


def test_stop_reaps_a_server_this_process_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import time

    cfg = _fake_server(tmp_path, monkeypatch, "")
    proc = subprocess.Popen([sys.executable, "-c", "import time\ntime.sleep(600)"], start_new_session=True)
    server._pidfile(cfg).parent.mkdir(parents=True, exist_ok=True)
    server._pidfile(cfg).write_text(str(proc.pid))
    t0 = time.monotonic()
    assert server.stop(cfg, grace_s=30)
    # SIGTERM ends it at once; what is left is its zombie, which only its parent (this process) can clear.
    assert time.monotonic() - t0 < 10 and proc.poll() is not None
    assert not server._pidfile(cfg).exists()
