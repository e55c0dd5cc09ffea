"""The calls the simulator-fidelity replay makes (``synth.sim.fidelity``): built from each server's tool schemas.

A call is built by code from the tool's JSON Schema and a few sensible values per server (time zones, paths inside
the scratch world, memory entities): a property takes a value from its server's pool when the pool names it, else
its enum, default or a plain value of its type. Required properties are always filled, optional ones sometimes.
Pools hold a few values that fail on purpose (a path that is not there, a time zone that does not exist), so the
replay also measures whether the simulator fails where the real server fails.

Calls from real-execution episodes (``runs/*/rollouts``) are read too: the (tool, arguments) of every call that a
real server answered, in episode order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

WORKSPACE = "/home/user/workspace"
"""Where confined servers see the scratch world (``synth.sim.server_pool.DEFAULT_WORKSPACE``)."""

TIME = "pypi/mcp-server-time"
MEMORY = "npm/@modelcontextprotocol/server-memory"
FILESYSTEM = "npm/@modelcontextprotocol/server-filesystem"
GIT = "pypi/mcp-server-git"
CALCULATOR = "pypi/mcp-server-calculator"
CONVERTER = "pypi/mcp-server-converter"
TIME_MCP = "npm/time-mcp"
THINKING = "npm/@modelcontextprotocol/server-sequential-thinking"
EVERYTHING = "npm/@modelcontextprotocol/server-everything"

REPLAY_SERVERS: tuple[str, ...] = (TIME, MEMORY, FILESYSTEM, GIT, CALCULATOR, CONVERTER, TIME_MCP, THINKING,
                                   EVERYTHING)  # fmt: skip
"""The servers replayed by default: the four sandbox-safe ones rollouts call for real, and five that only compute
(arithmetic, unit conversion, date arithmetic, thought bookkeeping, echo/sum) with no network and no files outside
the scratch world. The replay runs every one confined like a rollout's servers."""

SKIP_TOOLS: dict[str, frozenset[str]] = {
    # Network fetches, environment dumps, timers and server-side toggles: nothing a simulator could be held to.
    EVERYTHING: frozenset({"get-env", "gzip-file-as-resource", "trigger-long-running-operation",
                           "toggle-simulated-logging", "toggle-subscriber-updates", "simulate-research-query",
                           "get-tiny-image", "get-resource-links", "get-resource-reference"}),
    FILESYSTEM: frozenset({"read_media_file"}),
}

SEED_FILES: dict[str, str] = {
    "README.md": "# Demo project\n\nA small workspace for the replay.\nTODO: write the install guide.\n",
    "notes/todo.md": "- buy milk\n- call Alice\n- TODO review the budget\n",
    "notes/meeting.txt": "Meeting with Bob on Monday.\nAgenda: budget, hiring.\n",
    "src/app.py": "def greet(name):\n    return f'hello {name}'\n",
    "data/cities.csv": "city,country\nParis,France\nTokyo,Japan\n",
}
"""The scratch world every replayed sequence starts from (committed, where the server is git)."""

UNCOMMITTED = {"draft.md": "Draft release notes\n"}
"""Written after the first commit for git sequences, so status, diff and add have something to show."""

_ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Etc/UTC", "Australia/Sydney", "Asia/Kolkata",
          "America/Sao_Paulo", "Europe/London", "Mars/Olympus"]  # fmt: skip
_ENTITIES = ["Alice", "Bob", "Acme Corp", "Project Zephyr", "Paris office"]
_FILES = [f"{WORKSPACE}/{p}" for p in SEED_FILES] + [f"{WORKSPACE}/notes/missing.md"]
_DIRS = [WORKSPACE, f"{WORKSPACE}/notes", f"{WORKSPACE}/src", f"{WORKSPACE}/data", f"{WORKSPACE}/notes/todo.md"]

POOLS: dict[str, dict[str, list[Any]]] = {  # "tool.property" wins over "property"
    TIME: {"timezone": _ZONES, "source_timezone": _ZONES, "target_timezone": _ZONES,
           "time": ["09:30", "16:00", "23:45", "07:05", "25:99"]},
    MEMORY: {"name": _ENTITIES, "entityType": ["person", "company", "project", "place"],
             "observations": ["likes tea", "works remotely", "joined in 2021", "based in Paris"],
             "contents": ["prefers email", "speaks French", "manages the budget"],
             "from": _ENTITIES, "to": _ENTITIES, "relationType": ["works_at", "knows", "manages", "located_in"],
             "entityName": _ENTITIES, "entityNames": _ENTITIES, "names": _ENTITIES,
             "query": ["Alice", "company", "Paris", "tea", "nobody"]},
    FILESYSTEM: {"path": _FILES, "list_directory.path": _DIRS, "list_directory_with_sizes.path": _DIRS,
                 "directory_tree.path": _DIRS, "search_files.path": _DIRS,
                 "create_directory.path": [f"{WORKSPACE}/archive", f"{WORKSPACE}/notes/2026", f"{WORKSPACE}/src"],
                 "write_file.path": [f"{WORKSPACE}/notes/new.md", f"{WORKSPACE}/out/report.md", _FILES[0]],
                 "paths": _FILES, "source": _FILES, "content": ["hello world\n", "# Report\nAll good.\n"],
                 "destination": [f"{WORKSPACE}/archive/old.md", f"{WORKSPACE}/notes/renamed.md"],
                 "pattern": ["*.md", "todo", "*.py", "cities"], "oldText": ["TODO", "buy milk", "no such text"],
                 "newText": ["DONE", "buy bread"], "excludePatterns": [], "sortBy": ["name", "size"]},
    GIT: {"repo_path": [WORKSPACE, WORKSPACE, WORKSPACE, "/home/user/other"], "files": ["draft.md", "README.md"],
          "message": ["Add draft notes", "Update readme"], "branch_name": ["feature/notes", "main", "fix-typo"],
          "revision": ["HEAD", "main", "HEAD~5"], "target": ["main", "HEAD"], "max_count": [1, 3, 10],
          "context_lines": [1, 3], "branch_type": ["local", "all"]},
    CALCULATOR: {"expression": ["2+3*4", "sqrt(16)", "(7-2)**2", "10/4", "2**10", "1/0", "abs(-5.5)", "17 % 5",
                                "3.5*2", "(1+2)*(3+4)"]},
    CONVERTER: {"expression": ["10 km to miles", "100 F to C", "5 kg to lb", "2 hours to minutes", "1 mile to m",
                               "3 liters to gallons", "20 C to F", "12 inches to cm"]},
    TIME_MCP: {"date": ["2026-02-14", "2025-12-31", "2024-02-10", "2026-07-04"],
               "time": ["2026-01-01 10:00:00", "2025-06-15 08:30:00", "2027-03-01 12:00:00"],
               "sourceTimezone": _ZONES[:8], "targetTimezone": _ZONES[:8]},
    THINKING: {"thought": ["Split the task into steps", "Check the budget figures", "Summarise the findings"],
               "thoughtNumber": [1, 2, 3], "totalThoughts": [3, 5], "nextThoughtNeeded": [True, False]},
    EVERYTHING: {"message": ["hello world", "ping", "The quick brown fox"], "a": [2, 7.5, -3, 100],
                 "b": [3, 0.5, 10, 42]},
}
"""A few sensible values per server, by property name (an array property draws one to three of them)."""

ORDER: dict[str, list[str]] = {
    MEMORY: ["create_entities", "create_relations", "add_observations", "read_graph", "search_nodes", "open_nodes",
             "delete_observations", "delete_relations", "delete_entities"],
    FILESYSTEM: ["list_allowed_directories", "list_directory", "read_text_file", "write_file", "create_directory",
                 "list_directory_with_sizes", "directory_tree", "edit_file", "search_files", "get_file_info",
                 "move_file", "read_multiple_files", "read_file"],
    GIT: ["git_status", "git_diff_unstaged", "git_add", "git_diff_staged", "git_commit", "git_log",
          "git_create_branch", "git_branch", "git_checkout", "git_show", "git_diff", "git_reset"],
}
"""Tool order inside a sequence for servers with state: what creates comes before what reads or deletes it."""

OPTIONAL_SHARE = 0.3


class ReplayCall(BaseModel):
    """One call to replay: on which server, which tool, with which arguments, and where it came from."""

    server: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    source: Literal["generated", "rollouts"] = "generated"


class ReplaySequence(BaseModel):
    """Calls replayed in order on one fresh scratch world of one server (later calls see earlier changes)."""

    id: str
    server: str
    calls: list[ReplayCall]


def _draw(pool: list[Any], rng: random.Random, many: bool) -> Any:
    if many:
        return rng.sample(pool, k=min(len(pool), rng.randint(1, 3)))
    return rng.choice(pool)


def build_value(schema: Mapping[str, Any], key: str | None, pool: Mapping[str, list[Any]], rng: random.Random,
                depth: int = 0, tool: str = "") -> Any:  # fmt: skip
    """A value for one property: from the pool (``tool.key``, else ``key``) when it has one, else the schema's
    enum, default or type."""
    if key is not None and f"{tool}.{key}" in pool:
        key_pool = {**pool, key: pool[f"{tool}.{key}"]}
        return build_value(schema, key, key_pool, rng, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None and "anyOf" in schema:
        choice = next((s for s in schema["anyOf"] if s.get("type") != "null"), schema["anyOf"][0])
        return build_value(choice, key, pool, rng, depth)
    if key is not None and pool.get(key) and depth < 6:
        values = pool[key]
        if kind == "array":
            items = schema.get("items") or {}
            if items.get("type") == "object":
                return [build_value(items, None, pool, rng, depth + 1) for _ in range(rng.randint(1, 2))]
            return _draw(values, rng, many=True)
        return _draw(values, rng, many=False)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "default" in schema:
        return schema["default"]
    if kind == "object" or "properties" in schema:
        return build_arguments(schema, pool, rng, depth + 1)
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        count = max(int(schema.get("minItems", 1)), 1)
        return [build_value(items, key, pool, rng, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return schema.get("minimum", 3)
    if kind == "boolean":
        return rng.random() < 0.5
    return "example"


def build_arguments(schema: Mapping[str, Any], pool: Mapping[str, list[Any]], rng: random.Random,
                    depth: int = 0, tool: str = "") -> dict[str, Any]:  # fmt: skip
    """Arguments for a tool: every required property, and an optional one with ``OPTIONAL_SHARE`` odds when the
    server's pool names it (an optional property nobody chose a value for is left to the server's default)."""
    props: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for key, sub in props.items():
        if key in required or (key in pool and rng.random() < OPTIONAL_SHARE):
            out[key] = build_value(sub if isinstance(sub, Mapping) else {}, key, pool, rng, depth, tool)
    return out


def generated_sequences(tools: Mapping[str, Iterable[Mapping[str, Any]]], calls_per_server: int, *, seed: int = 0,
                        calls_per_sequence: int = 10) -> list[ReplaySequence]:  # fmt: skip
    """About ``calls_per_server`` calls for each server in ``tools`` (server id -> its MCP tool dicts, with
    ``name`` and ``inputSchema``), in sequences of ``calls_per_sequence`` calls that go round the server's tools
    in ``ORDER`` (else as listed), so every tool is called and the stateful ones act on what earlier calls made."""
    out: list[ReplaySequence] = []
    for server, server_tools in tools.items():
        by_name = {str(t["name"]): t for t in server_tools if t.get("name") not in SKIP_TOOLS.get(server, ())}
        if not by_name:
            continue
        order = [n for n in ORDER.get(server, []) if n in by_name] + sorted(set(by_name) - set(ORDER.get(server, [])))
        rng = random.Random(f"{seed}:{server}")
        pool = POOLS.get(server, {})
        made, index, number = 0, 0, 0
        while made < calls_per_server:
            calls = []
            for _ in range(min(calls_per_sequence, calls_per_server - made)):
                name = order[index % len(order)]
                index += 1
                schema = by_name[name].get("inputSchema") or {"type": "object"}
                arguments = build_arguments(schema, pool, rng, tool=name)
                calls.append(ReplayCall(server=server, tool=name, arguments=arguments))
            made += len(calls)
            out.append(ReplaySequence(id=f"{server}#gen{number}", server=server, calls=calls))
            number += 1
    return out


def rollout_sequences(runs_dir: Path, servers: Iterable[str], limit_per_server: int = 40) -> list[ReplaySequence]:
    """The real calls of real-execution episodes under ``runs_dir`` (any ``rollouts/data.parquet`` below it), one
    sequence per episode and server, at most ``limit_per_server`` calls per server, repeats of one
    (tool, arguments) dropped."""
    import pyarrow.parquet as pq  # only this reader needs it

    wanted = set(servers)
    seen: set[tuple[str, str, str]] = set()
    count: dict[str, int] = {}
    out: list[ReplaySequence] = []
    for path in sorted(runs_dir.glob("**/rollouts/data.parquet")):
        try:
            records = pq.read_table(path, columns=["record"]).column("record").to_pylist()
        except (OSError, KeyError, ValueError):  # a run being written, or of another layout: nothing to read
            continue
        for number, raw in enumerate(records):
            record = json.loads(raw) if isinstance(raw, str) else raw
            for server, calls in _real_calls(record or {}, wanted).items():
                kept = []
                for call in calls:
                    key = (server, call.tool, json.dumps(call.arguments, sort_keys=True))
                    if key in seen or count.get(server, 0) >= limit_per_server:
                        continue
                    seen.add(key)
                    count[server] = count.get(server, 0) + 1
                    kept.append(call)
                if kept:
                    out.append(ReplaySequence(id=f"{server}#{path.parent.parent.name}:{number}", server=server,
                                              calls=kept))  # fmt: skip
    return out


def _real_calls(record: Mapping[str, Any], wanted: set[str]) -> dict[str, list[ReplayCall]]:
    """(server -> its calls, in order) of one trajectory: the calls its ``calls`` records say a server answered."""
    by_id = {c.get("tool_call_id"): c for c in record.get("calls") or [] if c.get("mode") == "real"}
    out: dict[str, list[ReplayCall]] = {}
    for message in record.get("messages") or []:
        for tc in message.get("tool_calls") or []:
            answered = by_id.get(tc.get("id"))
            if answered is None or answered.get("server") not in wanted:
                continue
            fn = tc.get("function") or {}
            try:
                arguments = json.loads(fn.get("arguments") or "{}")
            except json.JSONDecodeError:
                continue
            if isinstance(arguments, dict):
                server = str(answered["server"])
                out.setdefault(server, []).append(
                    ReplayCall(server=server, tool=str(fn.get("name")), arguments=arguments, source="rollouts"))
    return out
