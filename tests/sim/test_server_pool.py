"""The shard's MCP server pool against the real sandbox-safe servers: processes are kept across episodes, while
nothing an episode did (files, the memory graph, git history) reaches the next one, and concurrent episodes
never share a world."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import pytest

from synth.schemas import ToolSpec
from synth.sim.real_exec import RealToolHub, ServerPool
from synth.tools.errors import ToolError, ToolTimeout
from tests.fixtures.mcp import SERVERS, installed_specs
from tests.fixtures.processes import descendants

pytestmark = [pytest.mark.timeout(180), pytest.mark.integration, pytest.mark.sandbox]  # confined servers


def _servers() -> set[int]:
    """Live processes started by this one: the servers (helpers they start, e.g. git's cat-file, are not)."""
    mine = os.getpid()
    return {pid for pid in descendants(mine) if _ppid(pid) == mine}


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def specs() -> list[ToolSpec]:
    return installed_specs()


async def _dirty_episode(hub: RealToolHub) -> None:
    ws = hub.workspace
    await hub.call("write_file", {"path": f"{ws}/secret.txt", "content": "episode one"})
    await hub.call("create_entities", {"entities": [{"name": "Ada", "entityType": "person", "observations": []}]})
    await hub.call("git_add", {"repo_path": ws, "files": ["secret.txt"]})
    await hub.call("git_commit", {"repo_path": ws, "message": "episode one's commit"})
    await hub.call("get_current_time", {"timezone": "UTC"})


async def test_servers_are_kept_and_the_world_is_emptied_between_episodes(specs: list[ToolSpec]) -> None:
    before = descendants(os.getpid())
    pool = ServerPool()
    try:
        async with RealToolHub(SERVERS, specs=specs, pool=pool, initial_files={"a.txt": "one"}) as first:
            await _dirty_episode(first)
            root = first.root
        assert first.final_state is not None and first.final_state["memory"]["entities"][0]["name"] == "Ada"
        running = _servers() - before
        assert pool.stats.starts == len(SERVERS) and len(running) == len(SERVERS)

        async with RealToolHub(SERVERS, specs=specs, pool=pool, initial_files={"b.txt": "two"}) as second:
            await second.open_world()
            assert second.root == root  # the same world, leased again
            assert second.started_servers() == []  # nothing used yet in this episode
            listed = await second.call("list_directory", {"path": second.workspace})
            graph = await second.call("read_graph", {})
            log = await second.call("git_log", {"repo_path": second.workspace})
            await second.call("get_current_time", {"timezone": "UTC"})
            state = await second.asnapshot()
        # Same processes, no new ones: every server was reused.
        assert _servers() - before == running
        assert pool.stats.starts == len(SERVERS) and pool.stats.reused == len(SERVERS)
        # Nothing of the first episode is visible to the second.
        assert "secret.txt" not in listed.content and "a.txt" not in listed.content and "b.txt" in listed.content
        assert '"entities":[]' in graph.content.replace(" ", "").replace("\n", "")
        assert "episode one" not in log.content
        assert set(state["files"]) == {"b.txt"} and state["memory"] == {"entities": [], "relations": []}
        assert [line.split(" ", 1)[1] for line in state["git"]["log"]] == ["Initial commit"]
    finally:
        await pool.aclose()
    await anyio.sleep(0.2)
    assert descendants(os.getpid()) - before == set()
    assert not root.exists()


async def test_concurrent_episodes_get_separate_worlds(specs: list[ToolSpec]) -> None:
    pool = ServerPool()
    try:
        async with (RealToolHub(SERVERS, specs=specs, pool=pool) as one,
                    RealToolHub(SERVERS, specs=specs, pool=pool) as two):  # fmt: skip
            assert (await one.open_world()).root != (await two.open_world()).root
            await one.call("write_file", {"path": "mine.txt", "content": "one's"})
            listed = await two.call("list_directory", {"path": two.workspace})
            assert "mine.txt" not in listed.content
            await two.call("create_entities", {"entities": [{"name": "B", "entityType": "t", "observations": []}]})
            assert '"B"' not in (await one.call("read_graph", {})).content
        assert pool.stats.worlds == 2
    finally:
        await pool.aclose()


async def test_a_server_that_may_keep_state_in_its_process_is_started_fresh(specs: list[ToolSpec]) -> None:
    before = descendants(os.getpid())
    time_server = next(e for e in SERVERS if e.id == "pypi/mcp-server-time").model_copy(update={"reuse": "never"})
    spec = [s for s in specs if s.provenance.server == time_server.id]
    pool = ServerPool()
    try:
        seen = []
        for _ in range(2):
            async with RealToolHub([time_server], specs=spec, pool=pool) as hub:
                await hub.call("get_current_time", {"timezone": "UTC"})
                seen.append(_servers() - before)
        assert seen[0] and seen[1] and not seen[0] & seen[1]  # a new process for the second episode
        assert pool.stats.starts == 2 and pool.stats.fresh_for_state == 2 and pool.stats.reused == 0
    finally:
        await pool.aclose()


async def test_a_server_whose_call_timed_out_is_not_kept(specs: list[ToolSpec]) -> None:
    pool = ServerPool()
    try:
        async with RealToolHub(SERVERS, specs=specs, pool=pool, call_timeout_s=0.001) as hub:
            with pytest.raises(ToolTimeout):
                await hub.call("directory_tree", {"path": hub.workspace})
        assert pool.stats.starts == 1
        async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
            await hub.call("list_allowed_directories", {})
        assert pool.stats.starts == 2 and pool.stats.reused == 0  # the timed-out call may have been running
    finally:
        await pool.aclose()


async def test_an_episode_that_ends_in_an_exception_closes_its_world(specs: list[ToolSpec]) -> None:
    pool = ServerPool()
    root: Path | None = None
    try:
        with pytest.raises(RuntimeError, match="episode broke"):
            async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
                await hub.call("get_current_time", {"timezone": "UTC"})
                root = hub.root
                raise RuntimeError("episode broke")
        assert root is not None and not root.exists()
        async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
            assert (await hub.open_world()).root != root
    finally:
        await pool.aclose()


async def test_an_episode_without_real_calls_leases_no_world(specs: list[ToolSpec]) -> None:
    pool = ServerPool()
    try:
        async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
            assert hub.isolation == "confined"
        assert pool.stats.worlds == 0 and hub.final_state is None
        async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
            await hub.call("get_current_time", {"timezone": "UTC"})
        assert pool.stats.worlds == 1 and hub.final_state is not None and hub.final_state["memory"] is None
    finally:
        await pool.aclose()


async def test_a_server_that_died_is_not_lent_to_the_next_episode(specs: list[ToolSpec]) -> None:
    before = _servers()
    pool = ServerPool()
    try:
        async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
            await hub.call("get_current_time", {"timezone": "UTC"})
            for pid in _servers() - before:
                os.kill(pid, signal.SIGKILL)
            await anyio.sleep(0.3)
            with pytest.raises(ToolError, match="Connection closed"):
                await hub.call("get_current_time", {"timezone": "UTC"})
            with pytest.raises(ToolError, match="exited"):  # known dead now: not sent to again
                await hub.call("get_current_time", {"timezone": "UTC"})
        async with RealToolHub(SERVERS, specs=specs, pool=pool) as hub:
            reply = await hub.call("get_current_time", {"timezone": "UTC"})
        assert '"timezone": "UTC"' in reply.content and pool.stats.starts == 2 and pool.stats.reused == 0
    finally:
        await pool.aclose()
