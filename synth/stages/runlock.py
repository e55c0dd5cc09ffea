"""One process per run: a lock file in the run's folder, so two commands on the same run name do not both do (and
pay for) every row.

The lock is created with ``O_EXCL`` (atomic on local disks and on NFS v3+, so it holds when ``runs_dir`` is shared
by cluster nodes) and holds who took it: host, pid, the process's start time, when. Its holder touches it every
``HEARTBEAT_S`` seconds. A lock is stale, and taken over, when its holder is gone: on the same host, when that pid
no longer runs (or runs another process: its start time differs); from another host, whose processes cannot be
seen, when its heartbeat is older than ``STALE_S``. Taking over is itself guarded by an ``O_EXCL`` file, so of two
processes that find the same stale lock only one removes it, and both then race for a fresh ``O_EXCL`` create.

The lock is reentrant within a process: the pipeline runs stage after stage, and a stage refreshes the derived
stages it reads, each through ``run_stage``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from synth.errors import SynthError

log = logging.getLogger(__name__)
LOCK = ".lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0
"""A lock from another host whose heartbeat is older than this is a dead holder's (six missed beats)."""


class RunInUse(SynthError, RuntimeError):
    """Another process holds this run."""

    hint = ("wait for it to finish or stop it, or use another run name (--run NAME); a lock left by a process that "
            "died is taken over by itself")


class LockUnwritable(SynthError, OSError):
    """The run's lock file cannot be written (no permission, a read-only or full disk)."""

    hint = "point runs_dir at a writable folder (--set runs_dir=DIR)"


class LockHolder(BaseModel):
    host: str
    pid: int
    proc_start: str | None = None  # /proc/<pid>/stat start time: tells a reused pid from the holder
    started: str  # ISO time, UTC
    token: str

    def line(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.started}"


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # field 22 of stat: start time in clock ticks since boot


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_holder() -> LockHolder:
    return LockHolder(host=socket.gethostname(), pid=os.getpid(), proc_start=_proc_start(os.getpid()),
                      started=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), token=uuid.uuid4().hex)


def _read(path: Path) -> LockHolder | None:
    """The holder written in ``path``; None when it is gone or not (yet) whole."""
    try:
        return LockHolder.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None


def _age_s(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return None


def is_stale(holder: LockHolder | None, path: Path) -> bool:
    """Whether the lock at ``path`` (holding ``holder``) belongs to a process that is gone."""
    age = _age_s(path)
    if age is None:
        return False  # gone already: nothing to take over, the next create decides
    if holder is None:  # being written right now, or left half-written by a kill
        return age > STALE_S
    if holder.host == socket.gethostname():
        if not _pid_alive(holder.pid):
            return True
        start = _proc_start(holder.pid)
        return holder.proc_start is not None and start is not None and start != holder.proc_start
    return age > STALE_S


def _create(path: Path, holder: LockHolder) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, holder.model_dump_json().encode())
        os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()  # an empty lock would refuse every other process until it is stale
        raise
    finally:
        os.close(fd)
    return True


def _take_over(path: Path, seen: LockHolder | None) -> None:
    """Remove the stale lock ``seen`` unless another process is taking it over or it changed meanwhile."""
    breaker = path.with_name(path.name + ".break")
    if not _create(breaker, this_holder()):
        if (_age_s(breaker) or 0) > STALE_S:  # a taker that died in the middle
            with contextlib.suppress(FileNotFoundError):
                breaker.unlink()
        return
    try:
        now = _read(path)
        same = (now is None and seen is None) or (now is not None and seen is not None and now.token == seen.token)
        if same and is_stale(now, path):
            log.warning("taking over the lock of a process that is gone (%s): %s",
                        seen.line() if seen else "unreadable", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    finally:
        with contextlib.suppress(FileNotFoundError):
            breaker.unlink()


def acquire(run_dir: Path, holder: LockHolder) -> Path:
    """Take the run's lock for ``holder``, taking over a stale one; ``RunInUse`` naming a live holder."""
    path = run_dir / LOCK
    for _ in range(5):
        try:
            created = _create(path, holder)
        except OSError as exc:
            raise LockUnwritable(f"cannot write the run's lock {path}: {exc.strerror or exc}") from exc
        if created:
            return path
        seen = _read(path)
        if not is_stale(seen, path):
            who = seen.line() if seen else "a process that is taking it now"
            raise RunInUse(f"run {run_dir.name!r} is in use by {who} (lock {path})")
        _take_over(path, seen)
    raise RunInUse(f"run {run_dir.name!r}: could not take the lock {path} from a stale holder (others race for it)")


def check_free(run_dir: Path) -> None:
    """Refuse at once when a live process holds the run (before anything is sent, e.g. the rate probe)."""
    path = run_dir / LOCK
    if path.exists() and not _held.get(path.resolve()):
        seen = _read(path)
        if not is_stale(seen, path):
            who = seen.line() if seen else "a process that is taking it now"
            raise RunInUse(f"run {run_dir.name!r} is in use by {who} (lock {path})")


def release(path: Path, holder: LockHolder) -> None:
    """Remove the lock if it is still ours (never a lock another process took over meanwhile)."""
    now = _read(path)
    if now is not None and now.token == holder.token:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


_held: dict[Path, int] = {}
_guard = threading.Lock()


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock for the block (reentrant in one process), beating its heartbeat meanwhile."""
    key = (run_dir / LOCK).resolve()
    with _guard:
        if _held.get(key):
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _guard:
                _held[key] -= 1
        return
    holder = this_holder()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LockUnwritable(f"cannot use the run folder {run_dir}: {exc.strerror or exc}") from exc
    path = acquire(run_dir, holder)
    with _guard:
        _held[key] = 1
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    thread = threading.Thread(target=beat, name="synth-run-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)
        with _guard:
            _held.pop(key, None)
        release(path, holder)

