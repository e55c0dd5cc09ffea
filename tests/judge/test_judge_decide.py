"""The judge's control flow with a scripted pool: decision rule, evidence check, missing scores, majority vote."""

import httpx
import openai
import pytest

from synth.config import JudgeStageConfig
from synth.judge.judge import decide, judge_json_schema, judge_trajectory, weighted_score
from synth.judge.transcript import TRANSCRIPT_CHARS, render_transcript
from synth.llm.client import ReplyInvalid
from synth.schemas.messages import Message
from synth.schemas.records import RowError
from synth.schemas.rubric import Criterion
from synth.schemas.usage import UsageByRole
from synth.schemas.verdict import CheckResult, CriterionScore
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.judge import weather_task, weather_trajectory

CFG = JudgeStageConfig(samples=1, pass_threshold=0.6)
GOOD_GROUNDING = {"criterion_id": "grounding", "evidence": '{"temp_c": 18, "sky": "sunny"}', "score": 2}
GOOD_HELPFUL = {"criterion_id": "helpfulness", "evidence": "It is 18°C and sunny in Paris", "score": 2}


def reply(*scores: dict, summary: str = "fine") -> dict:
    return {"scores": list(scores), "summary": summary}


def score(cid: str, s: int, evidence: str = "") -> CriterionScore:
    return CriterionScore(criterion_id=cid, evidence=evidence, score=s)


CRITERIA = [
    Criterion(id="a", description="a", weight=3, required=True),
    Criterion(id="b", description="b", weight=1),
]


def test_weighted_score() -> None:
    assert weighted_score([score("a", 2), score("b", 0)], CRITERIA) == pytest.approx(0.75)
    assert weighted_score([score("a", 1), score("b", 2)], CRITERIA) == pytest.approx(0.625)
    assert weighted_score([], []) == 1.0


def test_decide_passes_only_when_every_rule_holds() -> None:
    ok = [CheckResult(check_id="c", passed=True)]
    assert decide(ok, [score("a", 2), score("b", 0)], CRITERIA, CFG) == (True, 0.75, [])

    passed, _, reasons = decide(
        [CheckResult(check_id="c", passed=False, detail="no call")],
        [score("a", 2), score("b", 2)],
        CRITERIA,
        CFG,
    )
    assert not passed and reasons == ["code check c failed: no call"]

    passed, s, reasons = decide(ok, [score("a", 0), score("b", 2)], CRITERIA, CFG)
    assert not passed and any("required criterion a scored 0" in r for r in reasons)

    passed, s, reasons = decide(ok, [score("a", 1), score("b", 0)], CRITERIA, CFG)
    assert (
        not passed
        and s == pytest.approx(0.375)
        and reasons == ["weighted score below pass_threshold: 0.38 < 0.60"]
    )
    assert decide(ok, [score("a", 1), score("b", 0)], CRITERIA, JudgeStageConfig(pass_threshold=0.3))[0]


async def test_good_trajectory_passes_with_quoted_evidence() -> None:
    pool = ScriptedPool([reply(GOOD_GROUNDING, GOOD_HELPFUL)])
    usage = UsageByRole()
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=7, usage=usage)
    assert verdict.passed, verdict.reasons
    assert verdict.score == 1.0 and verdict.samples == 1 and verdict.summary == "fine"
    assert [s.criterion_id for s in verdict.scores] == ["grounding", "helpfulness"]
    assert all(c.passed for c in verdict.checks) and len(verdict.checks) == 2
    assert usage.judge.calls == 1
    sent = pool.calls[0]
    assert sent["role"] == "judge" and sent["seed"] == 7
    # The transcript and the criteria reach the model; the system prompt is not quoted as behaviour.
    prompt = sent["messages"][-1]["content"]
    assert (
        "[assistant calls get_weather]" in prompt and "- grounding: Facts come from tool results." in prompt
    )


def test_judge_schema_has_one_slot_per_criterion_in_order() -> None:
    schema = judge_json_schema(CRITERIA)
    slots = schema["properties"]["scores"]["prefixItems"]
    for s in slots:  # both branches of a slot (a 0 without a quote, 1 or 2 with one) hold the slot's id
        assert len({b["properties"]["criterion_id"]["const"] for b in s["anyOf"]}) == 1
    assert [s["anyOf"][0]["properties"]["criterion_id"]["const"] for s in slots] == ["a", "b"]
    assert schema["properties"]["scores"]["minItems"] == 2 == schema["properties"]["scores"]["maxItems"]


async def test_invented_evidence_is_rejected() -> None:
    invented = {"criterion_id": "grounding", "evidence": "the tool said it was 25 degrees", "score": 2}
    pool = ScriptedPool([reply(invented, GOOD_HELPFUL)])
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    assert not verdict.passed
    grounding = verdict.scores[0]
    assert grounding.score == 0 and "evidence not found" in (grounding.note or "")
    assert any(
        "required criterion grounding scored 0" in r and "evidence not found" in r for r in verdict.reasons
    )
    assert any("evidence not found" in n for n in verdict.notes)


async def test_evidence_matching_ignores_case_whitespace_quotes_and_allows_elision() -> None:
    loose = {"criterion_id": "grounding", "evidence": '"IT IS 18°C   and\nsunny ... right now."', "score": 2}
    pool = ScriptedPool([reply(loose, GOOD_HELPFUL)])
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    assert verdict.passed, verdict.reasons


async def test_too_short_or_empty_evidence_does_not_support_a_score() -> None:
    short = {"criterion_id": "helpfulness", "evidence": "Paris", "score": 2}
    pool = ScriptedPool([reply(GOOD_GROUNDING, short)])
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    assert verdict.scores[1].score == 0 and "too short" in (verdict.scores[1].note or "")
    # A score of 0 needs no evidence and is left alone.
    zero = {"criterion_id": "helpfulness", "evidence": "", "score": 0}
    verdict = await judge_trajectory(
        weather_trajectory(), weather_task(), ScriptedPool([reply(GOOD_GROUNDING, zero)]), CFG, seed=0
    )
    assert verdict.scores[1].note is None


async def test_missing_unknown_and_duplicate_scores() -> None:
    dup = dict(GOOD_GROUNDING, score=0)
    pool = ScriptedPool(
        [reply(GOOD_GROUNDING, dup, {"criterion_id": "made_up", "evidence": "x", "score": 2})]
    )
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    by_id = {s.criterion_id: s for s in verdict.scores}
    assert set(by_id) == {"grounding", "helpfulness"}
    assert by_id["grounding"].score == 2  # the first of two scores is kept
    assert by_id["helpfulness"].score == 0 and "no score in the judge reply" in (
        by_id["helpfulness"].note or ""
    )
    assert any("made_up" in n for n in verdict.notes) and any("scored twice" in n for n in verdict.notes)
    assert verdict.score == pytest.approx(2 / 3)


async def test_invalid_judge_reply_fails_the_verdict_and_keeps_raw() -> None:
    pool = ScriptedPool([ReplyInvalid("JudgeReply: reply cut off at max_tokens", '{"scores": [')])
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    assert not verdict.passed and verdict.raw == '{"scores": ['
    assert verdict.reasons[0].startswith("judge reply invalid: JudgeReply: reply cut off")
    assert len(verdict.checks) == 2  # code checks still reported


async def test_errored_or_unfinished_trajectories_fail_without_asking_the_model() -> None:
    pool = ScriptedPool([])
    errored = weather_trajectory(error=RowError(kind="tool_sim", message="simulator crashed"))
    verdict = await judge_trajectory(errored, weather_task(), pool, CFG, seed=0)
    assert not verdict.passed and "simulator crashed" in verdict.reasons[0]

    verdict = await judge_trajectory(weather_trajectory(final=None), weather_task(), pool, CFG, seed=0)
    assert not verdict.passed and "no final assistant answer" in verdict.reasons[0]

    no_rubric = weather_task().model_copy(update={"rubric": None})
    verdict = await judge_trajectory(weather_trajectory(), no_rubric, pool, CFG, seed=0)
    assert not verdict.passed and "no rubric" in verdict.reasons[0]
    assert pool.calls == []


async def test_failed_code_check_fails_even_with_perfect_scores() -> None:
    helpful = dict(GOOD_HELPFUL, evidence="It is sunny in Paris right now.")
    pool = ScriptedPool([reply(GOOD_GROUNDING, helpful)])
    traj = weather_trajectory(final="It is sunny in Paris right now.")  # does not mention 18
    verdict = await judge_trajectory(traj, weather_task(), pool, CFG, seed=0)
    assert not verdict.passed and verdict.score == 1.0
    assert verdict.reasons == [f"code check mentions_18 failed: {verdict.checks[1].detail}"]


async def test_rubric_without_llm_criteria_is_decided_by_code() -> None:
    pool = ScriptedPool([])
    verdict = await judge_trajectory(weather_trajectory(), weather_task(criteria=[]), pool, CFG, seed=0)
    assert verdict.passed and pool.calls == []


async def test_majority_vote_takes_the_per_criterion_median() -> None:
    low = dict(GOOD_GROUNDING, score=0)
    pool = ScriptedPool(
        [
            reply(GOOD_GROUNDING, GOOD_HELPFUL),
            reply(low, GOOD_HELPFUL),
            reply(GOOD_GROUNDING, low | {"criterion_id": "helpfulness"}),
        ]
    )
    verdict = await judge_trajectory(
        weather_trajectory(), weather_task(), pool, JudgeStageConfig(samples=3), seed=10
    )
    assert verdict.samples == 3 and verdict.passed
    assert [s.score for s in verdict.scores] == [2, 2]
    assert "votes: 2, 0, 2" in (verdict.scores[0].note or "")
    assert sorted(c["seed"] for c in pool.calls) == [10, 11, 12]

    pool = ScriptedPool(
        [reply(low, GOOD_HELPFUL), reply(low, GOOD_HELPFUL), reply(GOOD_GROUNDING, GOOD_HELPFUL)]
    )
    verdict = await judge_trajectory(
        weather_trajectory(), weather_task(), pool, JudgeStageConfig(samples=3), seed=0
    )
    assert not verdict.passed and verdict.scores[0].score == 0


async def test_a_tie_goes_against_the_trajectory_and_invalid_samples_are_dropped() -> None:
    low = dict(GOOD_GROUNDING, score=0)
    pool = ScriptedPool([reply(GOOD_GROUNDING, GOOD_HELPFUL), reply(low, GOOD_HELPFUL)])
    verdict = await judge_trajectory(
        weather_trajectory(), weather_task(), pool, JudgeStageConfig(samples=2), seed=0
    )
    assert verdict.scores[0].score == 0 and not verdict.passed

    pool = ScriptedPool([reply(GOOD_GROUNDING, GOOD_HELPFUL), ReplyInvalid("bad", "{")])
    verdict = await judge_trajectory(
        weather_trajectory(), weather_task(), pool, JudgeStageConfig(samples=2), seed=0
    )
    assert verdict.passed and verdict.samples == 1
    assert any("dropped" in n for n in verdict.notes)


def bad_request(message: str) -> openai.BadRequestError:
    response = httpx.Response(400, request=httpx.Request("POST", "http://server/v1/chat/completions"))
    return openai.BadRequestError(message, response=response, body=None)


async def test_request_the_server_rejects_fails_the_row_not_the_stage() -> None:
    pool = ScriptedPool([bad_request("maximum context length is 4096 tokens")])
    verdict = await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    assert not verdict.passed and verdict.reasons[0].startswith("judge request rejected:")
    assert "4096" in verdict.reasons[0]


async def test_one_sample_is_greedy_several_are_sampled() -> None:
    pool = ScriptedPool([reply(GOOD_GROUNDING, GOOD_HELPFUL)])
    await judge_trajectory(weather_trajectory(), weather_task(), pool, CFG, seed=0)
    assert pool.calls[0]["params"]["temperature"] == 0.0
    pool = ScriptedPool([reply(GOOD_GROUNDING, GOOD_HELPFUL)] * 2)
    await judge_trajectory(weather_trajectory(), weather_task(), pool, JudgeStageConfig(samples=2), seed=0)
    assert {c["params"]["temperature"] for c in pool.calls} == {pool.config.temperature}


def test_long_transcripts_keep_the_request_and_the_end() -> None:
    traj = weather_trajectory()
    traj.messages[3] = traj.messages[3].model_copy(update={"content": "x" * 5000})
    for i in range(40):
        traj.messages.insert(2, Message(role="user", content=f"filler {i} " + "y" * 200))
    text = render_transcript(traj)
    assert len(text) <= TRANSCRIPT_CHARS + 100
    assert text.startswith("[user] What's the weather in Paris?")
    assert text.endswith("[assistant] It is 18°C and sunny in Paris right now.")
    assert "message(s) omitted" in text and "[...cut]" in text
