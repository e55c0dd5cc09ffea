"""Judge critic examples through a served model, as the judge stage asks: the judge's prompt with one criterion,
the judge's reply schema (``synth.judge.judge.judge_json_schema``), greedy, and the evidence rule (a positive
score whose quote is not in the criterion's parts of the transcript counts as 0).

The score of a verdict is its probability of "pass": the score token's distribution over 0/1/2 (from the
server's log-probabilities; 1 counts half), set to 0 when the reply gives no quote or its quote is not found,
since the judge stage would zero that score too. Without log-probabilities it is score / 2.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from synth.critic.data import CriticExample
from synth.judge.judge import EVIDENCE_MIN_CHARS, SUMMARY_TOKENS, TOKENS_PER_CRITERION, judge_json_schema
from synth.judge.transcript import evidence_found
from synth.llm.client import EndpointUnavailable, LLMPool, ReplyInvalid, closed_schema
from synth.schemas.verdict import JudgeReply

SCORE_KEY = '"score":'
ENDPOINT_ATTEMPTS = 4
ENDPOINT_WAIT_S = 60.0
DIGITS = ("0", "1", "2")


class Judgment(BaseModel):
    """One judge verdict on one critic example, beside the code check's outcome."""

    id: str
    criterion_id: str
    check_kind: str
    passed: bool = Field(description="The code check's verified outcome (the reference).")
    score: int | None = Field(default=None, description="The judge's score; None: no usable reply.")
    evidence: str = ""
    quote_found: bool | None = Field(default=None, description="Whether a positive score's quote is in the "
                                     "criterion's parts of the transcript; None for a score of 0.")
    p_pass: float = Field(default=0.0, description="The verdict's probability of pass, after the evidence rule.")
    p_pass_unchecked: float = Field(default=0.0, description="The same before the evidence rule.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def predicted(self) -> bool:
        """What calibration counts: a score above 0 once the evidence rule has run."""
        return bool(self.score and self.quote_found)


def score_distribution(logprobs: Any) -> dict[str, float] | None:
    """P(0), P(1), P(2) at the score token of a reply (normalised over the three), from the chat completion's
    ``logprobs.content``; None when the reply carries none or no score token is found."""
    content = getattr(logprobs, "content", None) or []
    text = ""
    for entry in content:
        if text.endswith(SCORE_KEY) and entry.token.strip() in DIGITS:
            probs = {d: 0.0 for d in DIGITS}
            for top in [*(entry.top_logprobs or []), entry]:
                tok = top.token.strip()
                if tok in probs and probs[tok] == 0.0:
                    probs[tok] = math.exp(top.logprob)
            total = sum(probs.values())
            return {d: p / total for d, p in probs.items()} if total > 0 else None
        text += entry.token
    return None


def _p_pass(score: int, dist: dict[str, float] | None) -> float:
    if dist is None:
        return score / 2
    return dist["2"] + 0.5 * dist["1"]


async def judge_one(pool: LLMPool, example: CriticExample, *, seed: int = 0, logprobs: bool = True) -> Judgment:
    out = Judgment(id=example.id, criterion_id=example.criterion_id, check_kind=example.check_kind,
                   passed=example.passed)
    schema = judge_json_schema([example.criterion])
    response_format = {"type": "json_schema", "json_schema": {"name": "JudgeReply", "schema": closed_schema(schema)}}
    extra: dict[str, Any] = {"logprobs": True, "top_logprobs": 5} if logprobs else {}
    started = time.monotonic()
    try:
        result = await pool.chat(example.prompt, role="judge", seed=seed, response_format=response_format,
                                 max_tokens=TOKENS_PER_CRITERION + SUMMARY_TOKENS, temperature=0.0, **extra)
    except ReplyInvalid as exc:
        return out.model_copy(update={"error": str(exc), "seconds": time.monotonic() - started})
    out.seconds = time.monotonic() - started
    out.prompt_tokens, out.completion_tokens = result.usage.prompt_tokens, result.usage.completion_tokens
    try:
        reply = JudgeReply.model_validate_json(result.content or "")
    except ValidationError as exc:
        out.error = f"reply does not fit the judge's schema: {exc.errors()[0]['msg']}"
        return out
    given = next((s for s in reply.scores if s.criterion_id == example.criterion_id), None)
    if given is None:
        out.error = "no score for the criterion"
        return out
    out.score, out.evidence = given.score, given.evidence
    choice = result.raw.choices[0] if result.raw is not None and result.raw.choices else None
    dist = score_distribution(getattr(choice, "logprobs", None))
    out.p_pass_unchecked = _p_pass(given.score, dist) if given.evidence else 0.0
    return evidence_rule(out, example)


def evidence_rule(judgment: Judgment, example: CriticExample) -> Judgment:
    """``quote_found`` for a positive score, and the probability of pass kept only where the reply's quote is in
    the criterion's parts of the transcript: a verdict of 0 with a real quote still ranks by how close it came to
    2, one without a quote (or with an invented one) ranks as a sure fail."""
    found = bool(judgment.evidence) and evidence_found(judgment.evidence, example.haystack, EVIDENCE_MIN_CHARS)[0]
    return judgment.model_copy(update={"quote_found": found if judgment.score else None,
                                       "p_pass": judgment.p_pass_unchecked if found else 0.0})


class JudgeRun(BaseModel):
    judgments: list[Judgment]
    wall_s: float = Field(description="Seconds for all of them, requests in flight together.")
    concurrency: int


class _Journaled(BaseModel):
    judgment: Judgment
    wall_s: float = Field(description="Seconds since the pass that judged it started.")


def read_journal(journal: Path | None) -> dict[str, _Journaled]:
    if journal is None or not journal.exists():
        return {}
    rows = [_Journaled.model_validate_json(line) for line in journal.read_text().splitlines() if line.strip()]
    return {r.judgment.id: r for r in rows}


async def judge_all(pool: LLMPool, examples: list[CriticExample], *, concurrency: int = 16,
                    logprobs: bool = True, journal: Path | None = None) -> JudgeRun:
    """Every example judged, ``concurrency`` requests at a time, in the examples' order. With ``journal`` each
    judgment is appended as it comes, and one already there is not asked again (a server restarted under a long
    pass costs only the requests in flight); the wall time is then the sum of the passes'."""
    gate = asyncio.Semaphore(concurrency)
    done = read_journal(journal)
    earlier = max((r.wall_s for r in done.values()), default=0.0)
    started = time.monotonic()

    async def one(e: CriticExample) -> Judgment:
        if e.id in done:
            return done[e.id].judgment
        async with gate:
            for attempt in range(ENDPOINT_ATTEMPTS):
                try:
                    got = await judge_one(pool, e, logprobs=logprobs)
                    break
                except EndpointUnavailable:
                    # A shared server restarted under a long pass: wait for it rather than lose the pass.
                    if attempt + 1 == ENDPOINT_ATTEMPTS:
                        raise
                    await asyncio.sleep(ENDPOINT_WAIT_S)
        if journal is not None:
            with journal.open("a") as fh:
                fh.write(_Journaled(judgment=got, wall_s=earlier + time.monotonic() - started).model_dump_json()
                         + "\n")
        return got

    judgments = await asyncio.gather(*(one(e) for e in examples))
    return JudgeRun(judgments=list(judgments), wall_s=earlier + time.monotonic() - started, concurrency=concurrency)
