"""The harvester against fake servers: paging, verbatim tools, crashes, silence, resume."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path

import pytest

from synth.runtime import sandbox
from synth.runtime.sandbox import ConfinementUnavailable
from synth.tools.harvest import HarvestReport, harvest_async, harvest_server, jsonl_path, select
from synth.tools.servers import ServerEntry
from tests.fixtures.clock import eventually
from tests.fixtures.processes import pid_alive


@pytest.mark.sandbox  # the harvest runs servers confined
async def test_pages_are_followed_and_tools_kept_verbatim(fake_entry, tmp_path: Path) -> None:
    entry = fake_entry("pypi/fake-ok", "ok")
    result = await harvest_server(entry, tmp_path / "out", timeout_s=20)
    assert result.status == "ok", result.reason
    assert result.tools == 6  # three pages of two
    rows = [json.loads(line) for line in jsonl_path(tmp_path / "out", entry.id).read_text().splitlines()]
    assert [r["tool"]["name"] for r in rows] == [f"tool_{i}" for i in range(6)]
    first = rows[0]
    assert (
        first["server"] == "pypi/fake-ok" and first["package"] == "fake-mcp" and first["version"] == "0.0.1"
    )
    assert first["registry"] == "pypi" and first["harvested_at"].startswith("20")
    # Fields the SDK's Tool model does not know must survive: the harvest stores what the server said.
    assert first["tool"]["x-vendor-extra"] == {"kept": True}
    assert first["tool"]["inputSchema"]["required"] == ["x"]
    assert result.server_info == {"name": "fake", "version": "0.0.1"}


@pytest.mark.sandbox  # the harvest runs servers confined
async def test_crash_at_start_is_reported_with_stderr(fake_entry, tmp_path: Path) -> None:
    entry = fake_entry("pypi/fake-crash", "crash")
    started = time.monotonic()
    result = await harvest_server(entry, tmp_path / "out", timeout_s=10)
    assert time.monotonic() - started < 10
    assert result.status == "failed" and result.stage == "start"
    assert "FAKE_API_KEY environment variable is not set" in (result.reason or "")
    assert not jsonl_path(tmp_path / "out", entry.id).exists()


@pytest.mark.sandbox  # the harvest runs servers confined
async def test_silent_server_times_out_and_is_killed(fake_entry, tmp_path: Path) -> None:
    entry = fake_entry("pypi/fake-silent", "silent")
    started = time.monotonic()
    result = await harvest_server(entry, tmp_path / "out", timeout_s=2)
    elapsed = time.monotonic() - started
    assert result.status == "failed" and result.stage == "start"
    assert "no answer to initialize within 2s" in (result.reason or "")
    assert elapsed < 2 + 8, f"timeout plus shutdown grace took {elapsed:.1f}s"
    pid = int(re.search(r"pid=(\d+)", result.reason or "").group(1))  # type: ignore[union-attr]
    assert eventually(lambda: not pid_alive(pid), timeout_s=5), "the silent server survived the harvest"


@pytest.mark.sandbox  # the harvest runs servers confined
async def test_helpers_that_leave_the_process_group_are_killed(fake_entry, tmp_path: Path) -> None:
    entry = fake_entry("pypi/fake-daemon", "daemon")
    result = await harvest_server(entry, tmp_path / "out", timeout_s=20)
    assert result.status == "ok", result.reason
    pid = int((result.server_info or {})["version"].removeprefix("helper-"))
    assert eventually(lambda: not pid_alive(pid), timeout_s=5), "a helper in its own session outlived the harvest"


async def test_missing_install_is_an_install_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path / "cache"))
    entry = ServerEntry(
        id="npm/synth-no-such-package-xyz",
        registry="npm",
        package="synth-no-such-package-xyz",
        version="0.0.0",
        command="nothing",
    )
    # Stub the installer: the failure path is what is tested, not the network.
    from synth.tools import harvest as harvest_module
    from synth.tools.servers import InstallError

    def fail(entry: ServerEntry, timeout_s: float) -> Path:
        raise InstallError("install failed (synth-no-such-package-xyz@0.0.0): 404 Not Found")

    monkeypatch.setattr(harvest_module, "ensure_installed", fail)
    result = await harvest_server(entry, tmp_path / "out", timeout_s=5)
    assert (result.status, result.stage) == ("failed", "install")
    assert "404" in (result.reason or "")


@pytest.mark.sandbox  # the harvest runs servers confined
async def test_harvest_reports_every_server_and_resumes(fake_entry, tmp_path: Path) -> None:
    out = tmp_path / "out"
    entries = [
        fake_entry("pypi/fake-ok", "ok"),
        fake_entry("pypi/fake-crash", "crash"),
        fake_entry("pypi/fake-silent", "silent"),
    ]
    report = await harvest_async(entries, out, parallel=3, timeout_s=3)
    by_id = {r.server: r for r in report.servers}
    assert by_id["pypi/fake-ok"].status == "ok" and by_id["pypi/fake-ok"].tools == 6
    assert (by_id["pypi/fake-crash"].status, by_id["pypi/fake-crash"].stage) == ("failed", "start")
    assert (by_id["pypi/fake-silent"].status, by_id["pypi/fake-silent"].stage) == ("failed", "start")
    saved = HarvestReport.read(out / "harvest_report.json")
    assert saved is not None and saved.summary()["ok"] == 1 and saved.summary()["failed"] == 2

    # A re-run skips the harvested server (its JSONL is not rewritten) and keeps its report row.
    before = jsonl_path(out, "pypi/fake-ok").stat().st_mtime_ns
    again = await harvest_async(
        entries, out, parallel=3, timeout_s=3, only=["pypi/fake-ok", "pypi/fake-crash"], retry_failed=False
    )
    assert jsonl_path(out, "pypi/fake-ok").stat().st_mtime_ns == before
    assert {r.server for r in again.servers} == {"pypi/fake-ok", "pypi/fake-crash", "pypi/fake-silent"}


def test_select_matches_ids_and_globs(fake_entry) -> None:
    entries = [fake_entry("pypi/a", "ok"), fake_entry("npm/b", "ok")]
    assert [e.id for e in select(entries, ["npm/*"])] == ["npm/b"]
    assert select(entries, None) == entries
    with pytest.raises(ValueError, match="known ids"):
        select(entries, ["nope"])


@pytest.mark.sandbox
async def test_harvested_server_runs_confined_and_cannot_escape(fake_entry, tmp_path: Path) -> None:
    # Guards against harvested servers running unconfined, as root, with the network.
    outside = Path("/tmp") / f"synth-harvest-escape-{uuid.uuid4().hex}"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        entry = fake_entry("pypi/fake-escape", "escape", str(port), str(outside), str(os.getpid()))
        result = await harvest_server(entry, tmp_path / "out", timeout_s=30)
        try:
            listener.accept()
            reached = True
        except OSError:
            reached = False
    assert result.status == "ok", result.reason
    assert result.confined is True
    tried = json.loads((result.server_info or {})["version"])
    assert tried["uid"] != 0 and tried["euid"] != 0
    assert tried["loopback"] == "ENETUNREACH" and not reached
    assert tried["outside"] in {"EROFS", "EACCES"} and tried["etc"] in {"EROFS", "EACCES"}
    assert not outside.exists()
    assert tried["signal_host"] == "EPERM"
    assert tried["cwd"] == "/home/user/workspace"


async def test_harvest_refuses_to_run_unconfined_unless_allowed(
    fake_entry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "confinement_available", lambda: (False, "no namespaces in this container"))
    entry = fake_entry("pypi/fake-ok", "ok")
    with pytest.raises(ConfinementUnavailable, match="can't be confined") as err:
        await harvest_async([entry], tmp_path / "out", timeout_s=20)
    assert "--unconfined" in err.value.hint
    assert not (tmp_path / "out" / "harvest_report.json").exists()
    report = await harvest_async([entry], tmp_path / "out", timeout_s=20, allow_unconfined=True)
    assert report.summary()["confinement"].startswith("UNCONFINED") and report.summary()["unconfined_servers"] == 1
    assert report.servers[0].status == "ok" and report.servers[0].confined is False
