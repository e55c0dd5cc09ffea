"""Confined MCP server processes kept across the episodes of one shard, so a trajectory does not pay for starts.

Starting a confined server (a namespace, an interpreter, the SDK's imports, ``initialize``) was the largest cost
of a rollout in ``make bench-scale`` (about 160 of 216 CPU ms a trajectory). A ``ServerPool`` holds *worlds*:
a scratch root, the unprivileged uid that owns it, and the servers started on it (one per server spec,
``server_key``). An episode leases a world for its whole length (never shared by two episodes at once), starts
what it calls in it, and gives it back; the next episode gets it with the root emptied and the servers that are
safe to keep still running.

What a server may keep is its entry's ``reuse`` (``synth.tools.servers.ServerEntry``), read from its source:

- ``stateless``: keeps no state (mcp-server-time), kept as it is;
- ``workspace``: keeps its state only in files under the scratch root (filesystem, memory, git), kept, and the
  root is emptied between episodes (its directory stays: the servers' mount namespaces hold it);
- ``never`` (the default for an entry that says nothing): may keep state in its process, so it is stopped when
  the episode ends and the next episode starts a fresh one; the pool logs it once per server.

A server that timed out (a call may still be running in it), failed or stopped is never kept; a world whose
episode ended with an exception, or whose root could not be emptied, is closed whole. Nothing mutable passes
from one episode to the next except through these rules.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from synth.runtime.sandbox import isolation, kill_uid, server_uid
from synth.tools.mcp_client import McpError, McpServer, launch
from synth.tools.servers import ServerEntry, ensure_installed, server_env

log = logging.getLogger(__name__)

DEFAULT_WORKSPACE = "/home/user/workspace"
"""Where confined servers see the scratch root: the same path in every episode, so trajectories carry no
random temp paths (and concurrent episodes still never share one, each server having its own mount view)."""


REUSE_ENV = "SYNTH_MCP_REUSE"


def server_key(entry: ServerEntry) -> str:
    """What makes two servers interchangeable: the whole entry (package, version, command, args, env)."""
    return entry.model_dump_json()


@dataclass
class World:
    """A scratch root, its owner uid (None: unconfined) and the servers started on it, by ``server_key``."""

    base: Path
    uid: int | None
    workspace: str
    servers: dict[str, McpServer] = field(default_factory=dict)
    locks: dict[str, anyio.Lock] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    """Server keys the current episode has asked for (cleared at each lease)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Servers that would not start in the current episode, and why (cleared at each lease)."""
    episodes: int = 0

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def seen(self) -> str:
        """The root as its servers see it."""
        return self.workspace if self.uid is not None else str(self.root)

    def lock(self, key: str) -> anyio.Lock:
        return self.locks.setdefault(key, anyio.Lock())


@dataclass
class PoolStats:
    worlds: int = 0
    starts: int = 0
    reused: int = 0
    fresh_for_state: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ServerPool:
    """Worlds of confined MCP servers for one event loop (one shard): ``lease``, ``server``, ``release``.

    ``reuse=False`` closes every world when it is released (one fresh world per episode, as a hub without a
    pool has); left unset, it is on unless the environment says ``SYNTH_MCP_REUSE=0`` (a diagnostic switch:
    ``make bench-scale`` measures the pool against fresh servers with it, and it rules the pool out when a
    server misbehaves). The pool's servers live in a task group of its own task, started on first use, so they outlive
    any one episode's task; ``aclose()`` stops them, and so does the end of the event loop (``asyncio.run``
    cancels the task, which stops every server and removes the roots).
    """

    def __init__(self, *, allow_unconfined: bool = False, workspace: str = DEFAULT_WORKSPACE,
                 reuse: bool | None = None, start_timeout_s: float = 60) -> None:  # fmt: skip
        self.allow_unconfined = allow_unconfined
        self.workspace = workspace
        self.reuse = reuse if reuse is not None else os.environ.get(REUSE_ENV, "1") != "0"
        self.start_timeout_s = start_timeout_s
        self.isolation = "unknown"
        self.stats = PoolStats()
        self._idle: list[World] = []
        self._worlds: list[World] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: anyio.Event | None = None
        self._told_fresh: set[str] = set()

    async def _group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            if self._task is not None and self._task.done():
                raise RuntimeError("this ServerPool is closed")
            ready = anyio.Event()
            self._closing = anyio.Event()
            self._task = asyncio.get_running_loop().create_task(self._supervise(ready, self._closing))
            await ready.wait()
        assert self._tg is not None
        return self._tg

    async def _supervise(self, ready: anyio.Event, closing: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                ready.set()
                await closing.wait()
                for world in self._worlds:
                    for server in world.servers.values():
                        server.stop()
        finally:
            self._tg = None
            for world in self._worlds:
                _remove(world)
            self._worlds, self._idle = [], []
            if self.stats.starts:
                log.info("MCP server pool closed: %s", self.stats.as_dict())

    async def lease(self, wanted: Iterable[ServerEntry] = (), first: ServerEntry | None = None) -> World:
        """A world for one episode: an idle one, else a new one. Among idle worlds, one already running ``first``
        (the server the episode needs now) wins, then the one running most of ``wanted``."""
        if self.isolation == "unknown":
            # Probed once per process (it runs a confined program), off the event loop.
            self.isolation = await anyio.to_thread.run_sync(isolation, self.allow_unconfined)
        await self._group()
        keys = {server_key(e) for e in wanted}
        now = server_key(first) if first is not None else None

        def fit(world: World) -> tuple[bool, int]:
            running = {k for k, s in world.servers.items() if s.running}
            return now in running, len(keys & running)

        if self._idle:
            world = max(self._idle, key=fit)
            self._idle.remove(world)
        else:
            confined = self.isolation == "confined"
            world = World(base=Path(tempfile.mkdtemp(prefix="synth-world-")).resolve(),
                          uid=server_uid() if confined else None, workspace=self.workspace)  # fmt: skip
            (world.base / "logs").mkdir()
            world.root.mkdir()
            self._worlds.append(world)
            self.stats.worlds += 1
        world.episodes += 1
        world.touched, world.failed = set(), {}
        return world

    async def server(self, world: World, entry: ServerEntry) -> McpServer:
        """``entry``'s server in ``world``, started now if it is not running; raises McpError if it can't start.

        A server that failed in this episode stays failed until the episode ends (calls get the same error)."""
        key = server_key(entry)
        async with world.lock(key):
            first = key not in world.touched
            world.touched.add(key)
            if key in world.failed:
                raise McpError(world.failed[key])
            server = world.servers.get(key)
            if server is not None and server.failed:
                raise McpError(server.failed)
            if server is not None and server.running:
                self.stats.reused += first
                return server
            try:
                # Installing is cached and bounded by its own timeout; only the start itself is bounded here.
                exe = await anyio.to_thread.run_sync(ensure_installed, entry)
                how = launch(entry, exe, world.root, uid=world.uid, workspace=world.workspace,
                             env=server_env(entry))  # fmt: skip
                server = McpServer(name=entry.id, how=how, log_path=world.base / "logs" / _log_name(entry))
                world.servers[key] = server
                self.stats.starts += 1
                await server.start(await self._group(), self.start_timeout_s)
            except Exception as exc:  # a server that won't start is a tool error for the episode, not a crash
                world.servers.pop(key, None)
                why = server.failed if server is not None and server.failed else f"{type(exc).__name__}: {exc}"
                world.failed[key] = why
                log.warning("real exec: %s failed to start: %s", entry.id, why)
                raise McpError(why) from exc
            return server

    async def release(self, world: World, *, tainted: Iterable[str] = (), failed_episode: bool = False) -> None:
        """End ``world``'s episode: keep what may be kept (see the module docstring), empty the root, or close it.

        ``tainted``: server keys whose state can't be trusted (a call timed out in them)."""
        bad = set(tainted)
        if not self.reuse or failed_episode:
            await self._close(world)
            return
        for key, server in list(world.servers.items()):
            entry = ServerEntry.model_validate_json(key)
            keep = server.running and not server.failed and key not in bad
            if keep and entry.reuse == "never":
                keep = False
                self.stats.fresh_for_state += 1
                if entry.id not in self._told_fresh:
                    self._told_fresh.add(entry.id)
                    log.info("MCP server %s may keep state in its process (reuse: never): a fresh one for every "
                             "episode", entry.id)
            if not keep:
                self.stats.dropped += server.running
                del world.servers[key]
                await server.aclose()
        try:
            await anyio.to_thread.run_sync(_empty, world.root)
        except OSError as exc:
            log.warning("could not empty a pooled scratch root (%s); closing that world", exc)
            await self._close(world)
            return
        self._idle.append(world)

    async def _close(self, world: World) -> None:
        for server in world.servers.values():
            server.stop()
        for server in world.servers.values():
            await server.aclose()
        world.servers.clear()
        if world in self._worlds:
            self._worlds.remove(world)
        await anyio.to_thread.run_sync(_remove, world)

    async def aclose(self) -> None:
        """Stop every server and remove every root; the pool can't be used afterwards."""
        if self._closing is not None:
            self._closing.set()
        if self._task is not None:
            await self._task

    def snapshot_stats(self) -> dict[str, Any]:
        return {"isolation": self.isolation, **self.stats.as_dict()}


def _log_name(entry: ServerEntry) -> str:
    return entry.id.replace("/", "_").replace("@", "") + ".stderr"


def _empty(root: Path) -> None:
    """Remove everything under ``root`` but ``root`` itself (the servers' mount namespaces hold that directory)."""
    for child in os.scandir(root):
        if child.is_dir(follow_symlinks=False):
            shutil.rmtree(child.path)
        else:
            os.unlink(child.path)


def _remove(world: World) -> None:
    if world.uid is not None:
        kill_uid(world.uid)  # helpers a server started outside its process group go too
    shutil.rmtree(world.base, ignore_errors=True)
