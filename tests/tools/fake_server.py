"""A minimal MCP server over stdio, written by hand so tests control exactly what it says.

Modes (first argument): ``ok`` answers initialize and pages ``tools/list`` (two tools a page, three pages);
``crash`` writes an error to stderr and exits 1; ``silent`` writes its pid to the file named by the second
argument and never answers; ``daemon`` starts a helper in its own session (pid to the file), then acts as ``ok``.
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


def main() -> None:
    mode = sys.argv[1]
    if mode == "crash":
        print("Error: FAKE_API_KEY environment variable is not set", file=sys.stderr, flush=True)
        sys.exit(1)
    if mode == "daemon":
        # A helper in its own session, as some servers start (JVMs, sidecars): the group kill misses it.
        import subprocess

        helper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
        )
        with open(sys.argv[2], "w") as fh:
            fh.write(str(helper.pid))
        mode = "ok"
    if mode == "silent":
        with open(sys.argv[2], "w") as fh:
            fh.write(str(os.getpid()))
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
                "serverInfo": {"name": "fake", "version": "0.0.1"},
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
