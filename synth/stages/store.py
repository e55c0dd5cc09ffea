"""A stage's rows on disk: an append-only journal while it runs, one Parquet file when it is done.

Every finished row is appended to a JSONL journal and flushed to the OS at once, so ``kill -9`` loses only the
rows in flight; a torn last line is ignored on read. When every planned row is present, the rows are written to
``data.parquet`` (via a temporary file and a rename) and the journal is removed. Resume = read both.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from synth.errors import writing

R = TypeVar("R", bound=BaseModel)
DATA = "data.parquet"


class StageStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.journal_dir = directory / "journal"

    @property
    def parquet(self) -> Path:
        return self.dir / DATA

    def new_journal(self) -> Path:
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        return self.journal_dir / f"part-{uuid.uuid4().hex[:12]}.jsonl"

    def _journal_lines(self) -> Iterator[str]:
        if not self.journal_dir.exists():
            return
        for path in sorted(self.journal_dir.glob("*.jsonl")):
            with path.open() as fh:
                for line in fh:
                    if line.endswith("\n"):  # a line without its newline was torn by a kill
                        yield line

    def raw_rows(self) -> Iterator[dict]:
        """Every stored row as ``{"id", "ok", "record", "failures"}`` dicts, one per id: its finished row if
        any attempt finished, else its latest error row. ``failures`` counts the attempts that ended in an error
        (kept in Parquet across compactions), so re-runs can retry a failed row a bounded number of times. A
        finished row in the journal replaces a finished one in Parquet: it was made again because what the older
        one described was gone (``Stage.lost``)."""
        best: dict[str, dict] = {}
        compacted: set[str] = set()
        failures: dict[str, int] = {}
        if self.parquet.exists():
            for row in pq.read_table(self.parquet).to_pylist():
                failures[row["id"]] = row.get("failures") or (0 if row["ok"] else 1)  # older files lack the column
                best[row["id"]] = row
                compacted.add(row["id"])
        for line in self._journal_lines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rid = row["id"]
            if not row["ok"]:
                failures[rid] = failures.get(rid, 0) + 1
            if rid not in best or not best[rid]["ok"] or (row["ok"] and rid in compacted):
                best[rid] = row
                compacted.discard(rid)
        for rid, row in best.items():
            yield {**row, "failures": failures.get(rid, 0)}

    def done_ids(self, max_failures: int | None = None) -> set[str]:
        """Ids not to run again: finished rows, and failed ones (all of them, or those that failed
        ``max_failures`` times when given)."""
        return {row["id"] for row in self.raw_rows()
                if row["ok"] or max_failures is None or row["failures"] >= max_failures}

    def read(self, model: type[R]) -> list[R]:
        return [model.model_validate_json(row["record"]) for row in self.raw_rows()]

    def count_lines(self) -> int:
        """Rows in the journal: cheap enough to poll for a progress bar."""
        total = 0
        if self.journal_dir.exists():
            for path in self.journal_dir.glob("*.jsonl"):
                with path.open("rb") as fh:
                    total += sum(1 for _ in fh)
        return total

    def compact(self, keep: set[str] | None = None) -> int:
        """Write the rows (only ids in ``keep``, when given) to ``data.parquet`` and drop the journal.

        Rows outside ``keep`` were planned by an earlier config or input (fewer agents, a changed registry): the
        next stage must not read them. Returns the row count.
        """
        rows = sorted((r for r in self.raw_rows() if keep is None or r["id"] in keep), key=lambda r: r["id"])
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{DATA}.{uuid.uuid4().hex[:8]}.tmp"
        table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
        try:
            with writing(self.parquet, "the stage's rows; its journal is kept until this succeeds"):
                pq.write_table(table, tmp)
                os.replace(tmp, self.parquet)
        finally:
            tmp.unlink(missing_ok=True)  # a half-written file would hold the space a retry needs
        if self.journal_dir.exists():
            for path in self.journal_dir.glob("*.jsonl"):
                path.unlink()
        return len(rows)


ROW_SCHEMA = pa.schema([("id", pa.string()), ("ok", pa.bool_()), ("error_kind", pa.string()),
                        ("record", pa.string()), ("failures", pa.int64())])


PLACEMENT_FIELDS = ("node_id",)
"""Row fields that say where a row was made, not what it holds: no id or digest may depend on them, or two
identical runs on other nodes would differ."""
_CACHED = {"cached_calls": "calls", "cached_prompt_tokens": "prompt_tokens",
           "cached_completion_tokens": "completion_tokens"}


def _fold_cached(value: Any) -> bool:
    """Count calls answered from the call cache as calls (in place): whether a call was paid in this run or in
    an interrupted one is history, not content. Returns whether anything changed."""
    changed = False
    if isinstance(value, dict):
        if any(value.get(k) for k in _CACHED):
            for cached, paid in _CACHED.items():
                value[paid] = value.get(paid, 0) + value.get(cached, 0)
                value[cached] = 0
            changed = True
        for item in value.values():
            changed = _fold_cached(item) or changed
    elif isinstance(value, list):
        for item in value:
            changed = _fold_cached(item) or changed
    return changed


def content_of(record_json: str) -> str:
    """A row's record as digests hash it: without its placement fields, and with calls answered from the call
    cache counted as calls, so a run resumed after a kill hashes as one never killed. A record with nothing to
    change is returned as it is, so digests of rows stored before do not change."""
    record = json.loads(record_json)
    placed = any(record.get(name) is not None for name in PLACEMENT_FIELDS)
    if not _fold_cached(record) and not placed:
        return record_json
    for name in PLACEMENT_FIELDS:
        record[name] = None
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)  # as pydantic writes it


def encode(record: BaseModel) -> dict:
    error = getattr(record, "error", None)
    return {"id": record.id, "ok": error is None, "error_kind": error.kind if error else None,  # type: ignore[attr-defined]
            "record": record.model_dump_json(), "failures": 0 if error is None else 1}


class JournalWriter:
    """Appends rows one line at a time; each write is flushed so a killed process keeps what it finished."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with writing(path, "the stage's journal of finished rows"):
            self._fh = path.open("a", buffering=1)

    def write(self, record: BaseModel) -> None:
        with writing(self.path, "the stage's journal of finished rows"):
            self._fh.write(json.dumps(encode(record)) + "\n")
            self._fh.flush()

    def write_many(self, records: Iterable[BaseModel]) -> None:
        for record in records:
            self.write(record)

    def close(self) -> None:
        with writing(self.path, "the stage's journal of finished rows"):  # the buffer's flush can meet it too
            self._fh.close()
