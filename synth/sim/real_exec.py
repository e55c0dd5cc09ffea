"""Real execution of sandbox-safe MCP tools for one episode: a scratch world, real servers over stdio.

``RealToolHub`` owns one scratch root per episode (a temp dir with the episode's seed files and a git
repository with one commit), starts the sandbox-safe servers lazily (a server starts when one of its tools is
first called), answers calls with what the real server said, and gives the final world state to the judge via
``snapshot()`` (taken automatically on exit as ``final_state``).

Tool failures never raise: a server error, an ``isError`` result, a crash or a timeout all come back as
``RealCallResult(is_error=True)`` so the rollout can turn them into a tool message. Only mistakes of the
caller (an unknown tool name, using the hub outside ``async with``) raise.

Confinement is first each server's own rule (the filesystem server refuses paths outside its allowed
directory; git is bound to ``--repository``). On top of that each server runs with no network, every mount
read-only but the scratch root, root-only dirs hidden, no capabilities, rlimits and an unprivileged uid (one per
episode, which owns the scratch root) (``synth.sim.sandbox.confine_command``), so the kernel holds the line even
if a server's own check fails. Where that confinement is unavailable (not root, no namespaces) the hub refuses
to start servers, unless ``allow_unconfined`` says to run them unconfined; ``hub.isolation`` records which.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.to_thread
import mcp_types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from pydantic import BaseModel, Field

from synth.schemas import FunctionSpec, ToolProvenance, ToolSpec, stable_id
from synth.sim.sandbox import (
    ConfinementUnavailable,
    confine_command,
    give_to,
    isolation,
    kill_uid,
    runtime_paths,
    server_uid,
)
from synth.tools.servers import SERVERS_FILE, ServerEntry, ensure_installed, install_root, load_servers, server_env

log = logging.getLogger(__name__)

__all__ = ["ConfinementUnavailable", "HubError", "RealToolHub", "isolation", "sandbox_servers"]

# Pinned versions checked against the registries on 2026-11-25; tools_registry/mcp_servers.yaml wins when it
# has sandbox-safe entries.
DEFAULT_SERVERS: tuple[ServerEntry, ...] = (
    ServerEntry(id="pypi/mcp-server-time", registry="pypi", package="mcp-server-time", version="2026.10.19",
                command="mcp-server-time", category="time", sandbox_safe=True),
    ServerEntry(id="pypi/mcp-server-git", registry="pypi", package="mcp-server-git", version="2026.10.19",
                command="mcp-server-git", args=["--repository", "{root}"], category="developer",
                sandbox_safe=True),
    ServerEntry(id="npm/@modelcontextprotocol/server-filesystem", registry="npm",
                package="@modelcontextprotocol/server-filesystem", version="2026.8.31",
                command="mcp-server-filesystem", args=["{root}"], category="filesystem", sandbox_safe=True),
    ServerEntry(id="npm/@modelcontextprotocol/server-memory", registry="npm",
                package="@modelcontextprotocol/server-memory", version="2026.8.31",
                command="mcp-server-memory", env={"MEMORY_FILE_PATH": "{root}/memory.json"},
                category="memory", sandbox_safe=True),
)  # fmt: skip

DEFAULT_WORKSPACE = "/home/user/workspace"
"""Where confined servers see the scratch root: the same path in every episode, so trajectories carry no
random temp paths (and concurrent episodes still never share one, each server having its own mount view)."""

SNAPSHOT_FILE_BYTES = 4096
"""Files up to this size have their text in ``snapshot()``; larger or binary files only their size."""
SNAPSHOT_MAX_FILES = 500


class UnknownToolError(KeyError):
    """A call named a tool no server of this hub has."""

    def __str__(self) -> str:
        return str(self.args[0])


class HubError(RuntimeError):
    """The hub itself was misused or misconfigured (not a tool failure)."""


class RealCallResult(BaseModel):
    content: str = Field(description="Text of the tool result; for errors, the server's or hub's message.")
    is_error: bool = Field(default=False, description="The server flagged an error, crashed or timed out.")
    server: str = Field(description="Server id that answered (or should have).")


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


def result_text(result: mcp_types.CallToolResult) -> str:
    """Join a tool result's content into the one string a tool message carries."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        else:
            parts.append(f"[{block.type} content: {getattr(block, 'mime_type', 'unknown type')}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


@dataclass
class _Server:
    entry: ServerEntry
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    session: ClientSession | None = None
    tools: list[mcp_types.Tool] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)
    failed: str | None = None
    started: bool = False  # stays True after the server stops: its effects are part of the episode


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
    ) -> None:
        entries = list(servers) if servers is not None else sandbox_servers()
        unsafe = [e.id for e in entries if not e.sandbox_safe]
        if unsafe:
            raise HubError(f"servers not marked sandbox_safe can't run for real: {unsafe}; simulate them")
        self._servers = {e.id: _Server(e) for e in entries}
        self._given_specs = list(specs) if specs is not None else None
        self._initial_files = dict(initial_files or {})
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self._allow_unconfined, self._wanted_workspace = allow_unconfined, workspace
        self.isolation = "unknown"
        """Servers' confinement beyond their own rules, set on enter: 'confined' or 'unconfined' (allowed)."""
        self._uid: int | None = None
        self._workspace: str | None = None
        self._specs: list[ToolSpec] | None = None
        self._owner: dict[str, str] = {}  # tool name -> server id
        self._base: Path | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.final_state: dict[str, Any] | None = None
        """``snapshot()`` taken as the hub closed (None before that)."""

    @property
    def root(self) -> Path:
        """The episode's scratch world: what the filesystem server serves and the git repository."""
        if self._base is None:
            raise HubError("the hub has no scratch root outside 'async with RealToolHub(...)'")
        return self._base / "root"

    @property
    def workspace(self) -> str:
        """The scratch root as the tools see it: ``DEFAULT_WORKSPACE`` when confined, else the host path.

        Put it in the agent's system prompt; paths in tool arguments and results are under it.
        """
        return self._workspace or str(self.root)

    async def __aenter__(self) -> Self:
        if self._base is not None:
            raise HubError("this RealToolHub is already open; use one hub per episode")
        # Fresh server state, so a hub can be reused for a new episode after it was closed.
        self._servers = {sid: _Server(s.entry) for sid, s in self._servers.items()}
        self.final_state = None
        # Probed once per process (it runs a confined program), off the event loop.
        self.isolation = await anyio.to_thread.run_sync(isolation, self._allow_unconfined)
        confined = self.isolation == "confined"
        self._workspace = self._wanted_workspace if confined else None
        self._uid = server_uid() if confined else None
        self._base = Path(tempfile.mkdtemp(prefix="synth-world-")).resolve()
        try:
            (self._base / "logs").mkdir()
            await anyio.to_thread.run_sync(self._init_root)
            if self._uid is not None:
                give_to(self.root, self._uid)  # the episode's servers run as this uid and write only here
            self._stack = AsyncExitStack()
            self._tg = await self._stack.enter_async_context(anyio.create_task_group())
            if self._given_specs is not None:
                self._adopt_specs(self._given_specs)
            else:
                async with anyio.create_task_group() as starting:  # servers start in parallel: node is slow
                    for server in self._servers.values():
                        starting.start_soon(self._ensure_started, server)
                failed = {s.entry.id: s.failed for s in self._servers.values() if s.failed}
                if failed:
                    raise HubError(
                        f"could not list the tools of {sorted(failed)}: {failed}; pass specs= from "
                        "a harvest to start servers only when called"
                    )
                listed = [spec_from_mcp(s.entry, t) for s in self._servers.values() for t in s.tools]
                self._adopt_specs(listed)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # The scratch root is gone after exit; keep the final state for the trajectory and the judge.
            with anyio.move_on_after(self.call_timeout_s):
                self.final_state = await self.asnapshot()
        except Exception as snap_exc:
            self.final_state = {"error": f"final snapshot failed: {type(snap_exc).__name__}: {snap_exc}"}
        finally:
            await self._close()

    async def _close(self) -> None:
        for server in self._servers.values():
            server.stop.set()
        try:
            if self._stack is not None:
                # Each server task closes its own session and transport, which kills the server's process
                # group. (No shield here: a scope opened now would wrongly nest around the task group's own.)
                stack, self._stack, self._tg = self._stack, None, None
                await stack.aclose()
        finally:
            if self._uid is not None:
                kill_uid(self._uid)  # helpers a server started outside its process group go too
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None

    def _init_root(self) -> None:
        root = self.root
        root.mkdir()
        for rel, text in self._initial_files.items():
            path = _inside(root, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if any(_is_git(s.entry) for s in self._servers.values()):
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
        values = [value for s in self._servers.values() for value in s.entry.env.values()]
        return {value.removeprefix("{root}/") for value in values if value.startswith("{root}/")}

    def _adopt_specs(self, specs: Sequence[ToolSpec]) -> None:
        owner: dict[str, str] = {}
        for spec in specs:
            server_id = spec.provenance.server
            if server_id not in self._servers:
                raise HubError(
                    f"tool {spec.function.name!r} comes from server {server_id!r}, not run by this hub; "
                    f"servers here: {sorted(self._servers)}"
                )
            name = spec.function.name
            if name in owner and owner[name] != server_id:
                raise HubError(
                    f"tool name {name!r} is offered by both {owner[name]} and {server_id}; "
                    "run them in separate hubs"
                )
            owner[name] = server_id
        self._specs, self._owner = list(specs), owner

    def _params(self, entry: ServerEntry, exe: Path) -> StdioServerParameters:
        seen = self.workspace
        args = [a.replace("{root}", seen) for a in entry.args]
        env = {k: v.replace("{root}", seen) for k, v in server_env(entry).items()}
        argv = [str(exe), *args]
        # The wrapper execs the server in place (no fork), so the transport's kill still reaches it.
        if self._uid is not None:
            env["HOME"] = seen  # the host's HOME is hidden from the server's uid
            expose = [str(install_root(entry)), *runtime_paths(exe)]
            argv = confine_command(argv, self.root, uid=self._uid, visible_at=self._workspace, expose=expose)
        return StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(self.root))

    async def _ensure_started(self, server: _Server) -> None:
        if self._tg is None:
            raise HubError("the hub is not open: use 'async with RealToolHub(...) as hub'")
        async with server.lock:
            if server.session is not None or server.failed:
                return
            try:
                # Installing is cached and bounded by its own timeout; only the start itself is bounded here.
                exe = await anyio.to_thread.run_sync(ensure_installed, server.entry)
                with anyio.fail_after(self.start_timeout_s):
                    await self._tg.start(self._serve, server, exe)
            except Exception as exc:  # a server that won't start becomes a tool error, not a crash
                tail = self._stderr_tail(server.entry)
                server.failed = f"{type(exc).__name__}: {exc}" + (f"; server stderr: {tail}" if tail else "")
                log.warning("real exec: %s failed to start: %s", server.entry.id, server.failed)

    async def _serve(self, server: _Server, exe: Path, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own one server's session for the episode: its transport must be entered and left in one task."""
        entry, started = server.entry, False
        try:
            async with AsyncExitStack() as stack:
                errlog = stack.enter_context(open(self._log_path(entry), "w"))  # noqa: SIM115
                read, write = await stack.enter_async_context(stdio_client(self._params(entry, exe), errlog))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                server.tools = await _list_tools(session)
                server.session = session
                started = server.started = True
                task_status.started()
                await server.stop.wait()
        except Exception as exc:
            if not started:
                raise  # tg.start() hands it to _ensure_started, which records why the server is unavailable
            # A server that dies mid-episode must not tear down the hub's task group (and the other servers).
            server.failed = f"{type(exc).__name__}: {exc}"
            log.warning("real exec: %s ended with an error: %s", entry.id, server.failed)
        finally:
            server.session = None

    def _log_path(self, entry: ServerEntry) -> Path:
        assert self._base is not None
        return self._base / "logs" / (entry.id.replace("/", "_").replace("@", "") + ".stderr")

    def _stderr_tail(self, entry: ServerEntry) -> str:
        try:
            return " | ".join(self._log_path(entry).read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return ""

    def started_servers(self) -> list[str]:
        """Ids of the servers running now (lazy starts make this a subset of the hub's servers)."""
        return sorted(sid for sid, s in self._servers.items() if s.session is not None)

    def tools(self) -> list[ToolSpec]:
        """The hub's tools in OpenAI form (``spec.openai()``), with provenance and ``real_exec=True``."""
        if self._specs is None:
            raise HubError("tool specs are known only inside 'async with RealToolHub(...)' (or pass specs=)")
        return list(self._specs)

    def server_of(self, name: str) -> str:
        """Server id that runs tool ``name``; raises UnknownToolError listing the known tools."""
        if self._specs is None:
            raise HubError("the hub is not open: use 'async with RealToolHub(...) as hub'")
        try:
            return self._owner[name]
        except KeyError:
            raise UnknownToolError(
                f"unknown real tool {name!r}; known tools: {', '.join(sorted(self._owner)) or '(none)'}"
            ) from None

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> RealCallResult:
        """Call tool ``name`` on its real server; any failure of the tool comes back as ``is_error=True``."""
        server = self._servers[self.server_of(name)]
        await self._ensure_started(server)
        session = server.session
        if session is None:
            why = server.failed or "the server has stopped"
            return RealCallResult(
                content=f"Error: tool {name!r} unavailable: {why}", is_error=True, server=server.entry.id
            )
        try:
            with anyio.fail_after(self.call_timeout_s):
                result = await session.call_tool(name, dict(arguments or {}))
        except TimeoutError:
            return RealCallResult(
                content=f"Error: tool {name!r} timed out after {self.call_timeout_s:g}s",
                is_error=True,
                server=server.entry.id,
            )
        except Exception as exc:  # protocol errors (bad arguments, a crashed server) are tool errors too
            message = getattr(getattr(exc, "error", None), "message", None) or str(exc) or type(exc).__name__
            return RealCallResult(content=f"Error: {message}", is_error=True, server=server.entry.id)
        return RealCallResult(
            content=result_text(result), is_error=bool(result.is_error), server=server.entry.id
        )

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

    def _memory_servers(self) -> list[_Server]:
        return [
            s for s in self._servers.values() if s.started and any(t.name == "read_graph" for t in s.tools)
        ]

    def _stored_graph(self) -> Any:
        for server in self._memory_servers():
            files = [v.removeprefix("{root}/") for v in server.entry.env.values() if v.startswith("{root}/")]
            if not files:
                return {
                    "error": f"{server.entry.id} keeps its graph outside the scratch root; use asnapshot()"
                }
            return _read_graph_file(self.root / files[0])
        return None

    async def _memory_graph(self) -> Any:
        for server in self._memory_servers():
            session = server.session
            if session is None:
                return {"error": f"{server.entry.id} is not running: {server.failed or 'stopped'}"}
            try:
                with anyio.fail_after(self.call_timeout_s):
                    result = await session.call_tool("read_graph", {})
            except Exception as exc:  # a snapshot reports what it could not read
                return {"error": f"read_graph failed: {exc}"}
            text = result_text(result)
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return {"text": text}
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


async def _list_tools(session: ClientSession) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    while True:
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        listed = await session.list_tools(params=params)
        tools.extend(listed.tools)
        cursor = listed.next_cursor
        if not cursor:
            return tools


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
