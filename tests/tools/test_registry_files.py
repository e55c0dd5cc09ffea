"""The registry's files are checked before the first model request: a broken line is named by file and line, and
a run stops on it before it sends anything (it used to be found when the registry was built, after the tools
stage's requests)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from synth.config import EndpointConfig, load_config
from synth.tools import registry
from synth.tools.registry import check_files, read_specs
from synth.tools.validate import RegistryFileError

ROW = {"server": "npm/x", "registry": "npm", "package": "x", "version": "1.0.0",
       "tool": {"name": "get_x", "description": "Gets x.", "inputSchema": {"type": "object", "properties": {}}}}


def _mcp_dir(tmp_path: Path, broken: str) -> Path:
    mcp = tmp_path / "mcp"
    mcp.mkdir()
    (mcp / "npm__x.jsonl").write_text(json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n" + broken + "\n")
    return mcp


@pytest.mark.parametrize(("broken", "says"), [
    ('{"server": "npm/x", "registry": "n', "not valid JSON"),
    (json.dumps({"tool": ROW["tool"]}), "has no server, registry, package, version"),
])
def test_a_broken_harvest_line_is_named_by_file_and_line(tmp_path: Path, broken: str, says: str) -> None:
    mcp = _mcp_dir(tmp_path, broken)
    with pytest.raises(RegistryFileError) as err:
        check_files(mcp, tmp_path / "no-servers.yaml")
    assert f"{mcp / 'npm__x.jsonl'}:3" in str(err.value) and says in str(err.value)
    assert "line 3" in err.value.hint


def test_the_committed_registry_passes() -> None:
    assert check_files() > 0


def test_a_synthetic_spec_file_names_its_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.jsonl"
    path.write_text('{"id": "t1"}\n')
    with pytest.raises(RegistryFileError) as err:
        read_specs(path)
    assert f"{path}:1: not a tool spec" in str(err.value) and str(path) in err.value.hint


def test_the_tools_stage_stops_on_a_broken_line_before_any_request(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from synth.stages.runner import run_stage

    mcp = _mcp_dir(tmp_path, "{cut")
    monkeypatch.setattr(registry, "MCP_DIR", mcp)
    with socket.socket() as s:  # nothing listens there: a request sent would end as EndpointUnavailable instead
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    cfg = load_config(overrides=[f"runs_dir={tmp_path / 'runs'}", "run=r", "ray.enabled=false", "llm.model=m",
                                 "llm.max_retries=0", "tools.evolve_leaves=1"])
    with pytest.raises(RegistryFileError, match=r"npm__x\.jsonl:3: not valid JSON"):
        run_stage("tools", cfg, [EndpointConfig(base_url=dead)], progress=False)
