"""Growing the synthetic registry to a target size through the domain tree: categories -> domains -> subdomains
-> tools.

The tools stage grows in rounds (``synth tools grow``). A round plans ``slots`` subdomains for every seed leaf
(category, domain); each slot is one work item: the model proposes a new subdomain (told the ones the leaf got in
earlier rounds) and evolves tools for it. After the round every tool grown so far is checked (:func:`select`):
a valid schema, its domain path, its error cases, and no duplicate of a real tool or of a synthetic one kept
before it (same name, same canonical form, near-same name and description). The next round plans as many new
slots as the missing tools need at the share of kept tools the last round saw.

An item's id depends only on its leaf, its slot and the sizes, and what a round plans depends only on the state
the previous round left (``grow.json``), so a killed round resumes with exactly the items it had planned.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from synth.schemas.tools import ToolSpec
from synth.tools.dedup import DedupIndex, Dropped
from synth.tools.validate import check_spec

STATE = "grow.json"
FIRST_YIELD = 0.9
"""The share of grown tools the first round expects to keep, before any round has measured it."""
MIN_YIELD = 0.05
"""The smallest kept share a round plans for, so a round that kept almost nothing does not plan thousands."""
MARGIN = 1.05
"""Plan a little more than the missing count needs: a round that falls just short costs a round of its own."""
MAX_AVOID = 30
"""Subdomains named to the model as already there: enough to steer it away, short enough for a small context."""


class RoundState(BaseModel):
    slots: int = Field(description="Subdomain slots per leaf planned so far.")
    rows: int = Field(description="Items that produced tools so far.")
    kept: int = Field(description="Synthetic tools kept after checks and deduplication.")


class GrowState(BaseModel):
    """What each finished round left: the plan of the next round is a function of this alone."""

    rounds: list[RoundState] = Field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> GrowState:
        return cls.model_validate_json(path.read_text()) if path.exists() else cls()

    @property
    def slots(self) -> int:
        return self.rounds[-1].slots if self.rounds else 0

    @property
    def kept(self) -> int:
        return self.rounds[-1].kept if self.rounds else 0

    def kept_yield(self, per_item: int) -> float:
        """Tools kept per item in the last round that made any (the share falls as the registry fills)."""
        steps = [(a, b) for a, b in zip([RoundState(slots=0, rows=0, kept=0), *self.rounds], self.rounds,
                                        strict=False) if b.rows > a.rows]
        if not steps:
            return per_item * FIRST_YIELD
        before, after = steps[-1]
        return max((after.kept - before.kept) / (after.rows - before.rows), per_item * MIN_YIELD)


def slots_for(state: GrowState, target: int, leaves: int, per_item: int) -> int:
    """Slots per leaf to plan so that about ``target`` tools are kept (never fewer than already planned)."""
    if leaves < 1:
        raise ValueError("growing needs at least one domain leaf")
    missing = target - state.kept
    if missing <= 0:
        return state.slots
    items = math.ceil(missing * MARGIN / state.kept_yield(per_item))
    return state.slots + max(1, math.ceil(items / leaves))


class Rejected(BaseModel):
    tool: str
    domain_path: list[str]
    reasons: list[str]


class Selection(BaseModel):
    """What :func:`select` kept, dropped as duplicates and rejected as invalid, in the order the tools came."""

    kept: list[ToolSpec] = Field(default_factory=list)
    dropped: list[Dropped] = Field(default_factory=list)
    rejected: list[Rejected] = Field(default_factory=list)


def problems(spec: ToolSpec) -> list[str]:
    """Why a synthetic tool cannot enter the registry: its schema, its domain path, its error cases."""
    found = check_spec(spec)
    if len(spec.provenance.domain_path) < 3:
        found.append(f"domain path {spec.provenance.domain_path} is not category > domain > subdomain")
    if not [e for e in spec.errors if e.strip()]:
        found.append("no error cases")
    return found


def select(real: Iterable[ToolSpec], grown: Iterable[ToolSpec], threshold: float = 0.8) -> Selection:
    """Check ``grown`` in order against the real tools and against the grown ones kept before each: O(n) in all
    (an index grows one tool at a time: hash maps for names and forms, MinHash LSH for descriptions)."""
    index = DedupIndex(threshold=threshold)
    for spec in real:
        index.add(spec, check=False)
    out = Selection()
    for spec in grown:
        if found := problems(spec):
            out.rejected.append(Rejected(tool=spec.function.name, domain_path=spec.provenance.domain_path,
                                         reasons=found))
        elif (why := index.add(spec)) is not None:
            out.dropped.append(why)
        else:
            out.kept.append(spec)
    return out


class GrowStats(BaseModel):
    """Counts per level of the domain tree, and what the checks took out."""

    categories: int
    domains: int
    subdomains: int
    tools: int
    generated: int
    dropped: dict[str, int] = Field(description="Duplicates dropped, by kind: name, schema, near_duplicate.")
    schema_rejects: int
    reject_reasons: dict[str, int] = Field(default_factory=dict)
    per_category: dict[str, int] = Field(default_factory=dict)
    duplicate_of_real: int = Field(default=0, description="Dropped tools whose original is a real tool.")


def _reason_kind(reason: str) -> str:
    for prefix, kind in (("no error cases", "no_error_cases"), ("domain path", "domain_path"), ("bad name", "name"),
                         ("missing description", "description")):
        if reason.startswith(prefix):
            return kind
    return "schema"


def stats(selection: Selection, real_ids: set[str]) -> GrowStats:
    kept: Sequence[ToolSpec] = selection.kept
    paths = [tuple(s.provenance.domain_path) for s in kept]
    reasons: Counter[str] = Counter(_reason_kind(reason) for r in selection.rejected for reason in r.reasons)
    return GrowStats(
        categories=len({p[:1] for p in paths}), domains=len({p[:2] for p in paths}),
        subdomains=len({p[:3] for p in paths}), tools=len(kept),
        generated=len(kept) + len(selection.dropped) + len(selection.rejected),
        dropped=dict(Counter(d.kind for d in selection.dropped)), schema_rejects=len(selection.rejected),
        reject_reasons=dict(reasons), per_category=dict(sorted(Counter(p[0] for p in paths if p).items())),
        duplicate_of_real=sum(d.duplicate_of in real_ids for d in selection.dropped),
    )
