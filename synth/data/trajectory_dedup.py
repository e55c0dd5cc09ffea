"""Near-duplicate trajectories: MinHash LSH over word shingles of a normalised transcript, inside a run and
against the trajectories of earlier runs (an index kept beside each dataset).

The normalised transcript holds what makes two episodes teach the same thing: the user turns, and each tool call's
name and argument values, in order. It leaves out the system prompt (one per agent, shared by all its tasks), ids
(call ids, row ids), timings, tool results (a clock's answer differs on every run) and the agent's prose. The
shingles and the MinHash recipe are the tools' (``synth.tools.dedup``), so a threshold means the same thing there.

Only ``train`` is deduplicated. A train row is dropped when it is a near-copy of a held-out row (of this run or of
an earlier index), of a row of an earlier index, or of a train row of this run kept before it; held-out rows are
never dropped, and a dropped row goes to no other split. Train rows are visited highest judge score first, then by
row id, so what is kept depends on the rows only, not on the order they came in.

The index (``dataset/dedup/``): ``index.json`` (what the signatures were made with) and ``signatures.npz`` (row
ids, their split, one MinHash signature per row), for the kept train rows and the held-out rows; ``dropped.jsonl``
lists each dropped row with the row it copies. A dataset folder without an index (built before deduplication, or
downloaded from the Hub: ``data/<split>-*.parquet``) is indexed from its rows when a later run checks against it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from pydantic import BaseModel, Field

from synth.errors import SynthError
from synth.tools.dedup import minhash_of, word_shingles

NUM_PERM = 128
SHINGLE = 3
SEED = 1  # minhash_of's seed and datasketch's default scheme: stored values compare only under the same
SCHEME = "affine32"
VERSION = 1
"""Bump when the normalised form changes: an index made by another version is rebuilt from its dataset's rows."""
INDEX_DIR = "dedup"
META = "index.json"
SIGNATURES = "signatures.npz"
DROPPED = "dropped.jsonl"
SPLITS = ("train", "heldout")
Reason = Literal["within_run", "earlier", "heldout"]


class DedupIndexError(SynthError):
    """An index to deduplicate against that cannot be read."""

    hint = ("point dataset.dedup.runs / dataset.dedup.indexes at a built dataset folder (one holding dedup/ or "
            "data/<split>-*.parquet), or remove the entry")


class IndexMeta(BaseModel):
    """``index.json``: what the signatures were made with; an index of other settings is not comparable."""

    version: int = VERSION
    num_perm: int = NUM_PERM
    shingle: int = SHINGLE
    seed: int = SEED
    scheme: str = SCHEME
    rows: int = 0
    source: str = Field(default="", description="The run (or folder) whose rows these are.")


class Dropped(BaseModel):
    """A train row left out as a near-copy, and of what."""

    id: str
    duplicate_of: str = Field(description="Row id of the row it copies.")
    similarity: float = Field(description="Estimated Jaccard similarity of the two normalised transcripts.")
    reason: Reason = Field(description="within_run: a train row of this run kept before it; earlier: a train row "
                           "of an earlier index; heldout: a held-out row (of this run or an earlier index).")
    source: str = Field(description="Where the copied row is: 'this run' or the earlier index's name.")


def _leaves(value: Any) -> list[str]:
    """A JSON value's scalars in key order (argument values without their names: the tool fixes the names)."""
    if isinstance(value, dict):
        return [leaf for key in sorted(value) for leaf in _leaves(value[key])]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [] if value is None else [str(value)]


def normalise(messages: Iterable[dict[str, Any]]) -> str:
    """The transcript deduplication compares: user turns, tool names and argument values, in order."""
    parts: list[str] = []
    for msg in messages:
        if msg.get("role") == "user" and msg.get("content"):
            parts.append(f"user {msg['content']}")
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            args = fn.get("arguments")
            if isinstance(args, str):
                # Arguments the model wrote as broken JSON: their words still count, as they are.
                with contextlib.suppress(json.JSONDecodeError):
                    args = json.loads(args or "{}")
            parts.append(" ".join(["call", str(fn.get("name", "")), *_leaves(args)]))
    return "\n".join(parts)


def signature(messages: Iterable[dict[str, Any]]) -> MinHash:
    """The tools' MinHash recipe (seed 1, sorted grams) over the transcript's word shingles."""
    return minhash_of(word_shingles(normalise(messages), SHINGLE), NUM_PERM)


class DedupIndex:
    """Signatures of a dataset's rows (kept train rows and held-out rows), by row id and split."""

    def __init__(self, source: str, ids: Sequence[str], splits: Sequence[str], hashes: np.ndarray) -> None:
        self.source, self.ids, self.splits, self.hashes = source, list(ids), list(splits), hashes

    @classmethod
    def of(cls, source: str, rows: Iterable[tuple[str, str, MinHash]]) -> DedupIndex:
        """From ``(row id, split, signature)``."""
        items = list(rows)
        empty = np.zeros((0, NUM_PERM), dtype=MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).hashvalues.dtype)
        hashes = np.stack([m.hashvalues for _, _, m in items]) if items else empty
        return cls(source, [i for i, _, _ in items], [s for _, s, _ in items], hashes)

    @classmethod
    def of_rows(cls, source: str, rows: Iterable[dict[str, Any]]) -> DedupIndex:
        """From dataset rows (``id``, ``heldout``, ``messages``)."""
        return cls.of(source, ((r["id"], "heldout" if r.get("heldout") else "train", signature(r["messages"]))
                               for r in rows))

    def __len__(self) -> int:
        return len(self.ids)

    def minhash(self, i: int) -> MinHash:
        # Lean: the stored values alone, without making the seed's permutations again for every row.
        return LeanMinHash(seed=SEED, hashvalues=self.hashes[i], scheme=SCHEME)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / SIGNATURES, ids=np.array(self.ids, dtype=str), splits=np.array(self.splits, dtype=str),
                 hashes=self.hashes)
        (folder / META).write_text(IndexMeta(rows=len(self), source=self.source).model_dump_json(indent=2))

    @classmethod
    def load(cls, folder: Path, source: str | None = None) -> DedupIndex:
        """The index in ``folder`` (``dedup/`` itself or the dataset folder holding it); a dataset folder without
        a comparable index is indexed from its Parquet rows."""
        name = source or str(folder)
        if not folder.exists():
            raise DedupIndexError(f"no dataset has been built in {folder.parent} (its rows are to be checked for "
                                  "near-duplicates)")
        stale = None
        for where in (folder, folder / INDEX_DIR):
            if not (where / META).exists():
                continue
            try:
                meta = IndexMeta.model_validate_json((where / META).read_text())
                if meta != IndexMeta(rows=meta.rows, source=meta.source):
                    stale = where  # made with another normalisation or recipe: not comparable, index the rows
                    break
                with np.load(where / SIGNATURES, allow_pickle=False) as z:
                    return cls(name, z["ids"].tolist(), z["splits"].tolist(), z["hashes"])
            except (OSError, ValueError, KeyError) as exc:
                raise DedupIndexError(f"the deduplication index in {where} cannot be read: {exc}") from exc
        if (folder / "data").is_dir():
            return cls.of_rows(name, _parquet_rows(folder / "data"))
        if stale is not None:
            raise DedupIndexError(f"the deduplication index in {stale} was made with other settings and {folder} "
                                  "holds no dataset rows (data/<split>-*.parquet) to index again")
        raise DedupIndexError(f"{folder} holds no deduplication index (dedup/{META}) and no dataset rows "
                              "(data/<split>-*.parquet) to index")


def _parquet_rows(data: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = []
    for split in SPLITS:
        for f in sorted(data.glob(f"{split}-*.parquet")):
            table = pq.read_table(f, columns=["id", "messages"])
            rows += [{**r, "heldout": split == "heldout"} for r in table.to_pylist()]
    return rows


def dedup_train(train: Sequence[dict[str, Any]], heldout: Sequence[dict[str, Any]],
                earlier: Sequence[DedupIndex] = (), threshold: float = 0.9,
                source: str = "this run") -> tuple[list[dict[str, Any]], list[Dropped], DedupIndex]:
    """``train`` without its near-copies (estimated Jaccard >= ``threshold``) of a held-out row, of a row of an
    ``earlier`` index, or of a train row kept before it; the dropped rows; the index of what is kept (kept train
    rows and every held-out row). Kept rows are in ``train``'s order."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    # LSH only proposes candidates: a looser threshold than the real one misses fewer near the boundary, and the
    # signature estimate below decides. datasketch cannot band for thresholds near 1.
    lsh = MinHashLSH(threshold=max(0.05, min(threshold, 0.9) - 0.1), num_perm=NUM_PERM)
    where: dict[str, tuple[Reason, str, str, MinHash]] = {}  # key -> (reason, source, row id, signature)

    def add(key: str, reason: Reason, src: str, row_id: str, m: MinHash) -> None:
        lsh.insert(key, m)
        where[key] = (reason, src, row_id, m)

    held = [(r["id"], signature(r["messages"])) for r in sorted(heldout, key=lambda r: r["id"])]
    for i, (row_id, m) in enumerate(held):
        add(f"h#{i}", "heldout", source, row_id, m)
    for n, index in enumerate(earlier):
        for i, (row_id, split) in enumerate(zip(index.ids, index.splits, strict=True)):
            add(f"e{n}#{i}", "heldout" if split == "heldout" else "earlier", index.source, row_id, index.minhash(i))
    rank: dict[Reason, int] = {"heldout": 0, "earlier": 1, "within_run": 2}
    dropped: list[Dropped] = []
    kept_ids: set[str] = set()
    kept_sigs: dict[str, MinHash] = {}
    order = sorted(train, key=lambda r: (-(r.get("score") or 0.0), r["id"]))
    for i, row in enumerate(order):
        m = signature(row["messages"])
        best: tuple[int, float, str] | None = None  # (reason rank, -similarity, key): the smallest wins
        for key in lsh.query(m):
            sim = m.jaccard(where[key][3])
            if sim >= threshold and (cand := (rank[where[key][0]], -sim, key)) < (best or (9, 0.0, "")):
                best = cand
        if best is not None:
            reason, src, row_id, _ = where[best[2]]
            dropped.append(Dropped(id=row["id"], duplicate_of=row_id, similarity=round(-best[1], 3), reason=reason,
                                   source=src))
            continue
        add(f"t#{i}", "within_run", source, row["id"], m)
        kept_ids.add(row["id"])
        kept_sigs[row["id"]] = m
    kept = [r for r in train if r["id"] in kept_ids]
    index = DedupIndex.of(source, [*((r["id"], "train", kept_sigs[r["id"]]) for r in kept),
                                   *((row_id, "heldout", m) for row_id, m in held)])
    return kept, dropped, index


def write_dropped(folder: Path, dropped: Sequence[Dropped]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DROPPED).write_text("".join(d.model_dump_json() + "\n" for d in dropped))
