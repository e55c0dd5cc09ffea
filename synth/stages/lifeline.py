"""A worker's lifeline to the driver that started it: no model call starts once the driver is gone.

Ray kills a dead driver's workers only after its raylet and the GCS have noticed (2-4 s measured after
``kill -9`` of the pipeline's process group), and the workers live in their own process groups, so in that window
they kept calling the model, and a re-run paid again for what they sent. So every worker checks the driver before
each request and a watcher thread ends the worker the moment the driver is gone.

The same watch covers a lost node: a Ray worker whose raylet died (its parent; it is re-parented then) stops,
since the driver has already sent its unfinished items to another node.

Two ways to see the driver: in the same PID namespace of the same boot (local Ray, or the driver's own node)
by its pid and start time (a reused pid has another start time; a killed, unreaped driver is a zombie); on other
nodes by a heartbeat file the driver touches on the shared storage every ``HEARTBEAT_S`` seconds. The heartbeat
is judged by the worker's own clock (no change seen for ``STALE_S`` seconds), so clock skew between nodes does
not matter. Both intervals and the clock are parameters (``heartbeat(every_s=)``, ``Lifeline(stale_s=, clock=)``)
so that tests drive time instead of waiting it out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel

log = logging.getLogger(__name__)
HEARTBEAT_S = 0.5
STALE_S = 5.0
POLL_S = 0.05


class DriverGone(BaseException):  # not an Exception: no row may be written for it
    """The driver died; the worker stops without writing a row for the item it was on."""


class DriverRef(BaseModel):
    pid: int
    start_ticks: int
    boot_id: str
    pid_ns: int
    heartbeat: str | None = None


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _pid_ns() -> int:
    with contextlib.suppress(OSError):
        return os.stat("/proc/self/ns/pid").st_ino
    return 0


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None when there is none."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[19])


def this_process(heartbeat: Path | None = None) -> DriverRef:
    stat = _stat(os.getpid())
    return DriverRef(pid=os.getpid(), start_ticks=stat[1] if stat else 0, boot_id=_boot_id(), pid_ns=_pid_ns(),
                     heartbeat=str(heartbeat) if heartbeat else None)


class Lifeline:
    """Held by a worker: ``check()`` before each request; a daemon thread ends the process when the driver dies."""

    def __init__(
        self,
        driver: DriverRef,
        watch_parent: bool = False,
        *,
        stale_s: float = STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self.stale_s = stale_s  # a heartbeat unchanged this long (by ``clock``) means the driver is gone
        self.clock = clock
        # A Ray worker is the child of its node's raylet; when the raylet dies (the node is lost) the worker is
        # re-parented, and the driver has already sent its items elsewhere: it must stop too.
        self.parent = os.getppid() if watch_parent else None
        self.local = driver.boot_id == _boot_id() and driver.pid_ns == _pid_ns() and bool(driver.boot_id)
        self._seen: tuple[float, float] | None = None  # (heartbeat mtime, our clock's time when it changed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def alive(self) -> bool:
        if self.parent is not None and os.getppid() != self.parent:
            return False
        if self.local:
            stat = _stat(self.driver.pid)
            return stat is not None and stat[0] not in ("Z", "X", "x") and stat[1] == self.driver.start_ticks
        if not self.driver.heartbeat:
            return True  # nothing to watch: Ray's own owner-death handling is all there is
        try:
            mtime = os.stat(self.driver.heartbeat).st_mtime
        except OSError:
            return False
        now = self.clock()
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, now)
        return now - self._seen[1] < self.stale_s

    def check(self) -> None:
        if not self.alive():
            raise DriverGone(f"the driver (pid {self.driver.pid}) or this worker's node is gone; no further model "
                             "call is made")

    def start(self) -> Lifeline:
        if self.driver.pid == os.getpid() and self.local:
            return self  # in-process: the driver is this process
        self._thread = threading.Thread(target=self._watch, name="synth-lifeline", daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S if self.local else HEARTBEAT_S):
            if not self.alive():
                log.warning("driver pid %d or this node's raylet is gone: this worker exits now", self.driver.pid)
                os._exit(3)  # no cleanup: in-flight requests are dropped, not journaled

    def stop(self) -> None:
        self._stop.set()


@contextlib.contextmanager
def heartbeat(path: Path, every_s: float = HEARTBEAT_S) -> Iterator[Path]:
    """The driver's side: touch ``path`` every ``every_s`` seconds while the block runs, remove it after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(OSError):
                os.utime(path)

    thread = threading.Thread(target=beat, name="synth-heartbeat", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=2)
        with contextlib.suppress(OSError):
            path.unlink()
