"""Every answered model request, kept so that a resumed or repeated run never pays for it again.

Rows are journaled only when an episode ends, so a run killed mid-stage used to lose every call its unfinished
rows had made, and the re-run sent them all again. Here each reply is appended (and fsynced) to a JSONL file the
moment it arrives, before the row that uses it can be written; a later run of the same stage reads the files and
answers the same request from them.

The key is a digest of what decides the answer (the served model, messages, tools, response schema, sampling
parameters, seed), of the scope it was made in (the row and its attempt, set by the runner through
``call_scope``) and of its occurrence in that scope: two identical requests of one row (best-of-n samples
without a seed, a structured retry) are two calls, and each gets its own recorded answer back. A row that
*failed* is tried again under a new attempt, hence a new scope: its calls are made afresh, not replayed.

One file per process (``part-<id>.jsonl``), never shared between writers, so lines cannot interleave on a
filesystem shared by cluster nodes; a torn last line (a kill mid-write) is skipped on read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import uuid
from collections import Counter
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from synth.errors import writing

call_scope: ContextVar[str] = ContextVar("synth_call_scope", default="")
"""Where a call is made (the runner sets the row id and attempt around each row); part of every key."""

_NOT_DECIDING = ("timeout",)  # request options that do not change the answer (the deadline grows on retries)


class CallCache:
    """Replies by request key, loaded from ``directory`` and appended to it."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._known: dict[str, dict[str, Any]] = {}
        self._seen: Counter[tuple[str, str]] = Counter()
        self._fd: int | None = None
        self._path = directory / f"part-{uuid.uuid4().hex[:12]}.jsonl"  # this process's file, made on first put
        self._lock = asyncio.Lock()
        self.hits = 0
        self.stored = 0
        if directory.is_dir():
            for path in sorted(directory.glob("part-*.jsonl")):
                self._load(path)

    def _load(self, path: Path) -> None:
        with path.open() as fh:
            for line in fh:
                if not line.endswith("\n"):
                    continue  # torn by a kill mid-write
                try:
                    entry = json.loads(line)
                    self._known[entry["key"]] = entry["body"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue

    def __len__(self) -> int:
        return len(self._known)

    def key(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
        """The key of the next call with these inputs in the current scope (each call takes the next one)."""
        deciding = {k: v for k, v in params.items() if k not in _NOT_DECIDING}
        base = hashlib.sha256(json.dumps({"model": model, "messages": messages, "params": deciding},
                                         sort_keys=True, default=str).encode()).hexdigest()
        scope = call_scope.get()
        occurrence = self._seen[(scope, base)]
        self._seen[(scope, base)] += 1
        return hashlib.sha256(f"{scope}\0{base}\0{occurrence}".encode()).hexdigest()[:32]

    def get(self, key: str) -> dict[str, Any] | None:
        body = self._known.get(key)
        if body is not None:
            self.hits += 1
        return body

    async def put(self, key: str, body: dict[str, Any]) -> None:
        """Append one reply and fsync it (off the event loop) before the caller may use it."""
        line = (json.dumps({"key": key, "body": body}, ensure_ascii=False) + "\n").encode()
        what = "the run's call cache of paid replies"
        async with self._lock:  # whole lines, one after another, from this process only
            with writing(self._path, what):
                if self._fd is None:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                fd = self._fd
                _write_all(fd, line)  # into the page cache: fast, and kill -9 no longer loses it
        # The fsync (against a power loss) runs outside the lock: concurrent calls' syncs overlap, and one sync
        # covers every line written before it. Serialised, they halved the throughput of a 32-stream shard.
        with writing(self._path, what):
            await asyncio.to_thread(os.fsync, fd)
        self._known[key] = body
        self.stored += 1

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
