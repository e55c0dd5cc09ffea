"""The real embedded model judges one hand-made trajectory: a verdict with one scored criterion each."""

import pytest

from synth.config import EndpointConfig, JudgeStageConfig, LLMConfig
from synth.judge import judge_trajectory
from synth.judge.judge import EVIDENCE_MIN_CHARS
from synth.judge.transcript import evidence_found, message_lines
from synth.llm.client import LLMPool
from synth.schemas.usage import UsageByRole
from synth.text import normalize
from tests.fixtures.judge import weather_task, weather_trajectory

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_judge_one_trajectory_with_the_real_model(live_url: str) -> None:
    pool = LLMPool([EndpointConfig(base_url=live_url)], LLMConfig(temperature=0.7, max_retries=1))
    usage = UsageByRole()
    task = weather_task()
    try:
        verdict = await judge_trajectory(
            weather_trajectory(), task, pool, JudgeStageConfig(), seed=0, usage=usage
        )
    finally:
        await pool.aclose()
    assert verdict.raw is None, verdict.reasons  # the constrained reply validated
    assert verdict.samples == 1 and usage.judge.calls == 1
    assert [s.criterion_id for s in verdict.scores] == [c.id for c in task.rubric.criteria]
    assert all(isinstance(s.evidence, str) and 0 <= s.score <= 2 for s in verdict.scores)
    # Any positive score that survived quotes the transcript; the scores the pipeline lowered say why.
    haystack = normalize("\n".join(message_lines(weather_trajectory())))
    for s in verdict.scores:
        if s.score > 0:
            assert evidence_found(s.evidence, haystack, EVIDENCE_MIN_CHARS)[0], s
        elif s.note:
            assert "evidence" in s.note or "no score" in s.note
    assert all(c.passed for c in verdict.checks)
    assert 0.0 <= verdict.score <= 1.0
    assert verdict.passed == (not verdict.reasons)
