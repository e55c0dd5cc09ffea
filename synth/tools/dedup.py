"""Near-duplicate removal for tool specs: MinHash LSH over word shingles of name and description.

Synthetic evolution produces many tools that differ by a word; K2 deduplicates them before building agents.
The first spec of each near-duplicate cluster is kept (so pass real tools first to keep them over synthetic
copies), later ones are dropped with the id of the spec they duplicate and the estimated similarity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel

from synth.schemas.tools import ToolSpec

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class Dropped(BaseModel):
    spec: ToolSpec
    duplicate_of: str
    similarity: float
    reason: str


def word_shingles(text: str, k: int = 3) -> set[str]:
    """Word k-grams of ``text`` (lower-cased, split on anything that is not a letter or digit)."""
    words = _WORD.findall(text.lower().replace("_", " "))
    return {" ".join(words[i : i + k]) for i in range(max(1, len(words) - k + 1))}


def minhash_of(grams: Iterable[str], num_perm: int = 128) -> MinHash:
    """The one MinHash recipe (fixed seed, sorted input) for every near-duplicate check: tools and agents."""
    m = MinHash(num_perm=num_perm, seed=1)
    for gram in sorted(grams):
        m.update(gram.encode())
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
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    # LSH only proposes candidates (datasketch cannot band for thresholds near 1); the MinHash estimate below
    # applies the real threshold, so a looser LSH threshold costs a few comparisons and never drops more.
    lsh = MinHashLSH(threshold=min(threshold, 0.9), num_perm=num_perm)
    hashes: dict[str, MinHash] = {}
    by_key: dict[str, ToolSpec] = {}
    kept: list[ToolSpec] = []
    dropped: list[Dropped] = []
    for index, spec in enumerate(specs):
        m = minhash(spec, num_perm)
        best: tuple[float, str] | None = None
        for key in lsh.query(m):
            sim = m.jaccard(hashes[key])
            if (
                sim >= threshold
                and (best is None or sim > best[0])
                and name_similarity(spec, by_key[key]) >= min_name_similarity
            ):
                best = (sim, key)
        if best is not None:
            sim, key = best
            original = key.split("#", 1)[1]
            dropped.append(
                Dropped(
                    spec=spec,
                    duplicate_of=original,
                    similarity=round(sim, 3),
                    reason=f"near-duplicate of {original} (estimated Jaccard {sim:.2f} >= "
                    f"{threshold}) on name+description shingles",
                )
            )
            continue
        key = f"{index}#{spec.id}"  # index keeps keys unique even when two specs share an id
        lsh.insert(key, m)
        hashes[key] = m
        by_key[key] = spec
        kept.append(spec)
    return kept, dropped
