"""Harvest real MCP servers: install each in isolation, start it over stdio, store what ``tools/list`` says.

One JSONL per server under ``tools_registry/mcp/`` (one line per tool, the tool exactly as the server sent it,
with provenance), plus ``harvest_report.json`` that says for every server whether it worked and, if not, at
which stage (install, start, list) and why. A failing server never stops the harvest; a re-run skips servers
whose JSONL exists, so a killed harvest resumes where it stopped.

Servers are third-party code: each is installed with install scripts disabled (``synth.tools.servers``) and
started under the rollouts' confinement (``synth.runtime.sandbox.confine_command``: no network, read-only host,
an unprivileged uid of its own, rlimits) to answer ``tools/list``. Where that confinement is unavailable the
harvest refuses to start, unless ``allow_unconfined`` (``synth tools harvest --unconfined``) says otherwise;
the report records which it was, per server and for the run.
"""

from __future__ import annotations

import fcntl
import fnmatch
import json
import logging
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from synth.errors import SynthError
from synth.paths import TOOLS_REGISTRY
from synth.runtime.sandbox import (
    CONFINEMENT,
    give_to,
    isolation,
    kill_uid,
    server_uid,
)
from synth.tools.mcp_client import McpPagingError, connect, launch
from synth.tools.servers import (
    SERVERS_FILE,
    InstallError,
    ServerEntry,
    artifact_provenance,
    ensure_installed,
    load_servers,
    server_env,
)

log = logging.getLogger(__name__)

REPORT_NAME = "harvest_report.json"
Stage = Literal["install", "start", "list"]
# A server that pages forever (or repeats a cursor) must not hold a harvest slot forever.
MAX_PAGES = 100


class ServerResult(BaseModel):
    """What happened to one server in a harvest."""

    server: str
    registry: Literal["pypi", "npm"]
    package: str
    version: str
    category: str
    status: Literal["ok", "failed"]
    stage: Stage | None = Field(default=None, description="Where a failed server failed.")
    reason: str | None = None
    tools: int = 0
    seconds: float = 0.0
    harvested_at: str | None = None
    server_info: dict[str, Any] | None = Field(default=None, description="serverInfo from initialize.")
    confined: bool | None = Field(
        default=None, description="Started confined (no network, its own uid); None: never started."
    )
    sha256: str | None = Field(default=None, description="sha256 of the installed package's artifact.")
    license: str | None = Field(default=None, description="The package's licence, from its metadata.")


class HarvestReport(BaseModel):
    started_at: str
    finished_at: str | None = None
    timeout_s: float
    confinement: str | None = Field(
        default=None, description="How this run started servers: 'confined: ...' or 'UNCONFINED (allowed): ...'."
    )
    servers: list[ServerResult] = Field(default_factory=list)

    @property
    def ok(self) -> list[ServerResult]:
        return [r for r in self.servers if r.status == "ok"]

    @property
    def failed(self) -> list[ServerResult]:
        return [r for r in self.servers if r.status == "failed"]

    @property
    def tool_count(self) -> int:
        return sum(r.tools for r in self.ok)

    def summary(self) -> dict[str, Any]:
        by_stage: dict[str, int] = {}
        for r in self.failed:
            by_stage[r.stage or "?"] = by_stage.get(r.stage or "?", 0) + 1
        return {
            "servers": len(self.servers),
            "ok": len(self.ok),
            "failed": len(self.failed),
            "failed_by_stage": by_stage,
            "tools": self.tool_count,
            "confinement": self.confinement,
            "unconfined_servers": sum(r.confined is False for r in self.servers),
        }

    def headline(self) -> str:
        s = self.summary()
        stages = ", ".join(f"{k} {v}" for k, v in sorted(s["failed_by_stage"].items()))
        return (
            f"{s['servers']} servers: {s['ok']} ok, {s['failed']} failed"
            f"{f' ({stages})' if stages else ''}; {s['tools']} tools"
        )

    def write(self, path: Path) -> None:
        data = {"summary": self.summary(), **self.model_dump(mode="json")}
        _atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def read(cls, path: Path) -> HarvestReport | None:
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data.pop("summary", None)
        return cls.model_validate(data)


class HarvestedTool(BaseModel):
    """One JSONL line: a raw tool plus where it came from."""

    server: str
    registry: Literal["pypi", "npm"]
    package: str
    version: str
    harvested_at: str
    artifact: str | None = Field(default=None, description="The file that was installed (its name).")
    sha256: str | None = Field(default=None, description="sha256 of that artifact (None: not recorded).")
    license: str | None = Field(default=None, description="Licence from the package metadata (None: unknown).")
    tool: dict[str, Any] = Field(description="The tool exactly as the server returned it in tools/list.")


class HarvestError(Exception):
    """One server's harvest failed at ``stage``; recorded as that server's row of the report, never raised out."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason


class UnknownServer(SynthError, ValueError):
    """``--only`` names no server of the registry."""

    hint = "pass ids from tools_registry/mcp_servers.yaml (exact ids or shell globs, e.g. 'npm/*')"


def jsonl_path(out_dir: Path, server_id: str) -> Path:
    """``npm/@scope/pkg`` -> ``npm__scope__pkg.jsonl``: flat, portable file names."""
    return out_dir / (server_id.replace("@", "").replace("/", "__") + ".jsonl")


def select(servers: Iterable[ServerEntry], only: list[str] | None) -> list[ServerEntry]:
    """Servers whose id matches any of ``only`` (exact ids or shell globs); all when ``only`` is empty."""
    servers = list(servers)
    if not only:
        return servers
    picked = [s for s in servers if any(fnmatch.fnmatchcase(s.id, pat) for pat in only)]
    if not picked:
        raise UnknownServer(f"no server matches {only}; known ids: {[s.id for s in servers]}")
    return picked


def harvest(
    servers: list[ServerEntry],
    out_dir: Path,
    parallel: int = 4,
    timeout_s: float = 60,
    only: list[str] | None = None,
    install_timeout_s: float = 300,
    retry_failed: bool = True,
    allow_unconfined: bool = False,
) -> HarvestReport:
    """Harvest ``servers`` into ``out_dir`` (blocking); see :func:`harvest_async`."""
    return anyio.run(
        lambda: harvest_async(
            servers, out_dir, parallel, timeout_s, only, install_timeout_s, retry_failed, allow_unconfined
        )
    )


def run_harvest(
    parallel: int = 4,
    timeout_s: float = 60,
    only: list[str] | None = None,
    servers_file: Path = SERVERS_FILE,
    out_dir: Path = TOOLS_REGISTRY / "mcp",
    install_timeout_s: float = 300,
    retry_failed: bool = True,
    allow_unconfined: bool = False,
) -> HarvestReport:
    """The CLI's entry: harvest the servers of ``servers_file`` into ``out_dir`` (the committed registry)."""
    return harvest(
        load_servers(servers_file), out_dir, parallel, timeout_s, only, install_timeout_s, retry_failed,
        allow_unconfined,
    )


async def harvest_async(
    servers: list[ServerEntry],
    out_dir: Path,
    parallel: int = 4,
    timeout_s: float = 60,
    only: list[str] | None = None,
    install_timeout_s: float = 300,
    retry_failed: bool = True,
    allow_unconfined: bool = False,
) -> HarvestReport:
    """Harvest every selected server, ``parallel`` at a time, and write JSONL files and the report.

    Servers with a JSONL already in ``out_dir`` are skipped (their earlier report row is kept); servers that
    failed before are tried again unless ``retry_failed`` is False. Raises ConfinementUnavailable before
    anything is installed when servers can't be confined here and ``allow_unconfined`` is False.
    """
    confined = await anyio.to_thread.run_sync(_confined, allow_unconfined)
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / REPORT_NAME
    previous = {r.server: r for r in (HarvestReport.read(report_path) or _empty_report(timeout_s)).servers}
    report = _empty_report(timeout_s)
    report.confinement = f"confined: {CONFINEMENT}" if confined else "UNCONFINED (allowed by --unconfined)"
    # Only rows this run produced are merged into the report, so a concurrent harvest's rows survive.
    fresh: dict[str, ServerResult] = {}
    todo: list[ServerEntry] = []
    for entry in select(servers, only):
        path = jsonl_path(out_dir, entry.id)
        earlier = previous.get(entry.id)
        if path.exists():
            if earlier is None or earlier.status != "ok":
                fresh[entry.id] = _result_from_jsonl(entry, path)
            elif earlier.category != entry.category:  # re-categorized in the yaml since its harvest
                fresh[entry.id] = earlier.model_copy(update={"category": entry.category})
        elif earlier is not None and earlier.status == "failed" and not retry_failed:
            continue
        else:
            todo.append(entry)
    if fresh:  # rows rebuilt from JSONL files go in now, so the report is right even if this run is killed
        await anyio.to_thread.run_sync(_merge_into_report, report_path, report, list(fresh.values()))
    log.info("harvest: %d servers to do", len(todo))

    limit = anyio.Semaphore(max(1, parallel))

    async def one(entry: ServerEntry) -> None:
        async with limit:
            result = await harvest_server(entry, out_dir, timeout_s, install_timeout_s, confined=confined)
        fresh[entry.id] = result
        await anyio.to_thread.run_sync(_merge_into_report, report_path, report, [result])
        log.info("%s: %s %s", entry.id, result.status, result.reason or f"{result.tools} tools")

    async with anyio.create_task_group() as tg:
        for entry in todo:
            tg.start_soon(one, entry)

    report.finished_at = _now()
    return await anyio.to_thread.run_sync(_merge_into_report, report_path, report, list(fresh.values()))


def _merge_into_report(path: Path, report: HarvestReport, results: list[ServerResult]) -> HarvestReport:
    """Fold ``results`` into the report on disk, under a lock, so two harvests at once lose nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        on_disk = HarvestReport.read(path)
        merged = {r.server: r for r in (on_disk.servers if on_disk else [])}
        merged.update({r.server: r for r in results})
        report.servers = sorted(merged.values(), key=lambda r: r.server)
        report.write(path)
    return report.model_copy(deep=True)


async def harvest_server(
    entry: ServerEntry, out_dir: Path, timeout_s: float = 60, install_timeout_s: float = 300, *, confined: bool = True
) -> ServerResult:
    """Install, start and list one server; never raises for a server's fault, returns a failed result.

    ``confined=False`` starts it unconfined: only for a caller that was explicitly allowed to (see ``harvest``).
    """
    started = time.monotonic()
    base = {
        "server": entry.id,
        "registry": entry.registry,
        "package": entry.package,
        "version": entry.version,
        "category": entry.category,
    }
    try:
        try:
            exe = await anyio.to_thread.run_sync(ensure_installed, entry, install_timeout_s)
        except InstallError as exc:
            raise HarvestError("install", exc.describe()) from exc
        prov = await anyio.to_thread.run_sync(artifact_provenance, entry)
        info, tools = await list_server_tools(entry, exe, timeout_s, confined=confined)
        if not tools:
            raise HarvestError("list", "the server listed no tools")
    except HarvestError as exc:
        return ServerResult(
            **base,
            status="failed",
            stage=exc.stage,
            reason=_clip(exc.reason),
            seconds=round(time.monotonic() - started, 1),
            confined=None if exc.stage == "install" else confined,
        )
    harvested_at = _now()
    lines = [
        HarvestedTool(
            server=entry.id,
            registry=entry.registry,
            package=entry.package,
            version=entry.version,
            harvested_at=harvested_at,
            artifact=prov.artifact,
            sha256=prov.sha256,
            license=prov.license,
            tool=tool,
        ).model_dump_json()
        for tool in tools
    ]
    _atomic_write(jsonl_path(out_dir, entry.id), "\n".join(lines) + "\n")
    return ServerResult(
        **base,
        status="ok",
        tools=len(tools),
        harvested_at=harvested_at,
        server_info=info,
        seconds=round(time.monotonic() - started, 1),
        confined=confined,
        sha256=prov.sha256,
        license=prov.license,
    )


HARVEST_WORKSPACE = "/home/user/workspace"
"""Where a confined server sees its scratch root."""


async def list_server_tools(
    entry: ServerEntry, exe: Path, timeout_s: float = 60, *, confined: bool = True
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Start the server in a scratch root (confined, see ``confine_command``), initialize, page ``tools/list``.

    Raises HarvestError with stage ``start`` (spawn, crash or silence before initialize answers) or ``list``.
    The server's process group is killed on every way out, timeouts included (stdio_client shields its
    shutdown from our cancellation and escalates to SIGKILL of the whole group).
    """
    with (
        tempfile.TemporaryDirectory(prefix="synth-mcp-", ignore_cleanup_errors=True) as scratch,
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog,
    ):
        root = Path(scratch) / "root"
        await anyio.to_thread.run_sync(_prepare_root, root)
        token = uuid.uuid4().hex
        uid = server_uid() if confined else None
        if uid is not None:
            give_to(root, uid)
        # '{root}' in the env is filled in by launch() with the path the server sees.
        how = launch(entry, exe, root, uid=uid, workspace=HARVEST_WORKSPACE,
                     env={**_env(entry, exe, "{root}"), _TOKEN_VAR: token})  # fmt: skip
        stage: Stage = "start"
        try:
            with anyio.fail_after(timeout_s * 2 + 5):  # a backstop over both stages' own timeouts
                async with connect(how, errlog=errlog, read_timeout_s=timeout_s) as session:
                    info = await session.initialize(timeout_s)
                    stage = "list"
                    tools = await session.list_tools_raw(timeout_s, max_pages=MAX_PAGES)
                    return info, tools
        except Exception as exc:
            leaf = _leaf(exc)
            if isinstance(leaf, HarvestError):
                raise leaf from exc
            if isinstance(leaf, TimeoutError):
                what = "initialize" if stage == "start" else "tools/list"
                raise HarvestError(
                    stage, f"no answer to {what} within {timeout_s:.0f}s{_stderr_tail(errlog)}"
                ) from exc
            if isinstance(leaf, McpPagingError):
                raise HarvestError("list", str(leaf)) from exc
            raise HarvestError(stage, f"{_describe(leaf)}{_stderr_tail(errlog)}") from exc
        finally:
            await anyio.to_thread.run_sync(reap_strays, token)
            if uid is not None:
                await anyio.to_thread.run_sync(kill_uid, uid)


def _prepare_root(root: Path) -> None:
    # A git repository with one commit: mcp-server-git needs one, and it costs the others nothing.
    root.mkdir(parents=True)
    (root / "README.md").write_text("Scratch root for an MCP server started by the synth harvester.\n")
    git = ["git", "-c", "user.name=synth", "-c", "user.email=synth@localhost", "-C", str(root)]
    try:
        subprocess.run([*git, "init", "-q"], check=True, capture_output=True, timeout=30)
        subprocess.run([*git, "add", "README.md"], check=True, capture_output=True, timeout=30)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("scratch root is not a git repository (%s); git servers will fail to start", exc)


# Every process a server starts inherits this variable; processes that left the server's process group (daemons,
# sidecars, a JVM started with setsid) are found by it and killed, which the SDK's group kill cannot do.
_TOKEN_VAR = "SYNTH_MCP_HARVEST_TOKEN"


def reap_strays(token: str) -> list[int]:
    """Kill every process whose environment carries ``token``; returns their pids (Linux /proc; else none)."""
    needle = f"{_TOKEN_VAR}={token}".encode()
    killed = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            if needle not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read
    if killed:
        log.info("killed %d process(es) that outlived their server: %s", len(killed), killed)
    return killed


def _env(entry: ServerEntry, exe: Path, root: str) -> dict[str, str]:
    env = server_env(entry)
    env = {k: v.replace("{root}", root) for k, v in env.items()}
    # The server's own bin dir first: servers that spawn helpers from their package find them there.
    env["PATH"] = os.pathsep.join([str(exe.parent), env.get("PATH", os.defpath)])
    env.setdefault("HOME", root)
    env.setdefault("NO_COLOR", "1")
    return env


def _confined(allow_unconfined: bool) -> bool:
    return isolation(allow_unconfined) == "confined"


def _result_from_jsonl(entry: ServerEntry, path: Path) -> ServerResult:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return ServerResult(
        server=entry.id,
        registry=entry.registry,
        package=entry.package,
        version=entry.version,
        category=entry.category,
        status="ok",
        tools=len(lines),
        harvested_at=lines[0]["harvested_at"] if lines else None,
        sha256=lines[0].get("sha256") if lines else None,
        license=lines[0].get("license") if lines else None,
    )


def _leaf(exc: BaseException) -> BaseException:
    # Task groups wrap the real cause; the innermost leaf says what went wrong.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or "(no message)"
    return f"{type(exc).__name__}: {text}"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Lines that usually say why a server quit (a missing key, a bad argument), as opposed to stack frames.
_TELLING = re.compile(
    r"error|required|missing|must|please|not set|not found|provide|cannot|invalid|usage", re.IGNORECASE
)


def _stderr_tail(errlog: Any, keep: int = 6) -> str:
    """The server's stderr in brief: the lines that say why it quit first, then the last lines."""
    try:
        errlog.flush()
        errlog.seek(0)
        lines = [_ANSI.sub("", ln).strip() for ln in errlog.read().splitlines()]
    except (OSError, ValueError):
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith("at ")]
    telling = [ln for ln in lines if _TELLING.search(ln)][:3]
    picked = telling + [ln for ln in lines[-keep:] if ln not in telling]
    return f"; server stderr: {' | '.join(ln[:300] for ln in picked[:keep])}" if picked else ""


def _clip(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _empty_report(timeout_s: float) -> HarvestReport:
    return HarvestReport(started_at=_now(), timeout_s=timeout_s)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = [
    "HarvestReport",
    "HarvestedTool",
    "ServerResult",
    "harvest",
    "harvest_async",
    "harvest_server",
    "jsonl_path",
    "list_server_tools",
    "run_harvest",
    "select",
]
