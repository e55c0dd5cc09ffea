"""The one MCP client: start a server over stdio (confined), initialize it, list its tools, call them with a
timeout, close it. The harvest (``tools/list``), real execution in rollouts and the shard's server pool all go
through here; no other module imports the SDK's client session or its stdio transport (a test checks).

- ``launch(entry, exe, root, uid=...)``: the server's command line and environment. Given a uid, the server is
  confined (``synth.runtime.sandbox.confine_command``): no network, a read-only host except ``root`` (shown at
  ``workspace``), root-only dirs hidden, no capabilities, rlimits, that unprivileged uid.
- ``connect(launch, errlog=...)``: an ``McpSession`` over stdio, as an async context manager. Leaving it kills
  the server's process group (the SDK's transport shields its shutdown from cancellation and escalates to
  SIGKILL).
- ``McpSession``: ``initialize``, ``list_tools`` (typed) / ``list_tools_raw`` (every field the server sent),
  ``call_tool``, each bounded by a timeout. Failures raise ``McpError`` (``McpTimeout`` for a timeout).
- ``McpServer``: a started server whose session lives in its own task of a task group, for callers that keep a
  server across calls (the SDK's transport must be entered and left in one task).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.abc
import mcp_types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from pydantic import BaseModel, ConfigDict

from synth.runtime.sandbox import confine_command, runtime_paths
from synth.tools.servers import ServerEntry, install_root, server_env

__all__ = ["Launch", "McpClosed", "McpError", "McpPagingError", "McpServer", "McpSession", "McpTimeout", "ToolReply",
           "connect", "launch", "result_text"]


class McpError(Exception):
    """The server failed at the protocol level: it crashed, refused a request, or answered what MCP does not allow.

    ``str(exc)`` is the server's own message where it sent one."""


class McpTimeout(McpError, TimeoutError):
    """The server did not answer within the timeout."""


class McpClosed(McpError):
    """The connection is gone: the server exited (or was killed)."""


class McpPagingError(McpError):
    """``tools/list`` kept sending new cursors past the page limit."""


@dataclass(frozen=True)
class Launch:
    """How to start one server: argv (already wrapped for confinement when confined), env and working dir."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str

    def params(self) -> StdioServerParameters:
        return StdioServerParameters(command=self.argv[0], args=list(self.argv[1:]), env=self.env, cwd=self.cwd)


def launch(
    entry: ServerEntry,
    exe: Path,
    root: Path,
    *,
    uid: int | None,
    workspace: str,
    env: Mapping[str, str] | None = None,
) -> Launch:
    """The command that starts ``entry`` (installed at ``exe``) on the scratch dir ``root``.

    ``'{root}'`` in the entry's args and in ``env`` (default: ``server_env(entry)``) becomes the path the server
    sees: ``workspace`` when confined (``uid`` given), else ``root`` itself. Confined, the server runs as ``uid``
    (hand ``root`` to it first, ``give_to``), with HOME at the workspace (the host's is hidden from it).
    """
    seen = workspace if uid is not None else str(root)
    args = [a.replace("{root}", seen) for a in entry.args]
    values = {k: v.replace("{root}", seen) for k, v in (env if env is not None else server_env(entry)).items()}
    argv = [str(exe), *args]
    if uid is not None:
        values["HOME"] = seen
        expose = [str(install_root(entry)), *runtime_paths(exe)]
        # The wrapper execs the server in place (no fork), so the transport's kill still reaches it.
        argv = confine_command(argv, root, uid=uid, visible_at=workspace, expose=expose)
    return Launch(argv=tuple(argv), env=values, cwd=str(root))


@dataclass(frozen=True)
class ToolReply:
    """What a server answered to ``tools/call``: its content as one string, and whether it flagged an error."""

    text: str
    is_error: bool


def result_text(result: Any) -> str:
    """Join a tool result's content into the one string a tool message carries."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        else:
            parts.append(f"[{block.type} content: {getattr(block, 'mime_type', 'unknown type')}]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


class _RawToolsPage(BaseModel):
    # Keeps every field a server sends (the SDK's Tool model drops unknown ones), so a harvest is verbatim.
    model_config = ConfigDict(extra="allow")
    tools: list[dict[str, Any]]
    nextCursor: str | None = None


def _message(exc: BaseException) -> str:
    """The server's message for a failed request (an MCP error's text), else the exception's."""
    return getattr(getattr(exc, "error", None), "message", None) or str(exc) or type(exc).__name__


class McpSession:
    """One initialized-or-not session with a server; made by ``connect``."""

    def __init__(self, session: ClientSession) -> None:
        self._session = session

    async def initialize(self, timeout_s: float | None) -> dict[str, Any]:
        """The MCP handshake; returns the server's ``serverInfo``. Raises McpTimeout (None: no own bound)."""
        try:
            with anyio.fail_after(timeout_s):
                init = await self._session.initialize()
        except TimeoutError as exc:
            raise McpTimeout(f"no answer to initialize within {timeout_s}s") from exc
        return init.server_info.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def list_tools(self, timeout_s: float | None) -> list[mcp_types.Tool]:
        """Every page of ``tools/list``, as the SDK's models."""
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            with anyio.fail_after(timeout_s):
                while True:
                    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    listed = await self._session.list_tools(params=params)
                    tools.extend(listed.tools)
                    cursor = listed.next_cursor
                    if not cursor:
                        return tools
        except TimeoutError as exc:
            raise McpTimeout(f"no answer to tools/list within {timeout_s}s") from exc

    async def list_tools_raw(self, timeout_s: float, *, max_pages: int) -> list[dict[str, Any]]:
        """Every page of ``tools/list`` exactly as sent (unknown fields kept); a repeated cursor ends it."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        try:
            with anyio.fail_after(timeout_s):
                for _ in range(max_pages):
                    params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await self._session.send_request(mcp_types.ListToolsRequest(params=params), _RawToolsPage)
                    tools.extend(page.tools)
                    cursor = page.nextCursor
                    if not cursor or cursor in seen:
                        return tools
                    seen.add(cursor)
        except TimeoutError as exc:
            raise McpTimeout(f"no answer to tools/list within {timeout_s:g}s") from exc
        raise McpPagingError(f"tools/list still paging after {max_pages} pages")

    async def call_tool(self, name: str, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        """``tools/call``. A result the server flags as an error comes back with ``is_error``; a request the server
        refuses (bad arguments, a crash) raises McpError with its message; no answer in time raises McpTimeout."""
        try:
            with anyio.fail_after(timeout_s):
                result = await self._session.call_tool(name, dict(arguments))
        except TimeoutError as exc:
            raise McpTimeout(f"tool {name!r} timed out after {timeout_s:g}s") from exc
        except Exception as exc:
            closed = getattr(getattr(exc, "error", None), "code", None) == mcp_types.CONNECTION_CLOSED
            raise (McpClosed if closed else McpError)(_message(exc)) from exc
        return ToolReply(text=result_text(result), is_error=bool(getattr(result, "is_error", False)))


@asynccontextmanager
async def connect(
    how: Launch, *, errlog: TextIO, read_timeout_s: float | None = None
) -> AsyncIterator[McpSession]:
    """Start the server and open a session (not yet initialized); leaving kills the server's process group."""
    async with (
        stdio_client(how.params(), errlog=errlog) as (read, write),
        ClientSession(read, write, read_timeout_seconds=read_timeout_s) as session,
    ):
        yield McpSession(session)


@dataclass
class McpServer:
    """A server kept running across calls: ``start`` it in a task group, ``call_tool``, ``stop``/``aclose``.

    A server that fails to start or dies is not an exception of the task group: ``failed`` says why, and calls
    raise McpError with it.
    """

    name: str
    how: Launch
    log_path: Path
    tools: list[mcp_types.Tool] = field(default_factory=list)
    server_info: dict[str, Any] = field(default_factory=dict)
    failed: str | None = None
    _session: McpSession | None = None
    _stop: anyio.Event = field(default_factory=anyio.Event)
    _done: anyio.Event = field(default_factory=anyio.Event)

    @property
    def running(self) -> bool:
        return self._session is not None and self.failed is None

    async def start(self, tg: anyio.abc.TaskGroup, timeout_s: float) -> None:
        """Start, initialize, list tools; raises McpError (with the server's stderr tail) if it can't."""
        try:
            with anyio.fail_after(timeout_s):
                await tg.start(self._serve)
        except Exception as exc:
            tail = self.stderr_tail()
            self.failed = f"{type(exc).__name__}: {exc}" + (f"; server stderr: {tail}" if tail else "")
            self._done.set()
            raise McpError(self.failed) from exc

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False
        try:
            with open(self.log_path, "w") as errlog:
                async with connect(self.how, errlog=errlog) as session:
                    # start()'s timeout bounds both.
                    self.server_info = await session.initialize(timeout_s=None)
                    self.tools = await session.list_tools(timeout_s=None)
                    self._session = session
                    started = True
                    task_status.started()
                    await self._stop.wait()
        except Exception as exc:
            if not started:
                raise  # tg.start() hands it to start(), which records why the server is unavailable
            # A server that dies while in use must not tear down the task group (and the other servers).
            self.failed = f"{type(exc).__name__}: {exc}"
        finally:
            self._session = None
            self._done.set()

    async def call_tool(self, name: str, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        session = self._session
        if session is None or self.failed:
            raise McpError(self.failed or "the server has stopped")
        try:
            return await session.call_tool(name, arguments, timeout_s)
        except McpClosed as exc:
            # The process is gone: no later call (or episode) may be sent to it.
            self.failed = f"the server exited ({exc})"
            self._stop.set()
            raise

    def stop(self) -> None:
        self._stop.set()

    async def aclose(self) -> None:
        """Stop the server and wait until its process group is gone."""
        self._stop.set()
        await self._done.wait()

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""
