"""The Python sandbox really isolates: no network (not even the host's loopback), no writes outside its dir,
and CPU, wall-time, memory and process limits that stop runaway code; confined programs (as MCP servers run) cannot
escape either. Every test marked sandbox runs real code in a real sandbox (the sandbox tier: root on Linux; it
fails elsewhere); only the fail-closed tests fake the machine's capabilities, and run in the unit tier."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from synth.paths import REPO_ROOT
from synth.runtime import sandbox
from synth.runtime.sandbox import (
    SandboxUnavailable,
    check_python,
    confine_command,
    give_to,
    kill_uid,
    run_python,
    server_uid,
)

pytestmark = pytest.mark.timeout(60)

def _sandbox_pids() -> list[int]:
    """Live processes owned by one of the sandbox's throwaway uids."""
    low, high = sandbox._UID_RANGE
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = entry.stat().st_uid
            except FileNotFoundError:
                continue
            if low <= uid < high:
                pids.append(int(entry.name))
    return pids


@pytest.mark.sandbox
def test_normal_code_returns_stdout_and_reads_stdin() -> None:
    result = run_python("import sys\nprint('hello', 6 * 7)\nprint(sys.stdin.read().upper())", stdin="abc")
    assert result.ok, result.stderr
    assert result.stdout == "hello 42\nABC\n"
    assert result.killed is None and not result.timed_out
    assert result.duration_s > 0


@pytest.mark.sandbox
def test_nonzero_exit_and_traceback_are_reported() -> None:
    result = run_python("raise SystemExit(3)")
    assert result.exit_code == 3 and not result.ok
    result = run_python("1 / 0")
    assert result.exit_code == 1 and "ZeroDivisionError" in result.stderr


@pytest.mark.sandbox
def test_network_is_unreachable_even_to_a_server_on_host_loopback() -> None:
    accepted: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.2)

        def accept_any() -> None:
            with contextlib.suppress(OSError):
                accepted.append(server.accept())

        code = (
            "import socket\n"
            f"for addr in [('127.0.0.1', {port}), ('10.0.0.1', 80), ('8.8.8.8', 53)]:\n"
            "    try:\n"
            "        socket.create_connection(addr, timeout=2)\n"
            "        print('CONNECTED', addr)\n"
            "    except OSError as exc:\n"
            "        print('blocked', exc.errno)\n"
        )
        result = run_python(code)
        watcher = threading.Thread(target=accept_any)
        watcher.start()
        watcher.join()
    assert result.ok, result.stderr
    assert "CONNECTED" not in result.stdout
    assert result.stdout.split() == ["blocked", str(errno.ENETUNREACH)] * 3
    assert not accepted, "the host's loopback server saw a connection from the sandbox"


@pytest.mark.sandbox
def test_writes_outside_the_working_dir_fail_and_leave_nothing() -> None:
    name = f"synth-sandbox-escape-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", str(REPO_ROOT / name), f"/var/tmp/{name}", f"/dev/shm/{name}"]
    code = (
        "import os\n"
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        with open(path, 'w') as f:\n"
        "            f.write('escaped')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('denied', exc.errno)\n"
        "open('inside.txt', 'w').write('ok')\n"
        "print('inside', open('inside.txt').read(), os.getuid() != 0, os.path.exists('/root/.cache'))\n"
    )
    result = run_python(code)
    assert result.ok, result.stderr
    assert "WROTE" not in result.stdout
    assert result.stdout.count("denied") == len(targets)
    assert result.stdout.strip().endswith("inside ok True False")  # unprivileged, root's home hidden
    for target in targets:
        assert not os.path.exists(target)


@pytest.mark.sandbox
def test_runaway_cpu_is_stopped_by_the_cpu_limit() -> None:
    result = run_python("while True:\n    pass", cpu_s=1, timeout_s=30)
    assert result.killed == "cpu_time"
    assert not result.timed_out and not result.ok


@pytest.mark.sandbox
def test_sleeping_code_is_stopped_by_the_wall_limit() -> None:
    result = run_python("import time\nprint('start', flush=True)\ntime.sleep(60)", timeout_s=1)
    assert result.timed_out and result.killed == "wall_time"
    assert result.stdout == "start\n"  # output before the kill is kept
    assert result.duration_s < 10


@pytest.mark.sandbox
@pytest.mark.parametrize(
    "bomb",
    [
        "block = bytearray(2 * 1024**3)",
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024**2))",
    ],
)
def test_memory_bombs_are_stopped(bomb: str) -> None:
    result = run_python(bomb + "\nprint('survived')", memory_mb=256)
    assert "survived" not in result.stdout
    assert result.killed == "memory" and not result.ok


@pytest.mark.sandbox
def test_fork_bomb_is_bounded_and_leaves_no_process() -> None:
    # Every child sleeps, so the count that fork reaches before it fails is the process limit at work.
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    print('forks', n, flush=True)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = run_python(code, max_procs=16, timeout_s=5, cpu_s=2)
    forks = int(result.stdout.split()[1])
    assert 0 < forks < 16
    assert result.killed in ("wall_time", "cpu_time")
    assert result.duration_s < 20
    assert _sandbox_pids() == []


@pytest.mark.sandbox
def test_output_flood_is_truncated() -> None:
    result = run_python("while True:\n    print('x' * 1000)", timeout_s=1, output_limit=10_000)
    assert result.timed_out
    assert len(result.stdout) < 11_000 and "truncated" in result.stdout


@pytest.mark.sandbox
def test_concurrent_runs_do_not_interfere() -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: run_python(f"print({i} * {i})"), range(4)))
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(4)]


@pytest.mark.sandbox
def test_check_python_passes_good_code_and_fails_wrong_code() -> None:
    tests = "assert add(2, 3) == 5\n\ndef test_negative():\n    assert add(-1, -1) == -2\n"
    good = check_python("def add(a, b):\n    return a + b\n", tests)
    assert good.ok, good.stderr
    wrong = check_python("def add(a, b):\n    return a - b\n", tests)
    assert not wrong.ok and "AssertionError" in wrong.stderr
    # A pytest-style test function that only fails when called is still run.
    half = check_python("def add(a, b):\n    return abs(a) + abs(b)\n", tests)
    assert not half.ok and "test_negative" in half.stderr
    broken = check_python("def add(a, b) return a + b\n", tests)
    assert not broken.ok and "SyntaxError" in broken.stderr


@pytest.mark.sandbox
def test_check_python_fails_tests_that_do_not_parse() -> None:
    # The host counts the tests before the run: tests that cannot be split are a failed check, not a host crash.
    result = check_python("def add(a, b):\n    return a + b\n", "assert add(2, 3 == 5\n")
    assert not result.ok and "do not parse" in result.stderr


def test_fails_closed_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable, match="needs root"):
        sandbox._run({"main.py": "print(1)"}, ["-I", "main.py"], timeout_s=5, cpu_s=1, memory_mb=256,
                     stdin="", max_procs=8, disk_mb=8, output_limit=100)  # fmt: skip


def test_run_python_refuses_when_sandbox_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: (False, "no namespaces in this container"))
    with pytest.raises(SandboxUnavailable, match="no namespaces in this container"):
        run_python("print('must not run')")
    with pytest.raises(SandboxUnavailable):
        check_python("x = 1", "assert x == 1")


def _confined(script: str, root: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    uid = server_uid()
    give_to(root, uid)
    try:
        cmd = confine_command(["/bin/sh", "-c", script], root, uid=uid, **kwargs)  # type: ignore[arg-type]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    finally:
        kill_uid(uid)


@pytest.mark.sandbox
def test_confined_program_writes_only_its_dir_and_has_no_network_or_capabilities(tmp_path: Path) -> None:
    outside = Path("/tmp") / f"synth-confine-escape-{uuid.uuid4().hex}"
    script = (
        'echo ok > inside.txt; '
        f'echo escaped > "{outside}" 2>/dev/null && echo WROTE-OUTSIDE; '
        "grep CapEff /proc/self/status; "
        "cat /proc/net/dev | grep -c ':'; "  # interfaces: only the (down) loopback of a fresh namespace
        "id -u"
    )
    proc = _confined(script, tmp_path, visible_at="/home/user/ws")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "inside.txt").read_text() == "ok\n"
    assert not outside.exists() and "WROTE-OUTSIDE" not in proc.stdout
    lines = proc.stdout.split("\n")
    assert lines[0].split() == ["CapEff:", "0000000000000000"]
    assert lines[1] == "1"
    assert int(lines[2]) >= sandbox.SERVER_UID_RANGE[0]


@pytest.mark.sandbox
def test_confined_program_can_see_its_dir_at_a_fixed_path(tmp_path: Path) -> None:
    proc = _confined("pwd && echo hi > note.txt", tmp_path, visible_at="/home/user/ws")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "/home/user/ws\n"
    assert (tmp_path / "note.txt").read_text() == "hi\n"
    assert not Path("/home/user/ws").exists()  # only the program's own mount view has it
    with pytest.raises(ValueError, match="visible_at"):
        confine_command(["/bin/true"], tmp_path, uid=server_uid(), visible_at="relative/path")
    with pytest.raises(ValueError, match="unprivileged uid"):
        confine_command(["/bin/true"], tmp_path, uid=0)


# An MCP-server-like program that tries to escape: reach a server on the host's loopback and the outside
# world, write outside its root (the host's /tmp, the repository, root's home), read root-only files, regain
# uid 0 through a setuid binary, and signal a host process.
ESCAPE = """
import errno, json, os, socket, subprocess, sys
out = {"uid": os.getuid(), "euid": os.geteuid()}
for name, addr in [("loopback", ("127.0.0.1", int(sys.argv[1]))), ("world", ("1.1.1.1", 53))]:
    try:
        socket.create_connection(addr, timeout=2).close()
        out[name] = "CONNECTED"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
home = "/root/" + os.path.basename(sys.argv[2])
for name, path in [("tmp", sys.argv[2]), ("repo", sys.argv[3]), ("root_home", home)]:
    try:
        with open(path, "w") as fh:
            fh.write("escaped")
        out[name] = "WROTE"
    except OSError as exc:
        out[name] = errno.errorcode.get(exc.errno, str(exc.errno))
try:
    open("/etc/shadow").read()
    out["shadow"] = "READ"
except OSError as exc:
    out["shadow"] = errno.errorcode.get(exc.errno, str(exc.errno))
try:
    su = subprocess.run(["su", "-c", "id -u"], capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    out["su"] = su.stdout.strip() or "refused"
except Exception:
    out["su"] = "refused"
try:
    os.kill(int(sys.argv[4]), 0)
    out["signal_host"] = "SENT"
except OSError as exc:
    out["signal_host"] = errno.errorcode.get(exc.errno, str(exc.errno))
open("inside.txt", "w").write("ok")
print(json.dumps(out))
"""


@pytest.mark.sandbox
def test_an_mcp_server_like_program_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape.py").write_text(ESCAPE)
    name = f"synth-escape-{uuid.uuid4().hex}"
    targets = [Path("/tmp") / name, REPO_ROOT / name, Path("/root") / name]
    accepted: list[object] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        port = server.getsockname()[1]
        uid = server_uid()
        give_to(root, uid)
        cmd = confine_command([sys.executable, "escape.py", str(port), str(targets[0]), str(targets[1]),
                               str(os.getpid())], root, uid=uid, visible_at="/home/user/workspace")  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        finally:
            kill_uid(uid)
        with contextlib.suppress(OSError):
            accepted.append(server.accept())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["uid"] != 0 and result["euid"] != 0
    assert result["loopback"] == "ENETUNREACH" and result["world"] == "ENETUNREACH" and not accepted
    assert {result[k] for k in ("tmp", "repo", "root_home")} <= {"EROFS", "EACCES", "ENOENT"}
    assert result["shadow"] in {"EACCES", "ENOENT"}
    assert result["su"] != "0"
    assert result["signal_host"] == "EPERM"
    assert (root / "inside.txt").read_text() == "ok"
    assert not any(t.exists() for t in targets)


@pytest.mark.sandbox
@pytest.mark.parametrize("tree", ["/home", "/work", "/srv", "/opt"])
def test_other_checkouts_are_hidden_from_sandboxed_code(tree: str) -> None:
    # Another clone of this repository (or an old run) anywhere users keep files holds the coding tests' answers:
    # sandboxed code must not read it, not only the checkout that is running now.
    decoy = Path(tree) / f"synth-decoy-{uuid.uuid4().hex[:8]}"
    created = not Path(tree).exists()
    decoy.mkdir(parents=True)
    try:
        (decoy / "coding_problems.yaml").write_text("answer: 42\n")
        (decoy / "coding_problems.yaml").chmod(0o644)
        decoy.chmod(0o755)
        target = str(decoy / "coding_problems.yaml")
        code = (f"try:\n    print(open({target!r}).read())\n"
                "except OSError as e:\n    print('blocked', type(e).__name__)\n")
        result = run_python(code)
        assert result.ok, result.stderr
        assert "answer: 42" not in result.stdout and "blocked" in result.stdout
    finally:
        for p in decoy.iterdir():
            p.unlink()
        decoy.rmdir()
        if created:
            Path(tree).rmdir()
