"""What an evaluation measures, from the agent's own replies and the judge's verdict.

(a) valid tool-call rate: of the calls the agent tried to make, the share that the server's parser read, that name
    a tool of the agent's toolset and whose arguments validate against that tool's JSON Schema. A call the
    parser could not read is still an attempt: the ``hermes`` parser returns the whole reply as text when a
    ``<tool_call>`` block does not hold valid JSON (or has no opening tag), so every block left in the text is
    one failed call.
(b) code-check pass rate: of the episodes whose rubric has code checks, the share where every check passed.
(c) judge score: the verdict's weighted rubric score in [0, 1] (0 when the episode could not be judged).
Each per difficulty, with the counts they are shares of.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, Field

from synth.schemas.rubric import Rubric
from synth.schemas.verdict import Verdict
from synth.sim.tool_sim import argument_error
from synth.tool_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

CallOutcome = Literal["valid", "unparsed", "unknown_tool", "not_an_object", "schema_mismatch"]


class CallStats(BaseModel):
    """The agent's tool calls in one episode, by outcome."""

    attempted: int = 0
    valid: int = 0
    outcomes: dict[str, int] = Field(default_factory=dict, description="Attempts by outcome (CallOutcome).")
    agent_replies: int = 0

    def add(self, outcome: CallOutcome) -> None:
        self.attempted += 1
        self.valid += outcome == "valid"
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def merge(self, other: CallStats) -> None:
        self.attempted += other.attempted
        self.valid += other.valid
        self.agent_replies += other.agent_replies
        for k, v in other.outcomes.items():
            self.outcomes[k] = self.outcomes.get(k, 0) + v


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def call_outcome(name: str, arguments: Any, tools: list[dict[str, Any]]) -> CallOutcome:
    by_name = {t["function"]["name"]: t for t in tools}
    if name not in by_name:
        return "unknown_tool"
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    parsed, error = argument_error(by_name[name], raw)
    if parsed is None:
        return "not_an_object"
    return "schema_mismatch" if error else "valid"


def reply_calls(message: Any, tools: list[dict[str, Any]]) -> CallStats:
    """Score one agent reply (an OpenAI ``ChatCompletionMessage`` or its dict)."""
    stats = CallStats(agent_replies=1)
    for call in _get(message, "tool_calls") or []:
        fn = _get(call, "function")
        stats.add(call_outcome(_get(fn, "name") or "", _get(fn, "arguments"), tools))
    # A block the parser left in the text is a call that failed to parse; a model that drops one of the two tags
    # still tried to call, so the count is that of the more frequent tag.
    text = _get(message, "content") or ""
    for _ in range(max(text.count(TOOL_CALL_OPEN), text.count(TOOL_CALL_CLOSE))):
        stats.add("unparsed")
    return stats


class EpisodeScore(BaseModel):
    """One held-out episode's measurements."""

    calls: CallStats
    has_checks: bool = Field(description="The rubric has code checks (the episode counts for the pass rate).")
    checks_passed: bool
    judge_score: float
    accepted: bool = Field(description="The full decision rule passed (checks, required criteria, threshold).")
    errored: bool = Field(description="The episode ended on an error (unusable reply, context overflow).")


def expected_checks(rubric: Rubric | None) -> int:
    """Code checks the rubric asks for; the coding tests count as one (the judge runs them as one check)."""
    if rubric is None:
        return 0
    return len(rubric.checks) + (1 if rubric.python_tests else 0)


def episode_score(calls: CallStats, verdict: Verdict | None, rubric: Rubric | None, errored: bool) -> EpisodeScore:
    """A check that never ran (the judge skips the coding tests of an episode with no final answer) counts as
    failed: an episode that broke off must not leave the pass rate's denominator."""
    want = expected_checks(rubric)
    checks = verdict.checks if verdict else []
    passed = want > 0 and len(checks) >= want and all(c.passed for c in checks)
    return EpisodeScore(calls=calls, has_checks=want > 0, checks_passed=passed,
                        judge_score=verdict.score if verdict else 0.0, accepted=bool(verdict and verdict.passed),
                        errored=errored)


class Scores(BaseModel):
    """Aggregates over a group of episodes (one difficulty, or all)."""

    episodes: int = 0
    calls_attempted: int = 0
    calls_valid: int = 0
    valid_call_rate: float = Field(default=0.0, description="calls_valid / calls_attempted (0 when none tried).")
    episodes_with_valid_call: int = 0
    checked_episodes: int = Field(default=0, description="Episodes whose rubric has code checks.")
    checks_passed: int = 0
    pass_rate: float = Field(default=0.0, description="checks_passed / checked_episodes (0 when none).")
    judge_score: float = Field(default=0.0, description="Mean judge score over the episodes.")
    accepted: int = 0
    errored: int = 0
    call_outcomes: dict[str, int] = Field(default_factory=dict)


def aggregate(episodes: list[EpisodeScore]) -> Scores:
    s = Scores(episodes=len(episodes))
    outcomes: Counter[str] = Counter()
    for e in episodes:
        s.calls_attempted += e.calls.attempted
        s.calls_valid += e.calls.valid
        s.episodes_with_valid_call += e.calls.valid > 0
        s.checked_episodes += e.has_checks
        s.checks_passed += e.has_checks and e.checks_passed
        s.accepted += e.accepted
        s.errored += e.errored
        outcomes.update(e.calls.outcomes)
    s.valid_call_rate = s.calls_valid / s.calls_attempted if s.calls_attempted else 0.0
    s.pass_rate = s.checks_passed / s.checked_episodes if s.checked_episodes else 0.0
    s.judge_score = sum(e.judge_score for e in episodes) / len(episodes) if episodes else 0.0
    s.call_outcomes = dict(outcomes)
    return s
