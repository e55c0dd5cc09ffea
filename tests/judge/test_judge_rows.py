"""judge.llm_rows: the LLM judge scores what acceptance can use, plus a uniform calibration sample."""

from __future__ import annotations

import pytest

from synth.config import JudgeStageConfig
from synth.judge.accept import run_acceptance
from synth.judge.calibration import calibrate
from synth.judge.judge import in_calibration_sample, judge_trajectory, skip_llm_reason
from synth.schemas.records import VerdictRecord
from synth.schemas.verdict import CriterionScore, Verdict
from tests.fixtures.fakes import ScriptedPool
from tests.fixtures.judge import weather_task, weather_trajectory

GOOD = {"scores": [{"criterion_id": "grounding", "evidence": '{"temp_c": 18, "sky": "sunny"}', "score": 2},
                   {"criterion_id": "helpfulness", "evidence": "It is sunny in Paris right now", "score": 2}],
        "summary": "fine"}


def _ids(inside: bool, share: float, n: int = 1) -> list[str]:
    """Trajectory ids that fall inside (or outside) the calibration sample at ``share``."""
    out = [f"traj-{i}" for i in range(10_000) if in_calibration_sample(f"traj-{i}", share) is inside]
    return out[:n]


@pytest.mark.parametrize(("mode", "code", "skipped"), [
    ("auto", False, True), ("auto", True, False), ("auto", None, False),
    ("both", False, True), ("both", True, False),
    ("llm", False, False), ("llm", True, False),
    ("verifiable", True, True), ("verifiable", False, True),
])
def test_what_the_judge_is_asked_for_follows_the_acceptance_mode(mode: str, code: bool | None,
                                                                  skipped: bool) -> None:
    assert (skip_llm_reason(code, JudgeStageConfig(accept=mode)) is not None) is skipped
    # llm_rows=all always asks.
    assert skip_llm_reason(code, JudgeStageConfig(accept=mode, llm_rows="all")) is None


def test_calibration_sample_is_fixed_by_id_and_about_its_share() -> None:
    ids = [f"traj-{i:05d}" for i in range(4000)]
    picked = [i for i in ids if in_calibration_sample(i, 0.3)]
    assert 0.27 < len(picked) / len(ids) < 0.33
    assert picked == [i for i in ids if in_calibration_sample(i, 0.3)]  # same rows every time
    assert all(in_calibration_sample(i, 1.0) for i in ids[:50])
    # A larger share keeps every row of a smaller one (growing the sample never drops a row).
    assert set(picked) <= {i for i in ids if in_calibration_sample(i, 0.5)}


async def test_a_row_code_rejects_outside_the_sample_is_not_sent_to_the_judge() -> None:
    cfg = JudgeStageConfig(accept="auto", calibration_share=0.3)
    traj = weather_trajectory(final="It is sunny in Paris right now.", id=_ids(False, 0.3)[0])  # no "18"
    pool = ScriptedPool([])
    verdict = await judge_trajectory(traj, weather_task(), pool, cfg, seed=0)
    assert pool.calls == []
    assert verdict.code_passed is False and not verdict.passed and verdict.samples == 0
    assert not verdict.calibration and verdict.llm_passed is None
    assert verdict.reasons[0].startswith("code check mentions_18 failed")
    assert "LLM judge not asked" in verdict.notes[0] and "judge.accept=auto" in verdict.notes[0]


async def test_rows_in_the_sample_passing_rows_and_llm_rows_all_are_judged() -> None:
    failing = dict(final="It is sunny in Paris right now.")
    cases = [
        (JudgeStageConfig(accept="auto"), weather_trajectory(**failing, id=_ids(True, 0.3)[0]), True),
        (JudgeStageConfig(accept="auto"), weather_trajectory(id=_ids(False, 0.3)[0]), False),  # code passes
        (JudgeStageConfig(accept="auto", llm_rows="all"), weather_trajectory(**failing, id=_ids(False, 0.3)[0]),
         True),
    ]
    for cfg, traj, calibration in cases:
        pool = ScriptedPool([GOOD])
        verdict = await judge_trajectory(traj, weather_task(), pool, cfg, seed=0)
        assert len(pool.calls) == 1 and verdict.samples == 1, (cfg, traj.id)
        assert verdict.calibration is calibration


def _v(code: bool, llm: bool, calibration: bool) -> Verdict:
    scores = [CriterionScore(criterion_id="grounding", evidence="x" * 10, score=2 if llm else 0)]
    return Verdict(passed=code and llm, score=1.0 if llm else 0.0, scores=scores, code_passed=code, llm_passed=llm,
                   verifiable=True, calibration=calibration)


def test_calibration_counts_only_the_sample() -> None:
    # Outside the sample the judge saw only rows that passed code, and agreed on all of them: counting those
    # would lift the agreement from 0.5 to 0.9.
    sample = [_v(True, True, True), _v(False, True, True), _v(True, False, True), _v(False, False, True)]
    judged_because_passed = [_v(True, True, False)] * 16
    cal = calibrate(sample + judged_because_passed, trust_agreement=0.8, min_pairs=2, sample_share=0.3)
    assert cal.overall.pairs == 4 and cal.overall.agreement == 0.5
    assert cal.summary()["sample_share"] == 0.3


def test_run_acceptance_reports_the_sample_share() -> None:
    rec = VerdictRecord(id="v", seed=0, trajectory_id="t", task_id="task-1", verdict=_v(True, True, True))
    _, cal = run_acceptance([rec], {}, JudgeStageConfig(calibration_share=0.25))
    assert cal.sample_share == 0.25
    _, cal = run_acceptance([rec], {}, JudgeStageConfig(llm_rows="all", calibration_share=0.25))
    assert cal.sample_share == 1.0
