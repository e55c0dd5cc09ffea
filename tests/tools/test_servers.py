"""Server entries and installs: the yaml parses, executables are found from package metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.tools.registry import ToolRegistry
from synth.tools.servers import ServerEntry, ServersFileError, find_commands, install_root, load_servers


def test_committed_yaml_is_valid_and_ids_are_unique() -> None:
    servers = load_servers()
    ids = [s.id for s in servers]
    assert len(ids) == len(set(ids))
    for s in servers:
        assert s.id == f"{s.registry}/{s.package}"
        assert s.version and s.version[0].isdigit(), f"{s.id}: pin an exact version"
        # Placeholders only: a real-looking secret in the repository is a leak.
        assert all(len(v) < 80 for v in s.env.values()), s.id


def test_a_broken_server_list_names_the_file_and_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "mcp_servers.yaml"
    bad.write_text("servers:\n- id: npm/x\n  registry: npm\n  package: x\n")  # no version, no command
    missing = r"mcp_servers\.yaml: npm/x: version: Field required; command: Field required"
    with pytest.raises(ServersFileError, match=missing) as err:
        load_servers(bad)
    assert "git checkout tools_registry/" in err.value.hint
    bad.write_text("servers: [\n")
    with pytest.raises(ServersFileError, match="not valid YAML"):
        load_servers(bad)


def test_find_commands_reads_npm_bin_and_console_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path))
    npm = ServerEntry(
        id="npm/@acme/x-mcp", registry="npm", package="@acme/x-mcp", version="1.0.0", command="?"
    )
    manifest = install_root(npm) / "node_modules" / "@acme" / "x-mcp" / "package.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"bin": {"setup": "a.js", "x-mcp": "b.js"}}))
    assert find_commands(npm) == ["x-mcp", "setup"]
    manifest.write_text(json.dumps({"bin": "b.js"}))
    assert find_commands(npm) == ["x-mcp"]

    pypi = ServerEntry(
        id="pypi/mcp-server-y", registry="pypi", package="mcp-server-y", version="1.0", command="?"
    )
    dist = install_root(pypi) / "lib" / "python3.11" / "site-packages" / "mcp_server_y-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "entry_points.txt").write_text("[console_scripts]\nY-Tool = y:main\nmcp-server-y = y:serve\n")
    assert find_commands(pypi) == ["mcp-server-y", "Y-Tool"]


def test_committed_registry_meets_the_issue_goals() -> None:
    """The harvest in tools_registry/ is real and big enough: 1,000+ valid tools from 100+ servers."""
    servers = load_servers()
    safe = {s.id for s in servers if s.sandbox_safe}
    assert safe == {
        "pypi/mcp-server-time",
        "pypi/mcp-server-git",
        "npm/@modelcontextprotocol/server-filesystem",
        "npm/@modelcontextprotocol/server-memory",
    }
    registry = ToolRegistry.load()
    assert len(registry) >= 1000, len(registry)
    assert len(registry.servers()) >= 100, len(registry.servers())
    assert all(s.real_exec == (s.provenance.server in safe) for s in registry)


def test_installs_run_no_package_code_unless_the_entry_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Guards against installing packages with their install scripts enabled.
    from synth.tools import servers
    from synth.tools.servers import ServerEntry

    monkeypatch.setenv("SYNTH_CACHE", str(tmp_path))
    commands: list[list[str]] = []

    def record(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> None:
        commands.append(cmd)
        if "venv" in cmd:
            (Path(cmd[-1]) / "bin").mkdir(parents=True, exist_ok=True)

    monkeypatch.setattr(servers, "_run", record)
    npm = ServerEntry(id="npm/x", registry="npm", package="x", version="1.0.0", command="x")
    pypi = ServerEntry(id="pypi/y", registry="pypi", package="y", version="1.0.0", command="y")
    servers.install_package(npm)
    servers.install_package(pypi)
    assert commands[0][:2] == ["npm", "install"] and "--ignore-scripts" in commands[0]
    pip = next(c for c in commands if "pip" in c)
    assert pip[pip.index("--only-binary") + 1] == ":all:"
    commands.clear()
    servers.install_package(npm.model_copy(update={"version": "2.0.0", "install_scripts": True}))
    servers.install_package(pypi.model_copy(update={"version": "2.0.0", "build_from_source": True}))
    assert "--ignore-scripts" not in commands[0]
    assert "--only-binary" not in next(c for c in commands if "pip" in c)
