"""The harvester against real MCP servers installed from PyPI and npm (cached in ~/.cache/synth/mcp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synth.tools.harvest import harvest_async, jsonl_path
from synth.tools.servers import ServerEntry
from synth.tools.validate import check_toolset, validate_harvest

pytestmark = [pytest.mark.integration, pytest.mark.sandbox, pytest.mark.timeout(900)]  # confined servers

TIME = ServerEntry(
    id="pypi/mcp-server-time",
    registry="pypi",
    package="mcp-server-time",
    version="2026.10.19",
    command="mcp-server-time",
    category="time",
    sandbox_safe=True,
)
MEMORY = ServerEntry(
    id="npm/@modelcontextprotocol/server-memory",
    registry="npm",
    package="@modelcontextprotocol/server-memory",
    version="2026.8.31",
    command="mcp-server-memory",
    env={"MEMORY_FILE_PATH": "{root}/memory.jsonl"},
    category="memory",
    sandbox_safe=True,
)


def tools_of(out: Path, entry: ServerEntry) -> dict[str, dict]:
    rows = [json.loads(line) for line in jsonl_path(out, entry.id).read_text().splitlines()]
    assert {(r["registry"], r["package"], r["version"]) for r in rows} == {
        (entry.registry, entry.package, entry.version)
    }
    return {r["tool"]["name"]: r["tool"] for r in rows}


async def test_real_time_and_memory_servers(tmp_path: Path) -> None:
    out = tmp_path / "mcp"
    report = await harvest_async([TIME, MEMORY], out, parallel=2, timeout_s=60, install_timeout_s=600)
    assert [r.status for r in report.servers] == ["ok", "ok"], [r.reason for r in report.servers]

    time_tools = tools_of(out, TIME)
    assert {"get_current_time", "convert_time"} <= set(time_tools)
    current = time_tools["get_current_time"]["inputSchema"]
    assert current["type"] == "object" and current["required"] == ["timezone"]
    assert current["properties"]["timezone"]["type"] == "string"

    memory_tools = tools_of(out, MEMORY)
    assert {
        "create_entities",
        "create_relations",
        "add_observations",
        "read_graph",
        "search_nodes",
        "open_nodes",
        "delete_entities",
    } <= set(memory_tools)
    entities = memory_tools["create_entities"]["inputSchema"]
    assert entities["required"] == ["entities"] and entities["properties"]["entities"]["type"] == "array"

    specs, validation = validate_harvest(out, [TIME, MEMORY])
    assert validation.rejected == [] and len(specs) == len(time_tools) + len(memory_tools)
    assert all(s.real_exec and s.provenance.source == "mcp" for s in specs)
    assert check_toolset(specs) == []
