"""The run lock: a second process on the same run refuses at once naming the holder, and sends nothing; a lock
left by a process that is gone is taken over."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synth.bench import instant_server
from synth.config import EndpointConfig, PipelineConfig
from synth.stages import registry, runlock
from synth.stages.runlock import LOCK, LockHolder, RunInUse, run_lock
from synth.stages.runner import run_stage
from tests.fixtures.chatty import CHATTY, ChattyStage, start_chatty
from tests.fixtures.cluster import free_port


def _config(root: Path) -> PipelineConfig:
    return PipelineConfig(runs_dir=root, run="r", ray={"enabled": False}, llm={"max_tokens": 64})


def test_second_run_on_the_same_name_refuses_at_once_and_sends_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.STAGES, "chatty", CHATTY)
    port = free_port()
    url = instant_server.base_url(port)
    with instant_server.running(port, delay_ms=100):
        proc = start_chatty(tmp_path, url)
        lock = tmp_path / "r" / LOCK
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not instant_server.get_stats(port)["requests"]:
            time.sleep(0.02)
        assert proc.poll() is None and lock.exists()
        sent = instant_server.get_stats(port)["requests"]
        started = time.monotonic()
        with pytest.raises(RunInUse) as err:
            run_stage("chatty", _config(tmp_path), [EndpointConfig(base_url=url, max_concurrency=4)], progress=False)
        assert time.monotonic() - started < 5  # at once, not after doing any work
        message = str(err.value)
        assert "\n" not in message and f"pid {proc.pid} on {socket.gethostname()} since " in message
        assert "another run name" in err.value.hint
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:] if proc.stderr else ""
        total = instant_server.get_stats(port)
    assert sent >= 1 and total["requests"] == 3 * ChattyStage.items  # not one request doubled
    assert max(total["by_digest"].values()) == 2  # each row's identical pair, nothing more
    assert not lock.exists()  # released when the holder finished


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(lock: Path, holder: LockHolder | None, age_s: float = 0.0) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(holder.model_dump_json() if holder else "")
    if age_s:
        then = time.time() - age_s
        os.utime(lock, (then, then))


def _holder(host: str, pid: int) -> LockHolder:
    return LockHolder(host=host, pid=pid, started="2026-01-01T00:00:00Z", token="t")


@pytest.mark.parametrize(("holder", "age_s", "taken"), [
    (lambda: _holder(socket.gethostname(), _dead_pid()), 0.0, True),  # same host, the process is gone
    (lambda: _holder(socket.gethostname(), os.getppid()), 0.0, False),  # same host, alive
    (lambda: _holder("other-node", 1), 0.0, False),  # another host, fresh heartbeat
    (lambda: _holder("other-node", 1), runlock.STALE_S + 5, True),  # another host, heartbeat long gone
    (lambda: None, 0.0, False),  # being written right now
    (lambda: None, runlock.STALE_S + 5, True),  # left empty by a kill long ago
])
def test_a_stale_lock_is_taken_over_and_a_live_one_is_not(tmp_path: Path, holder: object, age_s: float,
                                                          taken: bool) -> None:
    lock = tmp_path / "r" / LOCK
    _write(lock, holder(), age_s)  # type: ignore[operator]
    if not taken:
        with pytest.raises(RunInUse, match="is in use by"), run_lock(lock.parent):
            pass
        assert lock.exists()
        return
    with run_lock(lock.parent):
        mine = LockHolder.model_validate_json(lock.read_text())
        assert (mine.pid, mine.host) == (os.getpid(), socket.gethostname())
        with run_lock(lock.parent):  # reentrant in one process (a stage refreshing a derived one)
            pass
        assert lock.exists()
    assert not lock.exists()


def test_a_reused_pid_is_not_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "r" / LOCK
    _write(lock, _holder(socket.gethostname(), os.getpid()).model_copy(update={"proc_start": "1"}))
    with run_lock(lock.parent):  # this pid runs, but started at another time than the holder did
        assert LockHolder.model_validate_json(lock.read_text()).proc_start != "1"


def test_synth_pipeline_refuses_before_it_starts_a_server_or_probes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from synth.cli import app

    _write(tmp_path / "r" / LOCK, _holder(socket.gethostname(), os.getppid()))

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pipeline got as far as its endpoints")

    monkeypatch.setattr("synth.endpoints.endpoints_for", no_server)
    result = CliRunner().invoke(app, ["pipeline", "--run", "r", "--set", f"runs_dir={tmp_path}"])
    assert isinstance(result.exception, RunInUse), result.output  # the CLI's handler prints it as one message
    assert f"run 'r' is in use by pid {os.getppid()} on {socket.gethostname()}" in str(result.exception)
