"""Near-duplicate removal for tool specs: MinHash LSH over word shingles of name and description.

Synthetic evolution produces many tools that differ by a word; K2 deduplicates them before building agents.
The first spec of each near-duplicate cluster is kept (so pass real tools first to keep them over synthetic
copies), later ones are dropped with the id of the spec they duplicate and the estimated similarity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Literal

from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel

from synth.schemas.tools import ToolSpec

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def word_shingles(text: str, k: int = 3) -> set[str]:
    """Word k-grams of ``text`` (lower-cased, split on anything that is not a letter or digit)."""
    words = _WORD.findall(text.lower().replace("_", " "))
    return {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


@cache
def _seeded(num_perm: int) -> MinHash:
    return MinHash(num_perm=num_perm, seed=1)


def minhash_of(grams: Iterable[str], num_perm: int = 128) -> MinHash:
    """The one MinHash recipe (fixed seed, sorted input) for every near-duplicate check: tools and agents."""
    # The seed's permutations made once and the grams hashed in one batch: the same values as one update a gram
    # with fresh permutations, about 9 times faster (a registry check hashes tens of thousands of tools).
    seeded = _seeded(num_perm)
    m = MinHash(num_perm=num_perm, seed=1, permutations=seeded.permutations, scheme=seeded.scheme)
    m.update_batch([gram.encode() for gram in sorted(grams)])
    return m


def shingles(spec: ToolSpec, k: int = 3) -> set[str]:
    """Word k-grams of the spec's name (split on case and separators) and description, plus its words."""
    text = f"{_CAMEL.sub(' ', spec.function.name)} {spec.function.description}"
    # Single words as well: short descriptions would otherwise have one or two shingles and look unique.
    return word_shingles(text, k) | set(_WORD.findall(text.lower().replace("_", " ")))


def name_words(name: str) -> set[str]:
    return set(_WORD.findall(_CAMEL.sub(" ", name).lower().replace("_", " ")))


def name_similarity(a: ToolSpec, b: ToolSpec) -> float:
    """Jaccard of the words of two tool names (``getUserById`` and ``get_user`` share two of three)."""
    wa, wb = name_words(a.function.name), name_words(b.function.name)
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def minhash(spec: ToolSpec, num_perm: int = 128) -> MinHash:
    return minhash_of(shingles(spec), num_perm)


DropKind = Literal["name", "schema", "near_duplicate"]


class Dropped(BaseModel):
    spec: ToolSpec
    duplicate_of: str
    similarity: float
    reason: str
    kind: DropKind = "near_duplicate"


def normal_name(name: str) -> str:
    """The name as snake_case words (``getUserById`` and ``get_user_by_id`` are one name)."""
    return "_".join(_WORD.findall(_CAMEL.sub(" ", name).lower().replace("_", " ")))


def _canonical(schema: Any) -> Any:
    """A schema with what does not change a call left out (descriptions, titles, examples), keys sorted."""
    if isinstance(schema, dict):
        return {k: _canonical(v) for k, v in sorted(schema.items())
                if k not in ("description", "title", "examples", "default")}
    if isinstance(schema, list):
        items = [_canonical(v) for v in schema]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True)) if all(
            isinstance(v, str) for v in schema) else items
    return schema


def canonical_form(spec: ToolSpec) -> str:
    """The tool's call signature: the words of its name (any order) and its parameters without descriptions.

    Two tools with this form equal take the same arguments under the same name, whatever their prose says
    (``order_cancel(order_id)`` and ``cancelOrder(order_id)``)."""
    words = sorted(normal_name(spec.function.name).split("_"))
    return json.dumps([words, _canonical(spec.function.parameters)], sort_keys=True, separators=(",", ":"))


class DedupIndex:
    """Tools seen so far, growing one tool at a time, so deduplicating n tools costs O(n), not O(n^2).

    A new tool is a duplicate of one already in the index when it has the same name (snake_case words), the same
    canonical form (:func:`canonical_form`), or near the same name and description (MinHash LSH, see
    :func:`dedup_specs`). ``base`` tools (the real ones) are indexed without being checked: they are kept first.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, min_name_similarity: float = 0.3,
                 kinds: tuple[DropKind, ...] = ("name", "schema", "near_duplicate")) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.min_name_similarity, self.kinds = (threshold, num_perm,
                                                                              min_name_similarity, kinds)
        # LSH only proposes candidates; the MinHash estimate applies the real threshold, so a looser LSH threshold
        # costs a few comparisons and never drops more. Banded at the threshold itself, LSH misses a pair at 0.875
        # one time in five; at 0.8 of it, one pair at the threshold in twenty.
        self._lsh = MinHashLSH(threshold=min(threshold, 0.9) * 0.8, num_perm=num_perm)
        self._hashes: dict[str, MinHash] = {}
        self._specs: dict[str, ToolSpec] = {}
        self._names: dict[str, str] = {}
        self._forms: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._specs)

    def duplicate(self, spec: ToolSpec, m: MinHash | None = None) -> Dropped | None:
        """Why ``spec`` duplicates a tool in the index (None: it does not)."""
        if "name" in self.kinds and (key := self._names.get(normal_name(spec.function.name))):
            return self._dropped(spec, key, 1.0, "name", f"same name as {self._original(key)}")
        if "schema" in self.kinds and (key := self._forms.get(canonical_form(spec))):
            return self._dropped(spec, key, 1.0, "schema",
                                 f"same name words and parameters as {self._original(key)}")
        if "near_duplicate" not in self.kinds:
            return None
        m = m if m is not None else minhash(spec, self.num_perm)
        best: tuple[float, str] | None = None
        for key in self._lsh.query(m):
            sim = m.jaccard(self._hashes[key])
            if (sim >= self.threshold and (best is None or sim > best[0])
                    and name_similarity(spec, self._specs[key]) >= self.min_name_similarity):
                best = (sim, key)
        if best is None:
            return None
        sim, key = best
        return self._dropped(spec, key, sim, "near_duplicate",
                             f"near-duplicate of {self._original(key)} (estimated Jaccard {sim:.2f} >= "
                             f"{self.threshold}) on name+description shingles")

    def add(self, spec: ToolSpec, check: bool = True) -> Dropped | None:
        """Index ``spec`` unless (``check``) it duplicates one already there; returns why it was not."""
        m = minhash(spec, self.num_perm) if "near_duplicate" in self.kinds else None
        if check and (dropped := self.duplicate(spec, m)) is not None:
            return dropped
        key = f"{len(self._specs)}#{spec.id}"  # the count keeps keys unique even when two specs share an id
        if m is not None:
            self._lsh.insert(key, m)
            self._hashes[key] = m
        self._specs[key] = spec
        self._names.setdefault(normal_name(spec.function.name), key)
        self._forms.setdefault(canonical_form(spec), key)
        return None

    @staticmethod
    def _original(key: str) -> str:
        return key.split("#", 1)[1]

    def _dropped(self, spec: ToolSpec, key: str, sim: float, kind: DropKind, reason: str) -> Dropped:
        return Dropped(spec=spec, duplicate_of=self._original(key), similarity=round(sim, 3), reason=reason,
                       kind=kind)


def dedup_specs(
    specs: Sequence[ToolSpec],
    threshold: float = 0.8,
    num_perm: int = 128,
    min_name_similarity: float = 0.3,
) -> tuple[list[ToolSpec], list[Dropped]]:
    """Keep the first spec of each near-duplicate group (Jaccard estimate >= ``threshold``).

    Two specs are duplicates only if their names also share words (``min_name_similarity``): real servers
    repeat boilerplate across different tools ("List draft notes. Use this for a collection of resources; ..."
    and "List projects in a group. Use this for ...") that would otherwise look alike.
    """
    index = DedupIndex(threshold, num_perm, min_name_similarity, kinds=("near_duplicate",))
    kept: list[ToolSpec] = []
    dropped: list[Dropped] = []
    for spec in specs:
        if (why := index.add(spec)) is None:
            kept.append(spec)
        else:
            dropped.append(why)
    return kept, dropped
