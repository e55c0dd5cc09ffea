"""Judge one trajectory against its task's rubric: code checks, then the judge model, then a rule.

Code decides what it can (``checks.py``; for coding tasks the task's tests run on the assistant's code in the
sandbox, ``code_tests.py``); the judge model scores the rubric's criteria, one slot per criterion. The quality
gates (``gates.py``, ``judge.gates``) run on every row that has a final answer; acceptance refuses a row that fails
one, whatever the rubric says.

The decision rule (``decide``): every code check passes, no required criterion scored 0, and the weighted
score reaches ``pass_threshold``. The judge model is distrusted on purpose: a score above 0 must come with
evidence quoted from the transcript, and a quote that is not there drops the score to 0, because a small judge
invents quotes as readily as the agent invents tool results.

The judge model scores only what acceptance can use (``judge.llm_rows``): a row a code check already rejects is
scored only when it falls in the run's uniform calibration sample (``judge.calibration_share``).
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import openai

from synth.config import JudgeStageConfig
from synth.data.heldout import stable_fraction
from synth.judge.checks import final_answer, run_checks
from synth.judge.code_tests import run_python_tests
from synth.judge.gates import failed, is_coding, run_gates
from synth.judge.transcript import evidence_found, evidence_haystacks, render_transcript
from synth.llm.client import LLMPool, ReplyInvalid
from synth.prompts import render
from synth.schemas.records import TaskRecord, TrajectoryRecord
from synth.schemas.rubric import EVIDENCE_LABELS, Criterion, EvidenceSource, Rubric
from synth.schemas.usage import UsageByRole
from synth.schemas.verdict import CheckResult, CriterionScore, JudgeReply, Verdict

EVIDENCE_MIN_CHARS = 8
"""A positive score needs a quote this long (normalized) at least: shorter ones match almost anything."""

EVIDENCE_MAX_CHARS = 40
"""Long enough for a quote that proves something; short enough that a small judge cannot ramble in it. Given
room, a 135M judge fills quotes with digits, brackets, "1.1.1." or "1000..." until its replies are cut at
max_tokens and re-sampled, so the tokens spent on them buy nothing; asked for the score first, it chooses 1 and a
full quote nearly every time (the figures at 200 and 80 characters: docs/studies/embedded-acceptance.md). A real
quote fits in 40."""
SUMMARY_MAX_CHARS = 80
TOKENS_PER_CRITERION = 40 + EVIDENCE_MAX_CHARS
"""Room for one score object: 25-35 tokens of id, keys and punctuation (SmolLM2's tokenizer), plus a quote at
its worst of one token per character, so a reply within the schema's lengths is never cut."""
SUMMARY_TOKENS = 30 + SUMMARY_MAX_CHARS


class RequestRejected(ReplyInvalid):
    """The server refused the judge request (e.g. prompt plus reply longer than its context): a bad row."""

    hint = "serve the judge's model with a longer context (embedded.max_model_len) or lower rollouts.max_turns"


def judge_json_schema(criteria: list[Criterion]) -> dict[str, Any]:
    """JudgeReply's schema with one score slot per criterion, in rubric order.

    ``prefixItems`` with a ``const`` id per slot makes guided decoding write exactly one score for each
    criterion; a server that ignores it still only sees known ids (``enum``) and the count bounded, and
    ``aggregate`` treats anything missing as 0.
    """

    def slot(cid: str | None) -> dict[str, Any]:
        ids = [c.id for c in criteria]
        criterion = {"const": cid, "type": "string"} if cid else {"type": "string", "enum": ids}

        def branch(evidence: dict[str, Any], score: dict[str, Any]) -> dict[str, Any]:
            # The quote comes first and decides what may follow: no quote, no score above 0.
            return {
                "type": "object",
                "properties": {"criterion_id": criterion, "evidence": evidence, "score": score},
                "required": ["criterion_id", "evidence", "score"],
                "additionalProperties": False,
            }

        return {"anyOf": [
            branch({"type": "string", "const": ""}, {"type": "integer", "const": 0, "description": "0 = not met."}),
            branch({"type": "string", "minLength": EVIDENCE_MIN_CHARS, "maxLength": EVIDENCE_MAX_CHARS,
                    "description": "A short exact quote from the transcript that supports the score."},
                   {"type": "integer", "minimum": 0, "maximum": 2,
                    "description": "0 = not met, 1 = partly met, 2 = fully met."}),
        ]}

    n = len(criteria)
    return {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "prefixItems": [slot(c.id) for c in criteria],
                "items": False,
                "minItems": n,
                "maxItems": n,
            },
            "summary": {
                "type": "string",
                "maxLength": SUMMARY_MAX_CHARS,
                "description": "One sentence on the trajectory's quality.",
            },
        },
        "required": ["scores", "summary"],
        "additionalProperties": False,
    }


def _found_in(
    evidence: str, criterion: Criterion, haystacks: dict[EvidenceSource | None, str]
) -> tuple[bool, str]:
    sources = criterion.evidence_from
    if not sources:
        return evidence_found(evidence, haystacks[None], EVIDENCE_MIN_CHARS)
    found, why = evidence_found(evidence, "\n".join(haystacks[src] for src in sources), EVIDENCE_MIN_CHARS)
    if not found and evidence_found(evidence, haystacks[None], EVIDENCE_MIN_CHARS)[0]:
        why = f"evidence quoted from the wrong part of the transcript (must come from {', '.join(sources)})"
    return found, why


def check_reply(
    reply: JudgeReply, criteria: list[Criterion], haystacks: dict[EvidenceSource | None, str]
) -> tuple[list[CriterionScore], list[str]]:
    """One score per criterion from one judge reply, with unverifiable and missing scores set to 0.

    A quote must be found in the parts of the transcript the criterion names (``evidence_from``; see
    ``evidence_haystacks``): the user's words are no evidence that the assistant wrote fluently.

    Returns the scores in rubric order and notes on every change made to what the judge said.
    """
    given: dict[str, CriterionScore] = {}
    notes: list[str] = []
    known = {c.id for c in criteria}
    for s in reply.scores:
        if s.criterion_id not in known:
            notes.append(f"judge scored unknown criterion {s.criterion_id!r}; ignored")
        elif s.criterion_id in given:
            notes.append(f"{s.criterion_id}: scored twice; the first score is kept")
        else:
            given[s.criterion_id] = s
    out = []
    for c in criteria:
        s = given.get(c.id)
        if s is None:
            note = "no score in the judge reply; counted as 0"
            out.append(CriterionScore(criterion_id=c.id, evidence="", score=0, note=note))
            notes.append(f"{c.id}: {note}")
            continue
        if s.score > 0:
            found, why = _found_in(s.evidence, c, haystacks)
            if not found:
                note = f"{why}; judge's score {s.score} lowered to 0"
                out.append(s.model_copy(update={"score": 0, "note": note}))
                notes.append(f"{c.id}: {note}")
                continue
        out.append(s.model_copy())
    return out, notes


def aggregate(samples: list[list[CriterionScore]], criteria: list[Criterion]) -> list[CriterionScore]:
    """Per-criterion majority over judge samples: the lower median score, with the evidence of a sample that
    gave it.

    The lower median makes a tie between samples go against the trajectory.
    """
    out = []
    for i in range(len(criteria)):
        column = [sample[i] for sample in samples]
        median = statistics.median_low(s.score for s in column)
        chosen = next(s for s in column if s.score == median)
        if len(samples) > 1:
            votes = ", ".join(str(s.score) for s in column)
            chosen = chosen.model_copy(
                update={"note": "; ".join(filter(None, [chosen.note, f"votes: {votes}"]))}
            )
        out.append(chosen)
    return out


def weighted_score(scores: list[CriterionScore], criteria: list[Criterion]) -> float:
    """Weighted mean of score/2 over criteria, in [0, 1]; 1.0 when there is nothing to weigh."""
    weights = {c.id: c.weight for c in criteria}
    total = sum(weights.values())
    if total <= 0:
        return 1.0
    return sum(weights[s.criterion_id] * s.score / 2 for s in scores if s.criterion_id in weights) / total


def _code_reasons(checks: list[CheckResult]) -> list[str]:
    return [f"code check {r.check_id} failed: {r.detail}" for r in checks if not r.passed]


def decide(
    checks: list[CheckResult], scores: list[CriterionScore], criteria: list[Criterion], cfg: JudgeStageConfig
) -> tuple[bool, float, list[str]]:
    """The pass rule; returns (passed, weighted score, reasons it failed)."""
    reasons = _code_reasons(checks)
    required = {c.id for c in criteria if c.required}
    for s in scores:
        if s.criterion_id in required and s.score == 0:
            why = s.note or (f"evidence: {s.evidence!r}" if s.evidence else "no evidence")
            reasons.append(f"required criterion {s.criterion_id} scored 0: {why}")
    score = weighted_score(scores, criteria)
    if score < cfg.pass_threshold:
        reasons.append(f"weighted score below pass_threshold: {score:.2f} < {cfg.pass_threshold:.2f}")
    return not reasons, score, reasons


def _judge_messages(
    traj: TrajectoryRecord, task: TaskRecord, criteria: list[Criterion]
) -> list[dict[str, Any]]:
    instructions = next((m.content or "" for m in traj.messages if m.role == "system"), "")
    tools = []
    for tool in traj.tools:
        fn = tool.get("function", tool)
        tools.append({"name": fn.get("name", ""), "description": fn.get("description", "")})
    variables = {
        "task": task,
        "instructions": instructions,
        "tools": tools,
        "criteria": criteria,
        "quote_from": {
            c.id: " or ".join(EVIDENCE_LABELS[src] for src in c.evidence_from) for c in criteria if c.evidence_from
        },
        "transcript": render_transcript(traj),
    }
    return [
        {"role": "system", "content": render("judge", part="system", **variables)},
        {"role": "user", "content": render("judge", part="user", **variables)},
    ]


def _failed(reason: str, checks: list[CheckResult] | None = None, **extra: Any) -> Verdict:
    extra.setdefault("eligible", False)
    return Verdict(passed=False, score=0.0, checks=checks or [], reasons=[reason], samples=0, **extra)


OUTCOME_KINDS = ("state_equals", "final_mentions", "calls_in_one_turn", "answers_without_call")
# answers_without_call: a task no tool can serve (synth.tasks.kinds) is done by answering without a call.


def verifies_outcome(rubric: Rubric) -> bool:
    """Whether code alone can tell that the task was done: a call's arguments, the final state, a value the
    answer must report, or the coding task's tests. ``tool_called`` / ``no_tool_called`` / the sandbox having
    run prove too little (a model that never calls a tool passes ``no_tool_called``)."""
    return bool(rubric.python_tests) or any(
        c.kind in OUTCOME_KINDS or (c.kind in ("tool_called_with", "call_made_with") and c.arguments)
        for c in rubric.checks
    )


def _code_passed(checks: list[CheckResult]) -> bool | None:
    return all(c.passed for c in checks) if checks else None


CALIBRATION_SALT = "synth-calibration-v1"


def in_calibration_sample(row_id: str, share: float) -> bool:
    """Whether the row is in the run's uniform calibration sample: about ``share`` of rows, fixed by the id."""
    return stable_fraction(row_id, CALIBRATION_SALT) < share


def skip_llm_reason(code_passed: bool | None, cfg: JudgeStageConfig, gated: list[str] | None = None) -> str | None:
    """Why the LLM judge need not score a row outside the calibration sample (None: it must).

    Only what acceptance (``synth.judge.accept``) can use is asked for: under ``auto`` and ``both`` a failed code
    check rejects the row whatever the judge says, ``verifiable`` never reads the judge, and a failed quality gate
    (``gated``) rejects it in every mode."""
    if cfg.llm_rows == "all":
        return None
    if gated:
        return f"quality gate(s) {', '.join(gated)} already reject it"
    if cfg.accept == "llm":
        return None
    if cfg.accept == "verifiable":
        return "judge.accept=verifiable decides on the code checks alone"
    if code_passed is False:
        return f"a code check already rejects it under judge.accept={cfg.accept}"
    return None


async def judge_trajectory(
    traj: TrajectoryRecord,
    task: TaskRecord,
    pool: LLMPool,
    cfg: JudgeStageConfig,
    *,
    seed: int,
    usage: UsageByRole | None = None,
) -> Verdict:
    """The verdict on ``traj`` for ``task``. Never raises for a bad row (``EndpointUnavailable`` does)."""
    if task.error is not None or task.rubric is None:
        why = task.error.message if task.error else "no rubric"
        return _failed(f"task cannot be judged: {task.id}: {why}")
    rubric = task.rubric
    checks = run_checks(traj, rubric)
    verifiable = verifies_outcome(rubric)
    if traj.error is not None:
        return _failed(f"trajectory failed before judging: {traj.error.kind}: {traj.error.message}", checks,
                       verifiable=verifiable, code_passed=_code_passed(checks))
    if final_answer(traj) is None:
        return _failed("no final assistant answer: the last assistant turn calls a tool or is empty", checks,
                       verifiable=verifiable, code_passed=_code_passed(checks))

    if rubric.python_tests:
        checks.append(await run_python_tests(traj, rubric.python_tests))
    gates = run_gates(traj, coding=is_coding(task), names=cfg.gates)
    sides: dict[str, Any] = {"verifiable": verifiable, "code_passed": _code_passed(checks), "gates": gates}

    criteria = rubric.criteria
    if not criteria:
        passed, score, reasons = decide(checks, [], [], cfg)
        return Verdict(passed=passed, score=score, checks=checks, reasons=reasons, samples=0, **sides)
    sides["calibration"] = cfg.llm_rows == "all" or in_calibration_sample(traj.id, cfg.calibration_share)
    skip = None if sides["calibration"] else skip_llm_reason(sides["code_passed"], cfg, failed(gates))
    if skip is not None:
        return Verdict(passed=False, score=0.0, checks=checks, samples=0, **sides,
                       reasons=_code_reasons(checks) or ["the LLM judge was not asked"],
                       notes=[f"LLM judge not asked (judge.llm_rows=needed, outside the calibration sample): {skip}"])

    # One sample: the judge's most likely reading (greedy). Several: sampled readings, so the vote means something.
    temperature = 0.0 if cfg.samples == 1 else pool.config.temperature
    # per_criterion: one request per criterion, the prompt a critic is trained on (synth.critic), merged into one
    # reply per sample.
    groups = [[c] for c in criteria] if cfg.per_criterion else [criteria]
    asked = await asyncio.gather(
        *(
            _ask(
                pool,
                _judge_messages(traj, task, group),
                judge_json_schema(group),
                seed=seed + k,
                usage=usage,
                max_tokens=TOKENS_PER_CRITERION * len(group) + SUMMARY_TOKENS,
                temperature=temperature,
            )
            for k in range(cfg.samples)
            for group in groups
        )
    )
    replies = [_merged(asked[k * len(groups): (k + 1) * len(groups)]) for k in range(cfg.samples)]
    valid = [r for r in replies if isinstance(r, JudgeReply)]
    invalid = [r for r in replies if isinstance(r, ReplyInvalid)]
    if not valid:
        first = invalid[0]
        what = "judge request rejected" if isinstance(first, RequestRejected) else "judge reply invalid"
        # The judge failed, the trajectory did not: code checks may still accept it (judge.accept).
        return _failed(f"{what}: {first}", checks, raw=first.raw, eligible=True, **sides)

    haystacks = evidence_haystacks(traj)
    per_sample, notes = [], []
    for k, reply in enumerate(valid):
        scores, sample_notes = check_reply(reply, criteria, haystacks)
        per_sample.append(scores)
        prefix = f"sample {k + 1}: " if len(valid) > 1 else ""
        notes += [prefix + n for n in sample_notes]
    notes += [f"a judge sample was dropped: {exc}" for exc in invalid]
    scores = aggregate(per_sample, criteria)
    passed, score, reasons = decide(checks, scores, criteria, cfg)
    llm_passed = decide([], scores, criteria, cfg)[0]
    return Verdict(
        passed=passed,
        score=score,
        scores=scores,
        checks=checks,
        reasons=reasons,
        samples=len(valid),
        summary=valid[0].summary,
        notes=notes,
        llm_passed=llm_passed,
        **sides,
    )


def _merged(replies: list[JudgeReply | ReplyInvalid]) -> JudgeReply | ReplyInvalid:
    """One sample's replies (one per criterion group) as one reply; a criterion whose request failed is left
    unscored (``check_reply`` counts it 0). All failed: the first failure."""
    valid = [r for r in replies if isinstance(r, JudgeReply)]
    if not valid:
        return replies[0]
    return JudgeReply(scores=[s for r in valid for s in r.scores], summary=valid[0].summary)


async def _ask(
    pool: LLMPool,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    *,
    seed: int,
    usage: UsageByRole | None,
    max_tokens: int,
    temperature: float,
) -> JudgeReply | ReplyInvalid:
    try:
        return await pool.structured(
            messages,
            JudgeReply,
            role="judge",
            seed=seed,
            usage=usage,
            json_schema=schema,
            max_tokens=max_tokens,
            temperature=temperature,
        )
    except ReplyInvalid as exc:
        return exc
    except openai.BadRequestError as exc:
        return RequestRejected(str(exc), None)
