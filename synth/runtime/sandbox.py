"""Run model-written Python for real, with no network, no writes outside a scratch dir, and hard limits.

How (Linux, as root; anything else fails closed):
- ``unshare`` gives the run new network, mount, PID, IPC and UTS namespaces. The new network namespace has
  only a loopback that is down, so nothing is reachable, not even servers listening on the host's 127.0.0.1.
- A launcher (stdlib Python, PID 1 of the new PID namespace, still root) remounts every mount read-only,
  mounts a small private tmpfs as the working dir, hides root-only directories such as ``/root`` behind an
  empty tmpfs (only the interpreter's own install is bound back in), then forks the child, which drops to
  a random unprivileged uid with ``no_new_privs`` and rlimits (CPU, address space, processes, file size,
  open files) and execs ``python -I``.
- The host side kills the whole process group at the wall-clock limit; when PID 1 dies the kernel kills every
  process left in the namespace, so nothing the code forked survives the run.

A random uid per run keeps RLIMIT_NPROC (counted per uid) from being shared between concurrent sandboxes.
Memory is capped per process (RLIMIT_AS), so a run's total is at most ``memory_mb * max_procs``; a cap on the
total needs a cgroup, which the deployment (container, systemd scope) should set.

``confine_command`` applies the same isolation (no network, read-only host, root-only dirs hidden, no
capabilities, rlimits, an unprivileged uid) to the third-party MCP servers, in rollouts
(``synth.sim.real_exec``) and in the harvest (``synth.tools.harvest``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pydantic import BaseModel, Field

from synth.errors import SynthError
from synth.paths import REPO_ROOT
from synth.runtime import check_runner

OUTPUT_LIMIT = 64_000
"""Bytes of stdout and of stderr kept; the rest is counted and dropped (print loops cannot flood the host)."""

_UID_RANGE = (1_000_000, 2_000_000)


class SandboxError(SynthError, RuntimeError):
    """The sandbox could not be set up; the code was NOT run (never falls back to running it unconfined)."""

    hint = "run as root on Linux with util-linux's unshare installed, as the container and CI do"


class SandboxUnavailable(SandboxError):
    """This machine can't provide the isolation; see ``sandbox_available()`` for why."""


class SandboxResult(BaseModel):
    stdout: str = Field(description="Standard output, truncated to OUTPUT_LIMIT bytes with a marker.")
    stderr: str = Field(description="Standard error, truncated the same way.")
    exit_code: int = Field(description="Exit status; minus the signal number when a signal ended it.")
    timed_out: bool = Field(default=False, description="The wall-clock limit was hit and the run was killed.")
    killed: str | None = Field(
        default=None,
        description="Why it was stopped: 'wall_time', 'cpu_time', 'memory', 'file_size' or 'signal:NAME'.",
    )
    duration_s: float = Field(description="Wall-clock seconds, setup included.")

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


# Mount helpers shared by both launchers below; they run before any untrusted code, as root in a new mount
# namespace, with only the stdlib (python -I -S).
_MOUNT_LIB = r"""
import ctypes, os, re, sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 18, 1 << 21, 1 << 24
FLAG_OF = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
           "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
libc = ctypes.CDLL(None, use_errno=True)


def mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        fail(f"mount({src!r}, {target!r}, {fstype!r}, {flags:#x}) failed: {os.strerror(err)}")


def remount_readonly(keep):
    # Every mount but those under `keep` turns read-only and nosuid (/proc too: root could write /proc/sys).
    for line in open("/proc/self/mountinfo").read().splitlines():
        fields = line.split()
        target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if any(target == k or target.startswith(k.rstrip("/") + "/") for k in keep):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        for o in fields[5].split(","):
            flags |= FLAG_OF.get(o, 0)
        mount(None, target, None, flags)


def hidden_ancestor(path):
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        d = "/" + "/".join(parts[:i])
        if not os.stat(d).st_mode & 0o001:
            return d
    return None


def mask_and_expose(mask, expose):
    # Dirs in `mask`, and root-only dirs on the way to an `expose` path (pyenv under /root), get an empty tmpfs;
    # only the `expose` paths under them are bound back, so an unprivileged process reaches its interpreter
    # (or its install) without seeing the rest.
    masks = {m: [] for m in mask if os.path.isdir(m) and not os.path.islink(m)}
    for p in expose:
        h = hidden_ancestor(p) or next((m for m in masks if p.startswith(m.rstrip("/") + "/")), None)
        if h:
            masks.setdefault(h, []).append((p, os.open(p, os.O_PATH | os.O_DIRECTORY)))
    for m, binds in masks.items():
        mount("tmpfs", m, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        for p, fd in binds:
            os.makedirs(p, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            os.close(fd)

"""

# The sandbox launcher runs as root inside the new namespaces. It reads its config file, sets up the mounts,
# forks the unprivileged child and reports how the child ended on a pipe that the host passed in (the root
# filesystem is read-only by then, so no status file can be written).
_LAUNCHER = (
    _MOUNT_LIB
    + r"""
import json, resource

cfg = json.load(open(sys.argv[1]))
status = os.fdopen(cfg["status_fd"], "w")


def fail(msg):
    status.write(json.dumps({"error": msg}))
    status.close()
    os._exit(125)


try:
    work, uid = cfg["workdir"], cfg["uid"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mask_and_expose(cfg["mask"], cfg["expose"])
    mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={cfg['disk_mb']}m,mode=0700,uid={uid},gid={uid}")
    remount_readonly([work])
    for name, text in cfg["files"].items():
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chown(path, uid, uid)
except Exception as exc:
    fail(f"sandbox setup failed: {type(exc).__name__}: {exc}")

child = os.fork()
if child == 0:
    try:
        status.close()
        os.chdir(work)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: setuid binaries can't regain root
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        for name, (soft, hard) in cfg["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.execve(cfg["python"], [cfg["python"], *cfg["argv"]], cfg["env"])
    except BaseException as exc:
        os.write(2, f"sandbox: could not start python: {exc}\n".encode())
    os._exit(125)

while True:
    try:
        pid, st, ru = os.wait4(-1, 0)
    except ChildProcessError:
        fail("sandbox: lost the child process")
    if pid == child:
        break
status.write(json.dumps({
    "exit_code": os.waitstatus_to_exitcode(st),
    "signal": os.WTERMSIG(st) if os.WIFSIGNALED(st) else None,
    "cpu_s": ru.ru_utime + ru.ru_stime,
}))
status.close()
"""
)

# Confines a third-party program (an MCP server): no network, every mount read-only except one writable dir
# (shown at a fixed path), root-only dirs hidden, all capabilities dropped, rlimits, no_new_privs, and an
# unprivileged uid; then execs it in place, so its PID (and the MCP transport's kill of its process group) stays
# the same.
_CONFINE = (
    _MOUNT_LIB
    + r"""
import json, resource


def fail(msg):
    os.write(2, f"synth confine: {msg}\n".encode())
    os._exit(125)


cfg, argv = json.loads(sys.argv[1]), sys.argv[2:]
writable, visible, uid = cfg["writable"], cfg["visible"] or cfg["writable"], cfg["uid"]
source = os.open(writable, os.O_PATH | os.O_DIRECTORY)  # still reachable if a tmpfs below covers it
mount(None, "/", None, MS_REC | MS_PRIVATE)
mask_and_expose(cfg["mask"], cfg["expose"] + ([writable] if visible == writable else []))
if visible != writable:
    # The fixed path's top dir gets an empty tmpfs in this namespace only: nothing on the host changes.
    top = "/" + visible.strip("/").split("/")[0]
    mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    os.makedirs(visible, mode=0o755, exist_ok=True)
mount(f"/proc/self/fd/{source}", visible, None, MS_BIND | MS_REC)  # its own mount, so it stays writable
os.close(source)
remount_readonly([visible])
os.chdir(visible)
last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
for cap in range(last_cap + 1):
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: root keeps no capability across the exec
        fail(f"prctl(PR_CAPBSET_DROP, {cap}) failed: {os.strerror(ctypes.get_errno())}")
for name, (soft, hard) in cfg["rlimits"].items():
    resource.setrlimit(getattr(resource, name), (soft, hard))
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: setuid binaries can't regain root
    fail("prctl(PR_SET_NO_NEW_PRIVS) failed")
try:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
except OSError as exc:
    fail(f"cannot drop to uid {uid}: {exc}")
if os.getuid() == 0 or os.geteuid() == 0:
    fail("still uid 0 after the drop")
try:
    os.execv(argv[0], argv)
except OSError as exc:
    fail(f"cannot exec {argv[0]}: {exc}")
"""
)

SERVER_UID_RANGE = (2_000_000, 3_000_000)
"""Uids for confined servers; apart from the sandbox's, so the two never count against each other's limits."""


def server_uid() -> int:
    """A fresh unprivileged uid for one confined server (or one episode's servers, which share a scratch root)."""
    return random.SystemRandom().randrange(*SERVER_UID_RANGE)


def give_to(path: str | os.PathLike[str], uid: int) -> None:
    """Hand ``path`` (recursively) to ``uid``, so a confined program running as it can write there."""
    top = Path(path)
    os.lchown(top, uid, uid)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            os.lchown(os.path.join(dirpath, name), uid, uid)


def kill_uid(uid: int) -> list[int]:
    """SIGKILL every process running as ``uid`` (what a confined server left behind); returns their pids."""
    killed = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return killed


def _server_rlimits() -> dict[str, tuple[int, int]]:
    gb = 1024**3
    # Node reserves a lot of address space up front, so the memory cap is loose; threads count against NPROC.
    return {
        "RLIMIT_AS": (16 * gb, 16 * gb),
        "RLIMIT_NPROC": (512, 512),
        "RLIMIT_FSIZE": (1 * gb, 1 * gb),
        "RLIMIT_NOFILE": (1024, 1024),
        "RLIMIT_CORE": (0, 0),
    }


# Where users keep checkouts and data: hidden from sandboxed code as a whole, since any copy of this repository
# (another clone, an old run) holds the coding tests' answers, not only the one running now.
USER_TREES = ("/home", "/work", "/srv", "/opt", "/mnt", "/media", "/workspace", "/data")


def _code_masks() -> list[str]:
    """Dirs hidden from sandboxed code: host daemons' sockets (/run), the users' trees, this repository wherever it
    is; only the outermost of nested dirs (the interpreter's own install is bound back in by the launcher)."""
    candidates = ["/run", *USER_TREES, str(REPO_ROOT)]
    # A dir with other mounts below it stays (the launcher re-mounts every mount read-only, and a tmpfs over their
    # parent would make them unreachable); it is a system mount, not a user's checkout.
    try:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        mounts = []
    dirs = [d for d in dict.fromkeys(candidates) if os.path.isdir(d) and not os.path.islink(d)
            and (d == "/run" or not any(m.startswith(d.rstrip("/") + "/") for m in mounts))]
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


def _interpreter_paths(python: str) -> list[str]:
    """Directories the unprivileged child must reach to start ``python`` (its install and its venv)."""
    real = os.path.realpath(python)
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(real), os.path.dirname(os.path.dirname(real))}
    return sorted(p for p in paths if os.path.isdir(p))


def _rlimits(cpu_s: int, memory_mb: int, max_procs: int, disk_mb: int) -> dict[str, tuple[int, int]]:
    mb = 1024 * 1024
    return {
        # The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL for code that catches SIGXCPU.
        "RLIMIT_CPU": (cpu_s, cpu_s + 1),
        "RLIMIT_AS": (memory_mb * mb, memory_mb * mb),
        "RLIMIT_NPROC": (max_procs, max_procs),
        "RLIMIT_FSIZE": (disk_mb * mb, disk_mb * mb),
        "RLIMIT_NOFILE": (256, 256),
        "RLIMIT_CORE": (0, 0),
    }


def _drain(stream: IO[bytes], keep: bytearray, limit: int, dropped: list[int]) -> None:
    """Read a pipe to EOF, keeping the first ``limit`` bytes; keep reading so the writer never blocks."""
    while chunk := stream.read1(65536):  # type: ignore[attr-defined]
        room = limit - len(keep)
        if room > 0:
            keep += chunk[:room]
        dropped[0] += max(0, len(chunk) - max(room, 0))
    stream.close()


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
    except (BrokenPipeError, OSError):
        pass  # the code exited without reading all its input; that's its business
    finally:
        with contextlib.suppress(OSError):
            stream.close()


def _text(data: bytearray, dropped: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + (f"\n[... {dropped} more bytes truncated]" if dropped else "")


def _why_killed(
    exit_sig: int | None, cpu_s: float, cpu_limit: int, stderr: str, exit_code: int
) -> str | None:
    if exit_sig == signal.SIGXCPU or (exit_sig == signal.SIGKILL and cpu_s >= cpu_limit):
        return "cpu_time"
    if exit_sig == signal.SIGXFSZ:
        return "file_size"
    if exit_code != 0 and "MemoryError" in stderr[-2000:]:
        return "memory"
    if exit_sig is not None:
        return f"signal:{signal.Signals(exit_sig).name}"
    return None


def _run(
    files: Mapping[str, str],
    argv: list[str],
    *,
    timeout_s: float,
    cpu_s: int,
    memory_mb: int,
    stdin: str,
    max_procs: int,
    disk_mb: int,
    output_limit: int,
) -> SandboxResult:
    if not shutil.which("unshare"):
        raise SandboxUnavailable("the 'unshare' program (util-linux) is not installed; install util-linux")
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "the sandbox needs root (uid 0) to create namespaces and drop to an unprivileged uid; "
            "run the rollout as root, e.g. in its container"
        )
    for name in files:
        # The launcher writes these as root before dropping privileges: a name must not climb out of the dir.
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
            raise ValueError(f"sandbox file name {name!r} must be a relative path inside the working dir")
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="synth-sbx-"))
    status_r, status_w = os.pipe()
    try:
        base.chmod(0o711)  # the child (another uid) must traverse it to reach its tmpfs working dir
        work = base / "work"
        work.mkdir()
        uid = random.SystemRandom().randrange(*_UID_RANGE)
        config = {
            "workdir": str(work),
            "uid": uid,
            "python": sys.executable,
            "argv": argv,
            "files": dict(files),
            "expose": _interpreter_paths(sys.executable),
            # /run: unix sockets of host daemons; the repository: rubrics and runs hold the coding tests' answers.
            "mask": _code_masks(),
            "rlimits": _rlimits(cpu_s, memory_mb, max_procs, disk_mb),
            "disk_mb": disk_mb,
            "status_fd": status_w,
            "env": {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(work),
                "TMPDIR": str(work),
                "USER": "sandbox",
                "LOGNAME": "sandbox",
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                # Thread pools sized to the host would hit RLIMIT_NPROC (threads count as processes).
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            },
        }
        # Root-only: it holds the code, and the launcher (root) trusts it; the child must not read it.
        config_path = base / "config.json"
        with os.fdopen(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
            json.dump(config, fh)
        cmd = [
            "unshare", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
            "--mount-proc", "--", sys.executable, "-I", "-S", "-c", _LAUNCHER, str(config_path),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w,),
            start_new_session=True,  # one process group to kill: unshare, the launcher and the child
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        os.close(status_w)
        status_w = -1
        out, err = bytearray(), bytearray()
        out_dropped, err_dropped = [0], [0]
        threads = [
            threading.Thread(target=_drain, args=(proc.stdout, out, output_limit, out_dropped), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, err, output_limit, err_dropped), daemon=True),
        ]
        if stdin:
            threads.append(threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True))
        for t in threads:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            proc.wait()
        for t in threads:
            t.join(timeout=5)
        # The namespace dies asynchronously after its PID 1; wait so no process of this run outlives the call.
        _wait_uid_gone(uid, timeout_s=5)
        with os.fdopen(status_r, "r") as fh:
            status_r = -1
            raw_status = fh.read()
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(base, ignore_errors=True)

    status = json.loads(raw_status) if raw_status else {}
    stderr_text = _text(err, err_dropped[0])
    if "error" in status or (not timed_out and not status):
        why = status.get("error") or f"launcher exited {proc.returncode}: {stderr_text[-500:]}"
        raise SandboxError(f"{why} (the code was not run)")
    if timed_out:
        exit_code, killed = -signal.SIGKILL, "wall_time"
    else:
        exit_code = int(status["exit_code"])
        killed = _why_killed(status["signal"], float(status["cpu_s"]), cpu_s, stderr_text, exit_code)
    return SandboxResult(
        stdout=_text(out, out_dropped[0]),
        stderr=stderr_text,
        exit_code=exit_code,
        timed_out=timed_out,
        killed=killed,
        duration_s=round(time.monotonic() - started, 3),
    )


def _uid_alive(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return True
            except FileNotFoundError:
                continue
    return False


def _wait_uid_gone(uid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _uid_alive(uid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@functools.lru_cache(maxsize=1)
def sandbox_available() -> tuple[bool, str]:
    """Whether this machine can sandbox, and why not; probed once by running a tiny program in a sandbox."""
    if not sys.platform.startswith("linux"):
        return False, f"the sandbox needs Linux namespaces; this is {sys.platform}"
    # In a fresh network namespace loopback is down, so even 127.0.0.1 is unreachable (ENETUNREACH); on the
    # host the same connect would be refused instead.
    probe = (
        "import errno, os, socket\n"
        "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\n    print('net-open')\n"
        "except OSError as e:\n"
        "    print('net-closed' if e.errno == errno.ENETUNREACH else 'net-open', os.getuid())\n"
    )
    try:
        result = _run(
            {"main.py": probe},
            ["-I", "main.py"],
            timeout_s=30,
            cpu_s=10,
            memory_mb=512,
            stdin="",
            max_procs=16,
            disk_mb=8,
            output_limit=4096,
        )
    except SandboxError as exc:
        return False, str(exc)
    words = result.stdout.split()
    if result.exit_code != 0 or words[:1] != ["net-closed"] or words[1:2] == ["0"]:
        detail = f"{result.stdout!r} {result.stderr[-300:]!r}"
        return False, f"sandbox probe misbehaved (exit {result.exit_code}): {detail}"
    return True, "unshare namespaces (net, mount, pid, ipc, uts), read-only mounts, unprivileged uid, rlimits"


def _require() -> None:
    ok, why = sandbox_available()
    if not ok:
        raise SandboxUnavailable(f"cannot run code in a sandbox here: {why}")


def run_python(
    code: str,
    *,
    timeout_s: float = 10,
    cpu_s: int = 5,
    memory_mb: int = 512,
    stdin: str = "",
    max_procs: int = 16,
    disk_mb: int = 64,
    output_limit: int = OUTPUT_LIMIT,
    files: Mapping[str, str] | None = None,
) -> SandboxResult:
    """Run ``code`` as ``main.py`` with ``python -I`` in a fresh sandbox and return what it printed.

    ``files`` (relative path -> text) are written into the working dir first, e.g. data the code reads.
    Raises SandboxUnavailable / SandboxError when the sandbox can't be set up; the code is then never run.
    """
    _require()
    all_files = {**(files or {}), "main.py": code}
    return _run(
        all_files,
        ["-I", "-u", "main.py"],
        timeout_s=timeout_s,
        cpu_s=cpu_s,
        memory_mb=memory_mb,
        stdin=stdin,
        max_procs=max_procs,
        disk_mb=disk_mb,
        output_limit=output_limit,
    )


class TestOutcome(BaseModel):
    name: str = Field(description="'assert at line N' for a top-level assert, else the test function's name.")
    line: int
    passed: bool
    detail: str = Field(description="'passed', or why not (the assert and the values it got, the error).")


class CheckRun(SandboxResult):
    """A coding check: ``ok`` only when the runner's verdict came back and every test of the problem passed."""

    expected_tests: int = Field(description="Tests the host counted in the tests source.")
    tests: list[TestOutcome] = Field(default_factory=list, description="The runner's result per test.")
    verdict_error: str | None = Field(default=None, description="Why no usable verdict came back, if none did.")

    @property
    def passed_tests(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def ok(self) -> bool:
        return (
            not self.timed_out
            and self.verdict_error is None
            and self.expected_tests > 0
            and len(self.tests) == self.expected_tests
            and all(t.passed for t in self.tests)
        )


def check_python(
    code: str,
    tests: str,
    *,
    timeout_s: float = 10,
    cpu_s: int = 5,
    memory_mb: int = 512,
    max_procs: int = 16,
) -> CheckRun:
    """Run the ``tests`` (top-level asserts and ``test_*`` functions) against ``code``; see ``check_runner``.

    Each test runs in its own process that imports ``code`` as the module ``solution``; the runner compares the
    values itself and reports a result per test. ``result.ok`` only when every test the host counted in
    ``tests`` ran and passed; failures are listed on stderr (``FAILED <test>: AssertionError: ...``).
    """
    _require()
    try:
        expected = len(check_runner.split_tests(tests))
    except check_runner.SplitError:
        expected = 0  # the runner reports why; the check can't pass
    nonce = secrets.token_hex(16)
    # The runner keeps a margin inside the wall limit, so its verdict (with per-test timeouts) gets out.
    budget = max(1.0, timeout_s * 0.9 - 0.5)
    result = _run(
        {"solution.py": code, "tests.py": tests},
        ["-I", "-u", "-c", _RUNNER_SOURCE, f"{budget:.2f}"],
        timeout_s=timeout_s,
        cpu_s=cpu_s,
        memory_mb=memory_mb,
        stdin=nonce + "\n",
        max_procs=max_procs,
        disk_mb=64,
        output_limit=OUTPUT_LIMIT,
    )
    verdict = check_runner.read_verdict(result.stdout, nonce)
    error: str | None = None
    outcomes: list[TestOutcome] = []
    if verdict is None:
        error = f"the test runner gave no verdict (exit {result.exit_code})"
    else:
        try:
            outcomes = [TestOutcome.model_validate(t) for t in verdict["tests"]]
        except ValueError as exc:
            error = f"the test runner's verdict is malformed: {exc}"
        if verdict.get("error"):
            error = str(verdict["error"])
    return CheckRun(**result.model_dump(), expected_tests=expected, tests=outcomes, verdict_error=error)


_RUNNER_SOURCE = Path(check_runner.__file__).read_text(encoding="utf-8")


async def run_python_async(code: str, **kwargs: Any) -> SandboxResult:
    """``run_python`` off the event loop (same keywords), for rollouts with many episodes in flight."""
    return await asyncio.to_thread(functools.partial(run_python, code, **kwargs))


def confine_command(
    argv: Sequence[str],
    writable: str | os.PathLike[str],
    *,
    uid: int,
    visible_at: str | None = None,
    expose: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """``argv`` wrapped to run as ``uid`` with no network, read-only mounts except ``writable``, no capabilities.

    For third-party programs (MCP servers): whatever a server does or is talked into, the kernel keeps it off
    the network, inside ``writable`` for writes, and unprivileged. ``visible_at`` (an absolute path whose
    top-level dir exists, e.g. ``/home/user/workspace``) shows ``writable`` there instead of at its host path;
    the program starts in that dir. ``expose``: dirs the program needs that sit under root-only dirs (its
    install, its interpreter); the rest of those dirs stays hidden. Hand ``writable`` to ``uid`` first
    (``give_to``); check ``confinement_available()`` first.
    """
    if visible_at is not None and not _fixed_path_ok(visible_at):
        raise ValueError(f"visible_at must be absolute, under an existing top-level dir: {visible_at!r}")
    if uid <= 0:
        raise ValueError(f"a confined program needs an unprivileged uid, got {uid}")
    paths = {os.path.realpath(p) for p in [*expose, *_interpreter_paths(sys.executable)] if os.path.isdir(p)}
    cfg = json.dumps({
        "writable": os.path.realpath(writable), "visible": visible_at, "uid": uid,
        "mask": ["/run"],  # unix sockets of host daemons live there
        "expose": sorted(paths), "rlimits": _server_rlimits(),
    })  # fmt: skip
    return ["unshare", "--net", "--mount", "--ipc", "--", sys.executable, "-I", "-S", "-c", _CONFINE, cfg, *argv]


def runtime_paths(executable: str | os.PathLike[str]) -> list[str]:
    """Dirs a program needs besides itself: the interpreter its shebang names (resolved), and that one's prefix."""
    try:
        with open(executable, "rb") as fh:
            first = fh.readline(400)
    except OSError:
        return []
    if not first.startswith(b"#!"):
        return []
    words = first[2:].decode(errors="replace").split()
    if not words:
        return []
    interpreter = words[0]
    if os.path.basename(interpreter) == "env" and len(words) > 1:
        interpreter = shutil.which(words[1]) or words[1]
    real = os.path.realpath(interpreter)
    return [p for p in {os.path.dirname(interpreter), os.path.dirname(real), os.path.dirname(os.path.dirname(real))}
            if os.path.isdir(p)]


def _fixed_path_ok(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return len(parts) >= 3 and parts[0] == "/" and ".." not in parts and os.path.isdir("/" + parts[1])


CONFINEMENT = (
    "unshare (net, mount, ipc), read-only host, root-only dirs hidden, no capabilities, unprivileged uid, rlimits"
)


@functools.lru_cache(maxsize=1)
def confinement_available() -> tuple[bool, str]:
    """Whether ``confine_command`` works here (root, unshare, mount namespaces, a uid drop), and why not."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return False, "confinement needs Linux, root and unshare(1)"
    with tempfile.TemporaryDirectory(prefix="synth-confine-") as tmp:
        uid = server_uid()
        give_to(tmp, uid)
        probe = 'touch ok && ! touch /tmp/.synth-confine-probe 2>/dev/null && [ "$(id -u)" != 0 ]'
        try:
            proc = subprocess.run(
                confine_command(["/bin/sh", "-c", probe], tmp, uid=uid, visible_at="/home/synth-probe/ws"),
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"confinement probe failed: {exc}"
        finally:
            kill_uid(uid)
        if proc.returncode != 0 or not os.path.exists(os.path.join(tmp, "ok")):
            return False, f"confinement probe failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    return True, CONFINEMENT


class ConfinementUnavailable(SandboxUnavailable):
    """Third-party servers can't be confined here, and running them unconfined was not allowed."""


def isolation(allow_unconfined: bool = False) -> str:
    """'confined' where ``confine_command`` works; else 'unconfined' if allowed, else ConfinementUnavailable.

    Never a silent fallback: running third-party servers unconfined is the caller's explicit choice, and the
    caller records it (the harvest report, the rollouts summary).
    """
    ok, why = confinement_available()
    if ok:
        return "confined"
    if not allow_unconfined:
        raise ConfinementUnavailable(
            f"third-party MCP servers can't be confined here ({why})",
            hint="run as root on Linux (as the container and CI do), or allow unconfined servers explicitly "
            "(rollouts.allow_unconfined=true, harvest --unconfined): the run report then says they ran unconfined",
        )
    logging.getLogger(__name__).warning("MCP servers run UNCONFINED, as allowed (%s)", why)
    return "unconfined"
