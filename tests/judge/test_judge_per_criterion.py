"""judge.per_criterion: one request per criterion (the prompt a trained critic learnt on), merged into one
verdict with the evidence rule as before."""

from __future__ import annotations

from synth.config import JudgeStageConfig
from synth.judge.judge import SUMMARY_TOKENS, TOKENS_PER_CRITERION, judge_trajectory
from synth.llm.client import ReplyInvalid
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.judge import weather_task, weather_trajectory


async def test_one_request_per_criterion_merged_with_the_evidence_rule() -> None:
    task = weather_task()  # grounding, helpfulness
    pool = ScriptedPool([
        {"scores": [{"criterion_id": "grounding", "evidence": "18°C and sunny", "score": 2}], "summary": "ok"},
        {"scores": [{"criterion_id": "helpfulness", "evidence": "not in the transcript", "score": 2}],
         "summary": "x"},
    ])
    v = await judge_trajectory(weather_trajectory(), task, pool, JudgeStageConfig(per_criterion=True), seed=0)
    assert len(pool.calls) == 2
    for call, criterion in zip(pool.calls, task.rubric.criteria, strict=True):  # type: ignore[union-attr]
        user = call["messages"][1]["content"]
        assert f"- {criterion.id}: " in user and user.count("\n- ") - user.count("\n- get_weather") == 1
        assert call["params"]["max_tokens"] == TOKENS_PER_CRITERION + SUMMARY_TOKENS
        assert len(call["json_schema"]["properties"]["scores"]["prefixItems"]) == 1
    scores = {s.criterion_id: s.score for s in v.scores}
    assert scores == {"grounding": 2, "helpfulness": 0}  # the unfound quote zeroes its score, as in one request
    assert v.summary == "ok"


async def test_a_failed_criterion_request_counts_it_zero_and_all_failed_is_a_failed_reply() -> None:
    task = weather_task()
    pool = ScriptedPool([
        ReplyInvalid("cut", "{"),
        {"scores": [{"criterion_id": "helpfulness", "evidence": "18°C and sunny", "score": 2}], "summary": "s"},
    ])
    v = await judge_trajectory(weather_trajectory(), task, pool, JudgeStageConfig(per_criterion=True), seed=0)
    assert {s.criterion_id: s.score for s in v.scores} == {"grounding": 0, "helpfulness": 2}
    pool = ScriptedPool([ReplyInvalid("cut", "{"), ReplyInvalid("cut", "{")])
    v = await judge_trajectory(weather_trajectory(), task, pool, JudgeStageConfig(per_criterion=True), seed=0)
    assert not v.scores and v.reasons[0].startswith("judge reply invalid")
