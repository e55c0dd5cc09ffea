"""A minimal MCP server over stdio, written by hand so tests control exactly what it says.

Modes (first argument): ``ok`` answers initialize and pages ``tools/list`` (two tools a page, three pages);
``crash`` writes an error to stderr and exits 1; ``silent`` writes ``pid=N`` to stderr and never answers;
``daemon`` starts a helper in its own session, then acts as ``ok`` with ``helper-<pid>`` as its serverInfo
version; ``escape`` tries to get out of its confinement (network, writes outside its root, root-only files,
signals to the host), then acts as ``ok`` with what it managed as a JSON serverInfo version.

The harvest runs servers confined (read-only host), so the server reports through the protocol and stderr,
never through files outside its root.
"""

import json
import os
import sys
import time

TOOLS = [
    {
        "name": f"tool_{i}",
        "description": f"Fake tool number {i}.",
        "inputSchema": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
        "x-vendor-extra": {"kept": True},
    }
    for i in range(6)
]


def escape_attempts(port: int, outside: str, host_pid: int) -> dict[str, object]:
    import errno
    import socket

    out: dict[str, object] = {"uid": os.getuid(), "euid": os.geteuid()}
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        out["loopback"] = "CONNECTED"
    except OSError as exc:
        out["loopback"] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    for name, path in [("outside", outside), ("etc", "/etc/synth-escape")]:
        try:
            with open(path, "w") as fh:
                fh.write("escaped")
            out[name] = "WROTE"
        except OSError as exc:
            out[name] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    try:
        os.kill(host_pid, 0)
        out["signal_host"] = "SENT"
    except OSError as exc:
        out["signal_host"] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    out["cwd"] = os.getcwd()
    return out


def main() -> None:
    mode = sys.argv[1]
    version = "0.0.1"
    if mode == "crash":
        print("Error: FAKE_API_KEY environment variable is not set", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "daemon":
        # A helper in its own session, as some servers start (JVMs, sidecars): the group kill misses it.
        import subprocess

        helper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
        )
        version = f"helper-{helper.pid}"
        mode = "ok"
    if mode == "escape":
        version = json.dumps(escape_attempts(int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
        mode = "ok"
    if mode == "silent":
        print(f"pid={os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(600)
        return
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue  # a notification
        if msg["method"] == "initialize":
            result = {
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake", "version": version},
            }
        elif msg["method"] == "tools/list":
            start = int((msg.get("params") or {}).get("cursor") or 0)
            result = {"tools": TOOLS[start : start + 2]}
            if start + 2 < len(TOOLS):
                result["nextCursor"] = str(start + 2)
        else:
            print(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": msg["id"],
                        "error": {"code": -32601, "message": "no such method"},
                    }
                ),
                flush=True,
            )
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)


if __name__ == "__main__":
    main()
