"""Near-duplicate agents (MinHash over system-prompt shingles) and diversity statistics for the report."""

from __future__ import annotations

from collections import Counter

from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel, Field

from synth.schemas.records import AgentRecord
from synth.tools.dedup import minhash_of, word_shingles


class DiversityReport(BaseModel):
    agents: int
    duplicates: list[str] = Field(default_factory=list, description="Ids of agents dropped as near-duplicates.")
    roles: dict[str, int] = Field(default_factory=dict)
    tones: dict[str, int] = Field(default_factory=dict)
    domains: dict[str, int] = Field(default_factory=dict)
    distinct_tools: int = 0
    mean_toolset_size: float = 0.0


def minhash(text: str, num_perm: int = 128) -> MinHash:
    return minhash_of(word_shingles(text), num_perm)


def near_duplicates(texts: dict[str, str], threshold: float = 0.85) -> list[str]:
    """Ids whose text is a near-duplicate of an earlier id's (in the given order)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    dropped = []
    for key, text in texts.items():
        mh = minhash(text)
        if lsh.query(mh):
            dropped.append(key)
        else:
            lsh.insert(key, mh)
    return dropped


def diversity_report(agents: list[AgentRecord]) -> DiversityReport:
    ordered = sorted(agents, key=lambda a: a.id)
    dups = near_duplicates({a.id: a.system_prompt for a in ordered})
    tools = {t for a in agents for t in a.tool_ids}
    return DiversityReport(
        agents=len(agents),
        duplicates=dups,
        roles=dict(Counter(a.profile.get("role", "?") for a in agents)),
        tones=dict(Counter(a.profile.get("tone", "?") for a in agents)),
        domains=dict(Counter(a.domain for a in agents)),
        distinct_tools=len(tools),
        mean_toolset_size=round(sum(len(a.tool_ids) for a in agents) / max(1, len(agents)), 2),
    )
