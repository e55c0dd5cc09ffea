"""Failures speak in one message: the thing that was wrong (field, file and line, URL, folder) and what to do,
with the traceback only behind --debug. Run through the real command line, as a user meets them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from synth.tools.validate import RegistryFileError, validate_harvest


def _synth(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synth", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("value", ["[4,2]", "[0,0]", "[0,3]"])
def test_bad_toolset_range_fails_at_config_load(value: str, tmp_path: Path) -> None:
    done = _synth("agents", "--set", f"agents.toolset_size={value}", "--set", f"runs_dir={tmp_path}")
    assert done.returncode == 2
    assert "agents.toolset_size" in done.stderr and "1 <= min <= max" in done.stderr
    assert "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_server_is_one_message_not_a_ray_traceback(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/v1"
    done = _synth("tools", "--set", f"runs_dir={tmp_path}", "--set", "llm.max_retries=0", "--set", "llm.model=m",
                  "--set", "tools.evolve_leaves=1", "--set", "ray.num_cpus=1", env={"SYNTH_BASE_URL": dead})
    assert done.returncode == 1, done.stderr[-2000:]
    assert dead in done.stderr and "make serve" in done.stderr
    assert "Traceback" not in done.stderr and "ray::" not in done.stderr
    error_lines = done.stderr[done.stderr.index("error:"):].strip().splitlines()
    assert len(error_lines) <= 8, error_lines


def test_runs_folder_that_cannot_be_written_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = _synth("agents", "--set", f"runs_dir={blocker}/runs", "--set", "ray.enabled=false",
                  env={"SYNTH_BASE_URL": "http://127.0.0.1:9/v1"}, timeout=120)
    assert done.returncode == 1
    assert str(blocker) in done.stderr and "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _synth("--debug", "tools", "--set", f"runs_dir={blocker}/runs", "--set", "ray.enabled=false",
                  env={"SYNTH_BASE_URL": "http://127.0.0.1:9/v1"}, timeout=120)
    assert done.returncode != 0 and "Traceback" in done.stderr


def _registry(tmp_path: Path, *lines: str) -> Path:
    mcp = tmp_path / "mcp"
    mcp.mkdir()
    (mcp / "pypi__mcp-server-time.jsonl").write_text("\n".join(lines) + "\n")
    return mcp


GOOD = ('{"server": "pypi/mcp-server-time", "registry": "pypi", "package": "mcp-server-time", "version": "1.0", '
        '"tool": {"name": "get_time", "description": "Current time.", "inputSchema": {"type": "object"}}}')


def test_half_written_registry_line_names_file_and_line(tmp_path: Path) -> None:
    mcp = _registry(tmp_path, GOOD, GOOD[:57])
    with pytest.raises(RegistryFileError) as err:
        validate_harvest(mcp, [])
    assert "pypi__mcp-server-time.jsonl:2" in str(err.value) and "not valid JSON" in str(err.value)
    assert "harvest" in str(err.value)


def test_registry_row_without_server_names_the_missing_field(tmp_path: Path) -> None:
    mcp = _registry(tmp_path, GOOD.replace('"server": "pypi/mcp-server-time", ', ""))
    with pytest.raises(RegistryFileError, match=r"jsonl:1: the row has no server"):
        validate_harvest(mcp, [])
