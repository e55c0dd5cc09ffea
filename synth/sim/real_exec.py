"""Real execution of sandbox-safe MCP tools for one episode: a scratch world, real servers over stdio.

``RealToolHub`` gives an episode a scratch root (a dir with the episode's seed files and a git repository with
one commit), starts the sandbox-safe servers lazily (a server starts when one of its tools is first called),
answers calls with what the real server said, and gives the final world state to the judge via ``snapshot()``
(taken automatically on exit as ``final_state``). Given a shard's ``ServerPool`` (``synth.sim.server_pool``), the
root and the servers already running on it are leased from the pool and given back (emptied, and only what may
be kept) on exit; without one, the hub's world is its own and closes with it.

Tool failures raise ``synth.tools.errors.ToolError`` (a server error, an ``isError`` result, a crash, a timeout),
worded as the tool message that the episode's one boundary records. Servers that cannot serve this hub (not
sandbox-safe, a tool name two servers offer, tools that cannot be listed) raise ``HubError``; mistakes of the
caller (an unknown tool name, using the hub outside ``async with``) raise ``UnknownToolError`` / ``RuntimeError``.

Confinement is first each server's own rule (the filesystem server refuses paths outside its allowed
directory; git is bound to ``--repository``). On top of that each server runs with no network, every mount
read-only but the scratch root, root-only dirs hidden, no capabilities, rlimits and an unprivileged uid (one per
world, which owns the scratch root) (``synth.runtime.sandbox.confine_command``), so the kernel holds the line even
if a server's own check fails. Where that confinement is unavailable (not root, no namespaces) the hub refuses
to start servers, unless ``allow_unconfined`` says to run them unconfined; ``hub.isolation`` records which.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
import mcp_types
from pydantic import BaseModel, Field

from synth.errors import SynthError
from synth.runtime.sandbox import ConfinementUnavailable, give_to, isolation
from synth.schemas import FunctionSpec, ToolProvenance, ToolSpec, stable_id
from synth.sim.server_pool import DEFAULT_WORKSPACE, ServerPool, World, server_key
from synth.tools.errors import ToolFailed, ToolTimeout, ToolUnavailable
from synth.tools.mcp_client import McpError, McpServer, McpTimeout, result_text
from synth.tools.servers import SERVERS_FILE, ServerEntry, load_servers

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_WORKSPACE", "ConfinementUnavailable", "HubError", "RealToolHub", "ServerPool", "isolation",
           "result_text", "sandbox_servers"]

# Pinned versions, so every run installs the same servers (move a pin on purpose, and read ``reuse`` again from
# that version's source); tools_registry/mcp_servers.yaml wins when it has sandbox-safe entries. ``reuse``, as
# each pinned version's source shows: time keeps nothing; git opens the repository afresh on every call;
# filesystem keeps only its allowed dirs (from argv, the same every episode); memory reads its file on every call.
DEFAULT_SERVERS: tuple[ServerEntry, ...] = (
    ServerEntry(id="pypi/mcp-server-time", registry="pypi", package="mcp-server-time", version="2026.10.19",
                command="mcp-server-time", category="time", sandbox_safe=True, reuse="stateless"),
    ServerEntry(id="pypi/mcp-server-git", registry="pypi", package="mcp-server-git", version="2026.10.19",
                command="mcp-server-git", args=["--repository", "{root}"], category="developer",
                sandbox_safe=True, reuse="workspace"),
    ServerEntry(id="npm/@modelcontextprotocol/server-filesystem", registry="npm",
                package="@modelcontextprotocol/server-filesystem", version="2026.8.31",
                command="mcp-server-filesystem", args=["{root}"], category="filesystem", sandbox_safe=True,
                reuse="workspace"),
    ServerEntry(id="npm/@modelcontextprotocol/server-memory", registry="npm",
                package="@modelcontextprotocol/server-memory", version="2026.8.31",
                command="mcp-server-memory", env={"MEMORY_FILE_PATH": "{root}/memory.json"},
                category="memory", sandbox_safe=True, reuse="workspace"),
)  # fmt: skip

SNAPSHOT_FILE_BYTES = 4096
"""Files up to this size have their text in ``snapshot()``; larger or binary files only their size."""
SNAPSHOT_MAX_FILES = 500


class UnknownToolError(KeyError):
    """A call named a tool no server of this hub has."""

    def __str__(self) -> str:
        return str(self.args[0])


class HubError(SynthError, RuntimeError):
    """The hub's servers cannot serve it (not a tool failure, not the caller's mistake)."""

    hint = ("the servers come from tools_registry/mcp_servers.yaml; `synth tools harvest --only SERVER_ID` starts "
            "one on its own and shows why it fails")


class RealCallResult(BaseModel):
    """A real call that succeeded (failures raise ``ToolError``)."""

    content: str = Field(description="Text of the tool result.")
    server: str = Field(description="Server id that answered.")


def sandbox_servers(path: Path = SERVERS_FILE) -> list[ServerEntry]:
    """Sandbox-safe entries of the servers file when it has any, else the pinned ``DEFAULT_SERVERS``."""
    if path.exists():
        safe = _sandbox_safe(path, path.stat().st_mtime_ns)
        if safe:
            return list(safe)
    return list(DEFAULT_SERVERS)


@functools.lru_cache(maxsize=8)
def _sandbox_safe(path: Path, mtime_ns: int) -> tuple[ServerEntry, ...]:
    # Every episode with real tools asks, and the file lists hundreds of servers: parsing it each time was the
    # rollouts' largest Python cost in `make bench-scale`. Keyed on the file's mtime, so an edit is seen.
    return tuple(entry for entry in load_servers(path) if entry.sandbox_safe)


def spec_from_mcp(entry: ServerEntry, tool: mcp_types.Tool) -> ToolSpec:
    """The OpenAI-form spec of one tool as the server listed it, with its provenance."""
    return ToolSpec(
        id=stable_id("tool", entry.id, tool.name),
        function=FunctionSpec(
            name=tool.name,
            description=tool.description or tool.title or tool.name,
            parameters=tool.input_schema or {"type": "object", "properties": {}},
        ),
        provenance=ToolProvenance(
            source="mcp", registry=entry.registry, package=entry.package, version=entry.version,
            server=entry.id, harvested_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
        real_exec=True,
    )  # fmt: skip


class RealToolHub:
    """Real tools for one episode. Use as ``async with RealToolHub(...) as hub:``.

    - ``servers``: sandbox-safe entries; default ``sandbox_servers()`` (servers file, else the pinned ones).
    - ``specs``: tool specs known from a harvest (``provenance.server`` must name one of ``servers``). Given
      them, the hub starts no server until a call needs it; without them, entering starts every server (in
      parallel) to list its tools.
    - ``initial_files``: root-relative path -> text, written (and committed, with a git server) before start.
    - ``call_timeout_s`` / ``start_timeout_s``: per call / per server start; past them the call is an error.
    - ``workspace``: where confined servers see the scratch root (see ``DEFAULT_WORKSPACE``).
    - ``allow_unconfined``: where confinement is unavailable, run the servers unconfined instead of refusing
      (an explicit choice; ``hub.isolation`` is then ``"unconfined"`` and the run report should say so).
    - ``pool``: a shard's ``ServerPool``: the episode leases a world from it (servers already running, the root
      emptied) and gives it back on exit. Without one the hub has a world of its own, closed on exit
      (``workspace``, ``allow_unconfined`` and ``start_timeout_s`` then apply; with a pool, the pool's do).
      With a pool and ``specs``, the world is leased at the first call (or ``open_world()``), so an episode
      that never calls a real tool holds none; ``final_state`` then stays None.

    ``call`` returns what the server answered, or raises a ``synth.tools.errors.ToolError`` whose text is the
    tool message (the episode's boundary records it).
    """

    def __init__(
        self,
        servers: Sequence[ServerEntry] | None = None,
        *,
        specs: Sequence[ToolSpec] | None = None,
        initial_files: Mapping[str, str] | None = None,
        call_timeout_s: float = 30,
        start_timeout_s: float = 60,
        workspace: str = DEFAULT_WORKSPACE,
        allow_unconfined: bool = False,
        pool: ServerPool | None = None,
    ) -> None:
        entries = list(servers) if servers is not None else sandbox_servers()
        unsafe = [e.id for e in entries if not e.sandbox_safe]
        if unsafe:
            raise HubError(f"servers not marked sandbox_safe can't run for real: {unsafe}",
                           hint="simulate their tools instead")
        self._entries = {e.id: e for e in entries}
        self._given_specs = list(specs) if specs is not None else None
        self._initial_files = dict(initial_files or {})
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self._allow_unconfined, self._wanted_workspace = allow_unconfined, workspace
        self._shared_pool = pool
        self._lazy = pool is not None and specs is not None
        self._pool: ServerPool | None = None
        self._world: World | None = None
        self._opening: anyio.Lock | None = None
        self.isolation = "unknown"
        """Servers' confinement beyond their own rules, set on enter: 'confined' or 'unconfined' (allowed)."""
        self._specs: list[ToolSpec] | None = None
        self._owner: dict[str, str] = {}  # tool name -> server id
        self._used: dict[str, McpServer] = {}  # server id -> its server, for those this episode started or used
        self._tainted: set[str] = set()  # server keys a call timed out in: not kept for another episode
        self.final_state: dict[str, Any] | None = None
        """``snapshot()`` taken as the hub closed (None before that)."""

    @property
    def root(self) -> Path:
        """The episode's scratch world: what the filesystem server serves and the git repository."""
        if self._world is None:
            raise RuntimeError("the hub has no scratch root outside 'async with RealToolHub(...)' (with a pool: "
                               "before the first call or 'await hub.open_world()')")
        return self._world.root

    @property
    def workspace(self) -> str:
        """The scratch root as the tools see it: ``DEFAULT_WORKSPACE`` when confined, else the host path.

        Put it in the agent's system prompt; paths in tool arguments and results are under it.
        """
        if self._world is None:
            if self._pool is not None and self.isolation == "confined":
                return self._pool.workspace  # the same path in every world: known before one is leased
            raise RuntimeError("the hub has no workspace outside 'async with RealToolHub(...)' (unconfined, with "
                               "a pool: before the first call or 'await hub.open_world()')")
        return self._world.seen

    async def __aenter__(self) -> Self:
        if self._pool is not None:
            raise RuntimeError("this RealToolHub is already open; use one hub per episode")
        # Fresh per-episode state, so a hub can be reused for a new episode after it was closed.
        self._used, self._tainted, self.final_state = {}, set(), None
        self._opening = anyio.Lock()
        self._pool = self._shared_pool or ServerPool(
            allow_unconfined=self._allow_unconfined, workspace=self._wanted_workspace, reuse=False,
            start_timeout_s=self.start_timeout_s,
        )  # fmt: skip
        try:
            if self._lazy:
                # Where servers can't be confined (and unconfined isn't allowed) this refuses now, not mid-episode.
                self.isolation = await anyio.to_thread.run_sync(isolation, self._pool.allow_unconfined)
            else:
                await self.open_world()
            if self._given_specs is not None:
                self._adopt_specs(self._given_specs)
            else:
                failed: dict[str, str] = {}

                async def start(entry: ServerEntry) -> None:
                    try:
                        await self._server(entry)
                    except McpError as exc:
                        failed[entry.id] = str(exc)

                async with anyio.create_task_group() as starting:  # servers start in parallel: node is slow
                    for entry in self._entries.values():
                        starting.start_soon(start, entry)
                if failed:
                    raise HubError(
                        f"could not list the tools of {sorted(failed)}: {failed}; pass specs= from "
                        "a harvest to start servers only when called"
                    )
                listed = [spec_from_mcp(self._entries[sid], t) for sid, s in self._used.items() for t in s.tools]
                self._adopt_specs(listed)
        except BaseException:
            await self._close(failed=True)
            raise
        return self

    async def open_world(self, first: ServerEntry | None = None) -> World:
        """This episode's world, leased now if it has none yet (preferring one where ``first``, the server about
        to be called, already runs): its root holds the initial files (and the git repository), owned by the
        servers' uid."""
        if self._pool is None or self._opening is None:
            raise RuntimeError("the hub is not open: use 'async with RealToolHub(...) as hub'")
        async with self._opening:
            if self._world is None:
                world = await self._pool.lease(self._entries.values(), first=first)
                self._world = world
                self.isolation = self._pool.isolation
                await anyio.to_thread.run_sync(self._init_root)
                if world.uid is not None:
                    give_to(world.root, world.uid)  # the episode's servers run as this uid and write only here
            return self._world

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._world is None:  # a pooled episode that never called a real tool: nothing ran, nothing to keep
            await self._close(failed=exc_type is not None)
            return
        try:
            # The scratch root is emptied after exit; keep the final state for the trajectory and the judge.
            with anyio.move_on_after(self.call_timeout_s):
                self.final_state = await self.asnapshot()
        except Exception as snap_exc:
            self.final_state = {"error": f"final snapshot failed: {type(snap_exc).__name__}: {snap_exc}"}
        finally:
            await self._close(failed=exc_type is not None)

    async def _close(self, *, failed: bool) -> None:
        pool, world, self._pool, self._world = self._pool, self._world, None, None
        if pool is None:
            return
        try:
            if world is not None:
                # An episode that ended in an exception may have left a call running: nothing of it is kept.
                await pool.release(world, tainted=self._tainted, failed_episode=failed)
        finally:
            if pool is not self._shared_pool:
                await pool.aclose()

    def _init_root(self) -> None:
        root = self.root
        for rel, text in self._initial_files.items():
            path = _inside(root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if any(_is_git(e) for e in self._entries.values()):
            identity = ["-c", "user.name=synth", "-c", "user.email=synth@localhost"]
            for cmd in (["init", "-q", "-b", "main"], ["config", "user.name", "synth"],
                        ["config", "user.email", "synth@localhost"], ["add", "-A"],
                        [*identity, "commit", "-q", "--allow-empty", "-m", "Initial commit"]):  # fmt: skip
                _git(root, cmd)
            # Servers' own storage (the memory graph file) is not part of the repository the agent works on.
            internal = sorted(self._internal_files())
            (root / ".git" / "info").mkdir(exist_ok=True)
            (root / ".git" / "info" / "exclude").write_text("".join(f"/{name}\n" for name in internal))

    def _internal_files(self) -> set[str]:
        """Root-relative files that servers keep their own state in (from '{root}/...' env values)."""
        values = [value for e in self._entries.values() for value in e.env.values()]
        return {value.removeprefix("{root}/") for value in values if value.startswith("{root}/")}

    def _adopt_specs(self, specs: Sequence[ToolSpec]) -> None:
        owner: dict[str, str] = {}
        for spec in specs:
            server_id = spec.provenance.server
            if server_id not in self._entries:
                raise HubError(
                    f"tool {spec.function.name!r} comes from server {server_id!r}, not run by this hub; "
                    f"servers here: {sorted(self._entries)}"
                )
            name = spec.function.name
            if name in owner and owner[name] != server_id:
                raise HubError(
                    f"tool name {name!r} is offered by both {owner[name]} and {server_id}; "
                    "run them in separate hubs"
                )
            owner[name] = server_id
        self._specs, self._owner = list(specs), owner

    async def _server(self, entry: ServerEntry) -> McpServer:
        """``entry``'s running server (started in this episode's world if needed); McpError if it can't be."""
        world = await self.open_world(first=entry)
        assert self._pool is not None
        server = await self._pool.server(world, entry)
        self._used[entry.id] = server
        return server

    def started_servers(self) -> list[str]:
        """Ids of the servers running for this episode (lazy starts make this a subset of the hub's servers)."""
        return sorted(sid for sid, s in self._used.items() if s.running)

    def tools(self) -> list[ToolSpec]:
        """The hub's tools in OpenAI form (``spec.openai()``), with provenance and ``real_exec=True``."""
        if self._specs is None:
            raise RuntimeError("tool specs are known only inside 'async with RealToolHub(...)' (or pass specs=)")
        return list(self._specs)

    def server_of(self, name: str) -> str:
        """Server id that runs tool ``name``; raises UnknownToolError listing the known tools."""
        if self._specs is None:
            raise RuntimeError("the hub is not open: use 'async with RealToolHub(...) as hub'")
        try:
            return self._owner[name]
        except KeyError:
            raise UnknownToolError(
                f"unknown real tool {name!r}; known tools: {', '.join(sorted(self._owner)) or '(none)'}"
            ) from None

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> RealCallResult:
        """Call tool ``name`` on its real server and return its answer.

        Raises ``ToolUnavailable`` (the server won't start or has stopped), ``ToolTimeout``, ``ToolFailed`` (the
        server refused the request or flagged its result as an error), each worded as the tool message;
        ``UnknownToolError`` for a name no server here has (the caller's mistake).
        """
        entry = self._entries[self.server_of(name)]
        try:
            server = await self._server(entry)
        except McpError as exc:
            raise ToolUnavailable(f"Error: tool {name!r} unavailable: {exc}", server=entry.id) from exc
        try:
            reply = await server.call_tool(name, dict(arguments or {}), self.call_timeout_s)
        except McpTimeout as exc:
            self._tainted.add(server_key(entry))  # the call may still be running in the server
            raise ToolTimeout(
                f"Error: tool {name!r} timed out after {self.call_timeout_s:g}s", server=entry.id
            ) from exc
        except McpError as exc:  # protocol errors (bad arguments, a crashed server) are tool errors too
            raise ToolFailed(f"Error: {exc}", server=entry.id) from exc
        if reply.is_error:
            raise ToolFailed(reply.text, server=entry.id)
        return RealCallResult(content=reply.text, server=entry.id)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state of the real world now, for the judge's code checks (sync: no server is called).

        - ``files``: relative path -> {"size", "content"}; content only for small UTF-8 files; ``.git`` and
          files that are a server's own storage (``memory.json``) are left out.
        - ``memory``: the memory graph ({"entities", "relations"}, what ``read_graph`` returns) if a memory
          server was started in this episode, else None. Read from the file the server saves after every
          change; ``asnapshot()`` asks the running server instead.
        - ``git``: {"log": one-line commits, newest first, "status": porcelain lines}, or None.
        """
        return self._state(self._stored_graph())

    async def asnapshot(self) -> dict[str, Any]:
        """``snapshot()`` with the memory graph from the running server's ``read_graph``, off the loop."""
        await self.open_world()
        memory = await self._memory_graph()
        return await anyio.to_thread.run_sync(self._state, memory)

    def _state(self, memory: Any) -> dict[str, Any]:
        root = self.root
        state: dict[str, Any] = {
            "files": _file_tree(root, self._internal_files()),
            "memory": memory,
            "git": None,
        }
        if (root / ".git").is_dir():
            try:
                log_lines = _git(root, ["log", "--oneline", "--no-decorate"])
                status = _git(root, ["status", "--porcelain"])
                state["git"] = {"log": log_lines.splitlines(), "status": status.splitlines()}
            except HubError as exc:  # the agent may have broken the repository; that is state too
                state["git"] = {"error": str(exc)}
        return state

    def _memory_servers(self) -> list[tuple[ServerEntry, McpServer]]:
        return [(self._entries[sid], s) for sid, s in self._used.items()
                if any(t.name == "read_graph" for t in s.tools)]  # fmt: skip

    def _stored_graph(self) -> Any:
        for entry, _server in self._memory_servers():
            files = [v.removeprefix("{root}/") for v in entry.env.values() if v.startswith("{root}/")]
            if not files:
                return {"error": f"{entry.id} keeps its graph outside the scratch root; use asnapshot()"}
            return _read_graph_file(self.root / files[0])
        return None

    async def _memory_graph(self) -> Any:
        for entry, server in self._memory_servers():
            if not server.running:
                return {"error": f"{entry.id} is not running: {server.failed or 'stopped'}"}
            try:
                reply = await server.call_tool("read_graph", {}, self.call_timeout_s)
            except McpError as exc:  # a snapshot reports what it could not read
                return {"error": f"read_graph failed: {exc}"}
            try:
                return json.loads(reply.text)
            except json.JSONDecodeError:
                return {"text": reply.text}
        return None


def _read_graph_file(path: Path) -> dict[str, Any]:
    """The memory server's JSONL storage as the graph ``read_graph`` returns (its ``loadGraph``, mirrored)."""
    graph: dict[str, list[dict[str, Any]]] = {"entities": [], "relations": []}
    if not path.exists():
        return graph
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if item.get("type") == "entity":
            graph["entities"].append({k: item.get(k) for k in ("name", "entityType", "observations")})
        elif item.get("type") == "relation":
            graph["relations"].append({k: item.get(k) for k in ("from", "to", "relationType")})
    return graph


def _inside(root: Path, rel: str) -> Path:
    """``root/rel``, refusing paths that would land outside the root (absolute or with '..')."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise HubError(f"initial file path {rel!r} must be relative and stay inside the scratch root")
    return root.joinpath(*pure.parts)


def _is_git(entry: ServerEntry) -> bool:
    return "git" in entry.command or entry.package.endswith("server-git")


def _git(root: Path, args: list[str]) -> str:
    proc = subprocess.run(
        # The root belongs to the servers' uid; git (as root) would otherwise refuse it as "dubious ownership".
        ["git", "-c", "safe.directory=*", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"},
    )
    if proc.returncode != 0:
        raise HubError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}")
    return proc.stdout


def _file_tree(root: Path, internal: set[str]) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) == root and d == ".git"))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel in internal or path.is_symlink():
                continue
            if len(files) >= SNAPSHOT_MAX_FILES:
                files["..."] = {"size": None, "content": f"over {SNAPSHOT_MAX_FILES} files; rest left out"}
                return files
            size = path.stat().st_size
            content: str | None = None
            if size <= SNAPSHOT_FILE_BYTES:
                try:
                    content = path.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    content = None
            files[rel] = {"size": size, "content": content}
    return files
