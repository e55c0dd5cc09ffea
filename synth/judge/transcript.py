"""The trajectory as text: what the judge reads, and what its quoted evidence must be found in."""

from __future__ import annotations

import re
from typing import get_args

from synth.schemas.records import TrajectoryRecord
from synth.schemas.rubric import EvidenceSource
from synth.text import normalize

# The embedded model has a 4k context: long tool outputs are cut so the criteria still fit after them.
MESSAGE_CHARS = 600
TRANSCRIPT_CHARS = 5000

_ELLIPSIS = re.compile(r"\.\.\.|…")


def sourced_lines(traj: TrajectoryRecord) -> list[tuple[EvidenceSource, str]]:
    """One line per message with the part of the transcript it belongs to (system prompt left out: it is the
    agent's setup, not its behaviour)."""
    names = {}
    lines: list[tuple[EvidenceSource, str]] = []
    for msg in traj.messages:
        if msg.role == "system":
            continue
        if msg.role == "assistant":
            if (msg.content or "").strip():
                lines.append(("assistant", f"[assistant] {msg.content.strip()}"))
            for tc in msg.tool_calls or []:
                names[tc.id] = tc.function.name
                lines.append(("assistant_call", f"[assistant calls {tc.function.name}] {tc.function.arguments}"))
        elif msg.role == "tool":
            name = msg.name or names.get(msg.tool_call_id or "", "tool")
            lines.append(("tool", f"[tool {name} result] {(msg.content or '').strip()}"))
        else:
            lines.append(("user", f"[{msg.role}] {(msg.content or '').strip()}"))
    return lines


def message_lines(traj: TrajectoryRecord) -> list[str]:
    """One line per message, as the judge reads them."""
    return [line for _, line in sourced_lines(traj)]


def evidence_haystacks(traj: TrajectoryRecord) -> dict[EvidenceSource | None, str]:
    """Normalised text to find quotes in: the whole transcript (key None) and each part alone."""
    lines = sourced_lines(traj)
    out: dict[EvidenceSource | None, str] = {None: normalize("\n".join(line for _, line in lines))}
    for source in get_args(EvidenceSource):
        out[source] = normalize("\n".join(line for s, line in lines if s == source))
    return out


def render_transcript(
    traj: TrajectoryRecord, message_chars: int = MESSAGE_CHARS, total_chars: int = TRANSCRIPT_CHARS
) -> str:
    """The transcript for the prompt: long messages cut, and middle messages dropped past ``total_chars``."""
    lines = [
        ln if len(ln) <= message_chars else ln[:message_chars] + " [...cut]" for ln in message_lines(traj)
    ]
    if sum(len(ln) + 1 for ln in lines) <= total_chars:
        return "\n".join(lines)
    # Keep the opening request and as much of the end (where the outcome is) as fits.
    head, tail, size = lines[:1], [], len(lines[0]) + 1 if lines else 0
    for ln in reversed(lines[1:]):
        if size + len(ln) + 1 > total_chars - 40:
            break
        tail.insert(0, ln)
        size += len(ln) + 1
    dropped = len(lines) - len(head) - len(tail)
    return "\n".join([*head, f"[... {dropped} message(s) omitted ...]", *tail])


def evidence_found(evidence: str, haystack: str, min_chars: int) -> tuple[bool, str]:
    """Whether ``evidence`` is quoted from ``haystack``; an elided quote ("a ... b") must match by pieces.

    Returns (found, why-not). ``haystack`` must already be normalized.
    """
    quote = normalize(evidence).strip("\"'“”‘’`")
    pieces = [p.strip(" \"'“”‘’`") for p in _ELLIPSIS.split(quote)]
    pieces = [p for p in pieces if p]
    if sum(len(p) for p in pieces) < min_chars:
        return False, f"evidence too short to verify ({evidence!r})"
    missing = [p for p in pieces if p not in haystack]
    if missing:
        return False, f"evidence not found in the trajectory: {missing[0][:80]!r}"
    return True, ""
