"""What the simulator-fidelity replay compares in one result: its key values, and the state it leaves.

``key_values(server, tool, text)`` extracts, by code, the values of a result that a caller acts on, per server:

- time (``mcp-server-time``): the time zone(s), the date and hour, day of week, DST flag, the time difference;
- memory: the entity names, the relation triples and the observations the result names;
- filesystem: the names a listing or search shows, a file's text, a file's size and kind;
- git: the files that status and diff name, the branch names, the commit messages, whether the tree is clean;
- calculator, converter, everything's ``get-sum``: the number; time-mcp: the dates, times and numbers;
- sequential thinking: the thought number, the total and whether another thought is needed;
- everything's ``echo`` and structured content: the echoed text, the fields;
- any other result: the words and numbers of the real result that the call's arguments contain (values the
  simulator was given, so it can be held to them).

A key holds a string, a number, a bool or a frozenset. ``key_agreement(real, sim)`` is the share of the real
result's keys whose value the simulated result has too (numbers within a relative 1e-6, sets equal); None when the
real result has no key value. ``state_projection`` reduces a world state to what the server's state means
(entity names and observations, file paths and texts, commits and changed files), so a simulated state is
compared with the real one without its formatting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from synth.sim.fidelity_calls import (
    CALCULATOR,
    CONVERTER,
    EVERYTHING,
    FILESYSTEM,
    GIT,
    MEMORY,
    THINKING,
    TIME,
    TIME_MCP,
    WORKSPACE,
)

Key = str | int | float | bool | frozenset[Any] | None

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\b")
_WORD = re.compile(r"[A-Za-z0-9_./-]{3,}")


def parse_json(text: str) -> Any:
    """The JSON a result holds, or None (a plain-text result)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        found = _NUMBER.search(value.replace(",", ""))
        return float(found.group()) if found else None
    return None


def _rel(path: str) -> str:
    """A path as the world's files name it: relative to the workspace, no leading or trailing slash."""
    path = str(path).strip()
    if path.startswith(WORKSPACE):
        path = path[len(WORKSPACE):]
    return path.strip("/")


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every object anywhere in a JSON value, outermost first."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _dicts(child)
    elif isinstance(value, list):
        for child in value:
            yield from _dicts(child)


def _names(value: Any, field: str) -> frozenset[str]:
    """Values of ``field`` anywhere in a JSON value (entity names in a graph, a list, a search result)."""
    return frozenset(node[field] for node in _dicts(value) if isinstance(node.get(field), str))


def _time_keys(tool: str, data: Any) -> dict[str, Key]:
    out: dict[str, Key] = {}
    if not isinstance(data, dict):
        return out
    parts = [("", data)] if "timezone" in data else [(f"{k}.", data.get(k)) for k in ("source", "target")]
    for prefix, part in parts:
        if not isinstance(part, dict):
            continue
        out[f"{prefix}timezone"] = part.get("timezone")
        stamp = str(part.get("datetime", ""))
        out[f"{prefix}date"] = stamp[:10] or None
        out[f"{prefix}hour"] = stamp[11:13] or None
        if tool == "convert_time":
            out[f"{prefix}minute"] = stamp[14:16] or None
        out[f"{prefix}day_of_week"] = part.get("day_of_week")
        out[f"{prefix}is_dst"] = part.get("is_dst")
    if "time_difference" in data:
        out["time_difference"] = data.get("time_difference")
    return out


def _memory_keys(data: Any, text: str) -> dict[str, Key]:
    if data is None:
        return {}
    out: dict[str, Key] = {"entities": _names(data, "name")}
    triples = set()
    observations: set[str] = set()

    for node in _dicts(data):
        if {"from", "to", "relationType"} <= set(node):
            triples.add((node["from"], node["relationType"], node["to"]))
        for key in ("observations", "addedObservations", "contents"):
            if isinstance(node.get(key), list):
                observations.update(str(o) for o in node[key])
    out["relations"] = frozenset(triples)
    out["observations"] = frozenset(observations)
    return {k: v for k, v in out.items() if v or k == "entities"}


_LISTED = re.compile(r"^\[(FILE|DIR)\]\s+(\S.*?)(?:\s+\d[\d.]*\s*\w*)?$")


def _filesystem_keys(tool: str, text: str, data: Any) -> dict[str, Key]:
    if tool in ("list_directory", "list_directory_with_sizes"):
        listed = set()
        for line in text.splitlines():
            m = _LISTED.match(line.strip())
            if m:
                listed.add(f"{m.group(1).lower()}:{m.group(2).strip()}")
        return {"listed": frozenset(listed)}
    if tool == "directory_tree":
        return {"names": _names(data, "name")} if data is not None else {}
    if tool in ("read_text_file", "read_file"):
        return {"text": text.strip()}
    if tool == "read_multiple_files":
        return {"paths": frozenset(_rel(m) for m in re.findall(r"^(/\S+):\s*$", text, re.M))}
    if tool == "search_files":
        return {"found": frozenset(_rel(line) for line in text.splitlines() if line.strip().startswith("/"))}
    if tool == "get_file_info":
        fields = dict(re.findall(r"^(\w+):\s*(.*)$", text, re.M))
        return {k: fields[k].strip().lower() for k in ("size", "isDirectory", "isFile") if k in fields}
    if tool == "list_allowed_directories":
        return {"dirs": frozenset(line.strip() for line in text.splitlines() if line.strip().startswith("/"))}
    return {}


_DIFF_FILE = re.compile(r"^diff --git a/(\S+)", re.M)


def _git_keys(tool: str, text: str) -> dict[str, Key]:
    if tool == "git_status":
        changed = set(re.findall(r"^\s+(?:modified:|new file:|deleted:)?\s*([\w./-]+\.\w+)\s*$", text, re.M))
        return {"clean": "nothing to commit" in text, "files": frozenset(changed)}
    if tool in ("git_diff_unstaged", "git_diff_staged", "git_diff"):
        return {"files": frozenset(_DIFF_FILE.findall(text))}
    if tool == "git_log":
        return {"messages": frozenset(m.strip() for m in re.findall(r"^\s*Message:\s*(.+)$", text, re.M))}
    if tool == "git_branch":
        return {"branches": frozenset(b.strip("* ").strip() for b in text.splitlines() if b.strip())}
    if tool == "git_show":
        # `git show`'s header, then the message indented by four spaces, then the diff.
        found = re.search(r"^Date:.*\n\n {4}(.+)$", text, re.M)
        return {"message": found.group(1).strip() if found else None,
                "files": frozenset(_DIFF_FILE.findall(text))}  # fmt: skip
    return {}


def _numbers(text: str) -> frozenset[float]:
    return frozenset(round(float(m), 6) for m in _NUMBER.findall(text.replace(",", "")))


def _last_number(text: str) -> float | None:
    """The last number of a sentence that ends on its answer ("The sum of 2 and 3.5 is 5.5.")."""
    found = _NUMBER.findall(text.replace(",", "").rstrip("."))
    return round(float(found[-1]), 6) if found else None


def grounded_tokens(text: str, arguments: Mapping[str, Any]) -> frozenset[str]:
    """Words and numbers of ``text`` that are words of the call's argument values: what a simulator was given."""
    given: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)
        elif value is not None and not isinstance(value, bool):
            given.update(w.lower() for w in _WORD.findall(str(value)))

    walk(arguments)
    return frozenset(w.lower() for w in _WORD.findall(text) if w.lower() in given)


def key_values(server: str, tool: str, text: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Key]:
    """The key values of one (successful) result; see the module docstring for what each server's are."""
    data = parse_json(text)
    if server == TIME:
        return _time_keys(tool, data)
    if server == MEMORY:
        return _memory_keys(data, text)
    if server == FILESYSTEM:
        keys = _filesystem_keys(tool, text, data)
        if keys:
            return keys
    elif server == GIT:
        keys = _git_keys(tool, text)
        if keys:
            return keys
    elif server in (CALCULATOR, CONVERTER):
        value = data.get("result") if isinstance(data, dict) else text
        number = _num(value)
        return {"value": round(number, 6) if number is not None else str(value).strip()}
    elif server == TIME_MCP:
        return {"dates": frozenset(_DATE.findall(text)), "clock": frozenset(_CLOCK.findall(text)) if tool !=
                "current_time" else None, "numbers": _numbers(_CLOCK.sub(" ", _DATE.sub(" ", text)))
                if tool in ("days_in_month", "get_week_year") or (tool == "get_timestamp" and (arguments or {})
                .get("time")) else None}  # fmt: skip
    elif server == THINKING and isinstance(data, dict):
        return {k: data.get(k) for k in ("thoughtNumber", "totalThoughts", "nextThoughtNeeded")}
    elif server == EVERYTHING:
        if tool == "echo":
            return {"echo": text.strip().removeprefix("Echo:").strip()}
        if tool == "get-sum":
            return {"sum": _last_number(text)}
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))}
    tokens = grounded_tokens(text, arguments or {})
    return {"grounded": tokens} if tokens else {}


def values_agree(real: Key, sim: Key) -> bool:
    if isinstance(real, bool) or isinstance(sim, bool):
        return real is sim or (isinstance(sim, str) and str(real).lower() == sim.lower())
    if isinstance(real, (int, float)) and isinstance(sim, (int, float)):
        return math.isclose(float(real), float(sim), rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(real, (int, float)) and isinstance(sim, str):
        number = _num(sim)
        return number is not None and math.isclose(float(real), number, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(real, str) and isinstance(sim, str):
        return " ".join(real.split()).lower() == " ".join(sim.split()).lower()
    return real == sim


def key_agreement(real: Mapping[str, Key], sim: Mapping[str, Key]) -> float | None:
    """Share of the real result's keys (those with a value) that the simulated result matches; None if none."""
    keys = [k for k, v in real.items() if v is not None]
    if not keys:
        return None
    return sum(values_agree(real[k], sim.get(k)) for k in keys) / len(keys)


def state_projection(server: str, state: Mapping[str, Any]) -> Any:
    """What the server's state means, without its formatting (None for a server without state)."""
    if server == MEMORY:
        graph = state.get("memory") or {}
        entities = graph.get("entities") if isinstance(graph, dict) else None
        relations = graph.get("relations") if isinstance(graph, dict) else None
        ents = sorted((str(e.get("name")), str(e.get("entityType")), tuple(sorted(map(str, e.get("observations")
                       or [])))) for e in entities or [] if isinstance(e, dict))  # fmt: skip
        rels = sorted((str(r.get("from")), str(r.get("relationType")), str(r.get("to")))
                      for r in relations or [] if isinstance(r, dict))  # fmt: skip
        return {"entities": ents, "relations": rels}
    if server in (FILESYSTEM, GIT):
        files = state.get("files") or {}
        out: dict[str, Any] = {"files": sorted(
            (_rel(path), (info.get("content") if isinstance(info, dict) else info))
            for path, info in (files.items() if isinstance(files, dict) else []))}  # fmt: skip
        if server == GIT:
            git = state.get("git") or {}
            log = git.get("log") if isinstance(git, dict) else None
            status = git.get("status") if isinstance(git, dict) else None
            out["commits"] = sorted(str(line).split(" ", 1)[-1] for line in log or [])
            out["status"] = sorted(str(line).strip() for line in status or [])
        return out
    return None
