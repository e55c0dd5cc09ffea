"""RealToolHub against the real sandbox-safe MCP servers (installed once into the cache, then started over
stdio): every effect is checked on the real world the servers act on, and nothing outlives the hub."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from synth.runtime import sandbox
from synth.schemas import ToolSpec, stable_id
from synth.sim.real_exec import (
    DEFAULT_SERVERS,
    DEFAULT_WORKSPACE,
    ConfinementUnavailable,
    HubError,
    RealToolHub,
    UnknownToolError,
    sandbox_servers,
)
from synth.tools.errors import ToolError, ToolFailed, ToolTimeout, ToolUnavailable
from synth.tools.servers import ServerEntry
from tests.fixtures.mcp import SERVERS, installed_specs
from tests.fixtures.processes import descendants

pytestmark = pytest.mark.timeout(120)


def integration(test: Callable[..., Any]) -> Callable[..., Any]:
    """Every test that installs or starts real servers: the integration tier, and the servers run confined."""
    return pytest.mark.integration(pytest.mark.sandbox(test))


FS, MEMORY, TIME, GIT = (
    "npm/@modelcontextprotocol/server-filesystem",
    "npm/@modelcontextprotocol/server-memory",
    "pypi/mcp-server-time",
    "pypi/mcp-server-git",
)


def _cap_eff(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))


def _uids(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {int(u) for u in next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]}


@pytest.fixture(scope="module")
def specs() -> list[ToolSpec]:
    return installed_specs()


@integration
def test_tools_are_listed_in_openai_form_with_provenance(specs: list[ToolSpec]) -> None:
    by_name = {s.function.name: s for s in specs}
    for name, server in [("write_file", FS), ("read_graph", MEMORY), ("get_current_time", TIME),
                         ("git_status", GIT)]:  # fmt: skip
        spec = by_name[name]
        assert spec.provenance.server == server and spec.provenance.source == "mcp"
        assert spec.id == stable_id("tool", server, name)
        assert spec.real_exec
        form = spec.openai()
        assert form["type"] == "function" and form["function"]["parameters"]["type"] == "object"


@integration
async def test_tools_are_started_lazily_when_specs_are_given(specs: list[ToolSpec]) -> None:
    async with RealToolHub(SERVERS, specs=specs) as hub:
        assert hub.started_servers() == []
        assert {s.function.name for s in hub.tools()} == {s.function.name for s in specs}
        result = await hub.call("get_current_time", {"timezone": "Asia/Tokyo"})
        assert hub.started_servers() == [TIME]
    assert result.server == TIME and "Asia/Tokyo" in result.content


@integration
async def test_filesystem_write_then_read_sees_the_effect(specs: list[ToolSpec]) -> None:
    async with RealToolHub(SERVERS, specs=specs, initial_files={"docs/readme.md": "# seed\n"}) as hub:
        ws = hub.workspace  # the path the tools see; hub.root is the same dir on the host
        wrote = await hub.call("write_file", {"path": f"{ws}/notes.txt", "content": "buy milk"})
        assert wrote.server == FS
        assert (hub.root / "notes.txt").read_text() == "buy milk"
        read = await hub.call("read_text_file", {"path": f"{ws}/notes.txt"})
        assert read.content == "buy milk"
        seeded = await hub.call("read_text_file", {"path": f"{ws}/docs/readme.md"})
        assert seeded.content == "# seed\n"
        state = hub.snapshot()
    assert state["memory"] is None  # no memory server was started
    assert state["files"]["notes.txt"] == {"size": 8, "content": "buy milk"}
    assert state["files"]["docs/readme.md"]["content"] == "# seed\n"


@integration
async def test_filesystem_refuses_paths_outside_the_root(specs: list[ToolSpec], tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    async with RealToolHub(SERVERS, specs=specs) as hub:
        hub_root = hub.root
        with pytest.raises(ToolFailed, match="outside allowed directories") as read:
            await hub.call("read_text_file", {"path": "/etc/hostname"})
        with pytest.raises(ToolFailed):
            await hub.call("write_file", {"path": str(outside), "content": "x"})
        with pytest.raises(ToolFailed):
            await hub.call("write_file", {"path": f"{hub.workspace}/../sneaky.txt", "content": "x"})
    assert read.value.server == FS and str(read.value).startswith("Access denied")  # the server's words, verbatim
    assert not outside.exists() and not (hub_root.parent / "sneaky.txt").exists()


@integration
async def test_confined_servers_see_the_same_workspace_path_every_episode(specs: list[ToolSpec]) -> None:
    roots = []
    for _ in range(2):
        async with RealToolHub(SERVERS, specs=specs) as hub:
            roots.append(hub.root)
            assert hub.workspace == DEFAULT_WORKSPACE
            allowed = await hub.call("list_allowed_directories", {})
            assert allowed.content.splitlines()[-1] == DEFAULT_WORKSPACE
            await hub.call("write_file", {"path": "notes.txt", "content": "relative paths work too"})
            assert (hub.root / "notes.txt").read_text() == "relative paths work too"
    assert roots[0] != roots[1]  # one host dir per episode behind the one visible path


@integration
async def test_memory_entities_show_in_read_graph_and_snapshot(specs: list[ToolSpec]) -> None:
    entity = {"name": "Ada", "entityType": "person", "observations": ["writes programs"]}
    async with RealToolHub(SERVERS, specs=specs) as hub:
        await hub.call("create_entities", {"entities": [entity]})
        relation = {"from": "Ada", "to": "Ada", "relationType": "admires"}
        await hub.call("create_relations", {"relations": [relation]})
        graph = json.loads((await hub.call("read_graph", {})).content)
        assert graph == {"entities": [entity], "relations": [relation]}
        state = hub.snapshot()  # sync, from the server's storage file
        live = await hub.asnapshot()  # from read_graph
    assert state["memory"] == live["memory"] == graph
    # The server's own storage file is neither world content nor something git should see.
    assert not any(name.startswith("memory.json") for name in state["files"])
    assert hub.final_state is not None and hub.final_state["memory"]["entities"] == [entity]


@integration
async def test_time_returns_a_time_for_a_timezone(specs: list[ToolSpec]) -> None:
    async with RealToolHub(SERVERS, specs=specs) as hub:
        paris = await hub.call("get_current_time", {"timezone": "Europe/Paris"})
        with pytest.raises(ToolFailed, match="Mars/Olympus_Mons"):
            await hub.call("get_current_time", {"timezone": "Mars/Olympus_Mons"})
    body = json.loads(paris.content)
    assert body["timezone"] == "Europe/Paris" and body["datetime"][:2] == "20"


@integration
async def test_git_status_and_commit_on_the_scratch_repo(specs: list[ToolSpec]) -> None:
    async with RealToolHub(SERVERS, specs=specs, initial_files={"app.py": "print(1)\n"}) as hub:
        repo = hub.workspace
        status = await hub.call("git_status", {"repo_path": repo})
        assert "On branch main" in status.content
        (hub.root / "new.py").write_text("print(2)\n")
        await hub.call("git_add", {"repo_path": repo, "files": ["new.py"]})
        await hub.call("git_commit", {"repo_path": repo, "message": "Add new.py"})
        with pytest.raises(ToolFailed):
            await hub.call("git_status", {"repo_path": os.getcwd()})
        state = await hub.asnapshot()
    assert [line.split(" ", 1)[1] for line in state["git"]["log"]] == ["Add new.py", "Initial commit"]
    assert state["git"]["status"] == []


@integration
async def test_failures_raise_tool_errors_worded_as_tool_messages(specs: list[ToolSpec]) -> None:
    async with RealToolHub(SERVERS, specs=specs) as hub:
        with pytest.raises(ToolFailed, match="Invalid arguments for tool write_file") as bad_args:
            await hub.call("write_file", {"path": f"{hub.workspace}/x.txt"})  # no content
        assert bad_args.value.server == FS
        hub.call_timeout_s = 0.001
        with pytest.raises(ToolTimeout, match=r"^Error: tool 'directory_tree' timed out after 0.001s$"):
            await hub.call("directory_tree", {"path": hub.workspace})
        hub.call_timeout_s = 30
        again = await hub.call("list_allowed_directories", {})  # the session survives a timed-out call
        assert again.content
        with pytest.raises(UnknownToolError, match=r"known tools: .*write_file"):
            await hub.call("launch_rockets", {})


@integration
async def test_a_server_that_cannot_start_gives_error_results(specs: list[ToolSpec]) -> None:
    broken = ServerEntry(**{**DEFAULT_SERVERS[0].model_dump(), "id": "pypi/broken-time",
                            "command": "no-such-executable"})  # fmt: skip
    spec = next(s for s in specs if s.function.name == "convert_time")
    spec = spec.model_copy(update={"provenance": spec.provenance.model_copy(update={"server": broken.id})})
    async with RealToolHub([broken], specs=[spec]) as hub:
        with pytest.raises(ToolUnavailable, match="no-such-executable") as failed:
            await hub.call("convert_time", {})
    assert str(failed.value).startswith("Error: tool 'convert_time' unavailable: ")


@integration
async def test_misuse_raises_clear_errors(specs: list[ToolSpec]) -> None:
    with pytest.raises(HubError, match="not run by this hub"):
        async with RealToolHub([DEFAULT_SERVERS[0]], specs=specs):
            pass
    with pytest.raises(HubError, match="inside the scratch root"):
        async with RealToolHub(SERVERS, specs=specs, initial_files={"../escape.txt": "x"}):
            pass
    unsafe = DEFAULT_SERVERS[0].model_copy(update={"sandbox_safe": False})
    with pytest.raises(HubError, match="sandbox_safe"):
        RealToolHub([unsafe])


@integration
async def test_servers_and_scratch_root_are_gone_after_exit(specs: list[ToolSpec]) -> None:
    before = descendants(os.getpid())
    async with RealToolHub(SERVERS) as hub:  # eager: all four servers running
        root = hub.root
        during = descendants(os.getpid()) - before
        assert len(during) >= len(SERVERS)
        # Every server process runs confined: an unprivileged uid, no capabilities (no network, read-only host).
        assert hub.isolation == "confined"
        assert {_cap_eff(pid) for pid in during} == {"0000000000000000"}
        assert all(0 not in _uids(pid) for pid in during), {pid: _uids(pid) for pid in during}
        entity = {"name": "x", "entityType": "t", "observations": []}
        await hub.call("create_entities", {"entities": [entity]})
    await anyio.sleep(0.2)
    assert descendants(os.getpid()) & during == set()
    assert not root.exists()


@integration
async def test_a_server_that_dies_mid_episode_gives_error_results(specs: list[ToolSpec]) -> None:
    before = descendants(os.getpid())
    async with RealToolHub(SERVERS, specs=specs) as hub:
        await hub.call("get_current_time", {"timezone": "UTC"})
        for pid in descendants(os.getpid()) - before:
            os.kill(pid, signal.SIGKILL)
        await anyio.sleep(0.2)
        with pytest.raises(ToolError):
            await hub.call("get_current_time", {"timezone": "UTC"})
        other = await hub.call("list_allowed_directories", {})  # other servers are unaffected
        assert other.content
    assert hub.final_state is not None and "files" in hub.final_state


def test_sandbox_servers_come_from_the_servers_file_when_it_has_safe_entries(tmp_path: Path) -> None:
    path = tmp_path / "mcp_servers.yaml"
    safe = DEFAULT_SERVERS[0].model_dump()
    unsafe = {**DEFAULT_SERVERS[1].model_dump(), "id": "pypi/other", "sandbox_safe": False}
    path.write_text(yaml.safe_dump({"servers": [safe, unsafe]}))
    assert [e.id for e in sandbox_servers(path)] == [safe["id"]]
    path.write_text(yaml.safe_dump({"servers": [unsafe]}))
    assert sandbox_servers(path) == list(DEFAULT_SERVERS)
    assert sandbox_servers(tmp_path / "missing.yaml") == list(DEFAULT_SERVERS)


async def test_without_confinement_the_hub_refuses_unless_unconfined_is_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Guards against servers falling back to running unconfined with only a warning.
    monkeypatch.setattr(sandbox, "confinement_available", lambda: (False, "no namespaces in this container"))
    with pytest.raises(ConfinementUnavailable, match=r"no namespaces in this container") as err:
        async with RealToolHub([DEFAULT_SERVERS[0]], specs=[]):
            pass
    assert "allow unconfined" in err.value.hint
    async with RealToolHub([DEFAULT_SERVERS[0]], specs=[], allow_unconfined=True) as hub:
        assert hub.isolation == "unconfined" and hub.workspace == str(hub.root)
