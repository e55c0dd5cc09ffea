"""What part of the world state the tool simulator sees for one call, chosen by code from the tool and its arguments.

A small state is shown whole. A large one is shown as lines ``<JSON Pointer> = <value>``, so every path the
simulator reads is the exact path it must write (no prefix cut mid-collection, no shifted list indices):
- an outline of the top-level keys (kind and size of each), so the simulator knows what exists;
- the records that mention an argument value (an id, a name, an email), found anywhere in the state, each whole
  at its own pointer;
- the collections the tool touches: those whose key matches a word of the tool's name or an argument's name
  (``cancel_order`` -> ``orders``), whole when they fit, else their size, their last items (for the next id and
  for appends) and where to append.
The view has a character budget; what does not fit is named, never silently cut.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 8
ITEM_CHARS = 1500
"""A record longer than this is shown as its outline (its keys), not its text."""


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _words(text: str) -> set[str]:
    """'cancelOrder', 'cancel_order', 'order-items' -> their lower-case words and those words' singulars."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", text)
    words = {w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if len(w) >= 3}
    return words | {_singular(w) for w in words}


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


_GENERIC = {"get", "set", "list", "add", "create", "update", "delete", "remove", "find", "search", "fetch",
            "read", "write", "new", "all", "the", "for", "with", "by", "query", "limit", "offset", "page"}  # fmt: skip


def _terms(tool_name: str, arguments: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(collection words from the tool's and arguments' names, the scalar argument values as strings)."""
    words = _words(tool_name)
    values: set[str] = set()

    def walk(value: Any, key: str | None) -> None:
        if key is not None:
            words.update(_words(key))
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, None)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, (int, float)):
            values.add(str(value))
        elif isinstance(value, str) and value.strip() and len(value) <= 200:
            values.add(value.strip().lower())

    walk(arguments, None)
    return words - _GENERIC, values


def _walk(value: Any, pointer: str, depth: int) -> Iterator[tuple[str, str | None, Any, int]]:
    """(pointer, key, value, depth) of every node, parents first."""
    yield pointer, pointer.rsplit("/", 1)[-1] if pointer else None, value, depth
    if depth >= MAX_DEPTH:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{pointer}/{_escape(str(k))}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{pointer}/{i}", depth + 1)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"list of {len(value)}"
    if isinstance(value, dict):
        return f"object with {len(value)} keys"
    return type(value).__name__ if value is not None else "null"


def _record_of(doc: Any, pointer: str) -> str:
    """The record holding ``pointer``: its entry in the shallowest collection (a list, or a map of records)."""
    parts = pointer.split("/")[1:]
    node: Any = doc
    for i, part in enumerate(parts):
        if i > 0:
            is_map = (
                isinstance(node, dict) and len(node) >= 2 and all(isinstance(v, (dict, list)) for v in node.values())
            )
            if isinstance(node, list) or is_map:
                return "/" + "/".join(parts[: i + 1])
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return "/" + parts[0]


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _shown(value: Any) -> str:
    text = _dumps(value)
    if len(text) <= ITEM_CHARS:
        return text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_dumps(k)}: <{_kind(v)}>" for k, v in list(value.items())[:40]) + "}  (outline)"
    return f"<{_kind(value)}, {len(text)} characters>"


def state_view(doc: dict[str, Any], tool_name: str, arguments: dict[str, Any], budget: int = 6000) -> tuple[str, bool]:
    """(the text shown to the simulator, whether it is a partial view). Whole state when it fits ``budget``."""
    whole = _dumps(doc)
    if len(whole) <= budget:
        return whole, False
    words, values = _terms(tool_name, arguments)
    lines: list[str] = []
    used = 0
    left_out: list[str] = []
    covered: list[str] = []

    def add(line: str, pointer: str | None = None) -> bool:
        nonlocal used
        if pointer is not None and any(pointer == c or pointer.startswith(c + "/") for c in covered):
            return True  # already shown inside a larger part
        if used + len(line) + 1 > budget:
            return False
        lines.append(line)
        used += len(line) + 1
        if pointer is not None:
            covered.append(pointer)
        return True

    outline = ", ".join(f"{_dumps(k)}: {_kind(v)}" for k, v in list(doc.items())[:60])
    add(f"top level: {{{outline}}}" + (f" (+{len(doc) - 60} more keys)" if len(doc) > 60 else ""))

    nodes = list(_walk(doc, "", 0))
    # Records that mention an argument value, as a key or as a scalar, in state order.
    records: list[str] = []
    if values:
        for pointer, key, value, _depth in nodes:
            if not pointer:
                continue
            hit = (key is not None and key.lower() in values) or (
                not isinstance(value, (dict, list)) and value is not None and str(value).strip().lower() in values
            )
            if hit:
                record = _record_of(doc, pointer)
                if record not in records:
                    records.append(record)
    for i, record in enumerate(records):
        if not add(f"{record} = {_shown(_get(doc, record))}", record):
            left_out.append(f"{len(records) - i} more records that mention the call's arguments")
            break

    # Collections whose name matches the tool or its arguments, shallowest first.
    touched = [
        (pointer, value)
        for pointer, key, value, depth in nodes
        if pointer and isinstance(value, (dict, list)) and key is not None and _words(key) & words and depth <= 3
    ]
    for pointer, value in touched:
        text = _dumps(value)
        if add(f"{pointer} = {text}", pointer):
            continue
        size = len(value)
        tail = list(value.items())[-3:] if isinstance(value, dict) else list(enumerate(value))[-3:]
        where = f"append with {pointer}/-" if isinstance(value, list) else f"add with {pointer}/<new key>"
        if not add(f"{pointer}: {_kind(value)} ({where}); the last ones follow"):
            left_out.append(pointer)
            continue
        for k, item in tail:
            add(f"{pointer}/{_escape(str(k))} = {_shown(item)}", f"{pointer}/{_escape(str(k))}")
        if size > 3:
            left_out.append(f"{size - 3} other entries of {pointer}")
    if not records and not touched:
        # Nothing named: the state's start, part by part, rather than a prefix cut mid-value.
        for key, value in doc.items():
            pointer = f"/{_escape(str(key))}"
            if not add(f"{pointer} = {_shown(value)}", pointer):
                left_out.append(f"{pointer} and the keys after it")
                break
    if left_out:
        lines.append("not shown: " + "; ".join(left_out[:8]))
    return "\n".join(lines), True
