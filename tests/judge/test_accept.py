"""Acceptance modes and judge calibration on hand-made verdicts."""

from __future__ import annotations

import pytest

from synth.config import JudgeStageConfig
from synth.judge.accept import accept, run_acceptance
from synth.judge.calibration import Agreement, calibrate
from synth.judge.judge import verifies_outcome
from synth.schemas.records import TaskRecord, VerdictRecord
from synth.schemas.rubric import CodeCheck, Criterion, Rubric
from synth.schemas.verdict import CriterionScore, Verdict

CRITERIA = [
    Criterion(id="grounding", description="g", weight=2, required=True),
    Criterion(id="fluency", description="f", weight=1),
]


def verdict(*, code: bool | None, llm: bool | None, grounding: int = 2, fluency: int = 2,
            verifiable: bool = True, eligible: bool = True) -> Verdict:
    scores = [] if llm is None else [CriterionScore(criterion_id="grounding", evidence="x" * 10, score=grounding),
                                     CriterionScore(criterion_id="fluency", evidence="y" * 10, score=fluency)]
    reasons = ([] if code is not False else ["code check c1 failed: wrong city"]) + \
              ([] if llm is not False else ["required criterion grounding scored 0: no evidence"])
    return Verdict(passed=bool(code is not False and llm), score=0.5, scores=scores, reasons=reasons,
                   code_passed=code, llm_passed=llm, verifiable=verifiable, eligible=eligible)


def cfg(mode: str, **kw) -> JudgeStageConfig:
    return JudgeStageConfig(accept=mode, **kw)


@pytest.mark.parametrize(("code", "llm", "expected"), [
    (True, True, {"llm": "llm", "verifiable": "verifiable", "both": "both"}),
    (True, False, {"llm": None, "verifiable": "verifiable", "both": None}),
    (False, True, {"llm": "llm", "verifiable": None, "both": None}),
    (False, False, {"llm": None, "verifiable": None, "both": None}),
])
def test_fixed_modes(code: bool, llm: bool, expected: dict) -> None:
    for mode, by in expected.items():
        a = accept(verdict(code=code, llm=llm), CRITERIA, cfg(mode))
        assert a.accepted is (by is not None), (mode, a)
        assert a.by == by and a.mode == mode
        if not a.accepted:
            assert a.reasons  # a rejection always says why


def test_verifiable_needs_checks_that_verify_the_outcome() -> None:
    # Code checks pass, but they only say that no tool was called: code alone must not accept that.
    a = accept(verdict(code=True, llm=True, verifiable=False), CRITERIA, cfg("verifiable"))
    assert not a.accepted and "no code check verifies" in a.reasons[0]
    assert accept(verdict(code=None, llm=True, verifiable=False), CRITERIA, cfg("verifiable")).accepted is False
    # A trajectory that cannot be training data is rejected in every mode.
    for mode in ("llm", "verifiable", "both", "auto"):
        assert not accept(verdict(code=True, llm=True, eligible=False), CRITERIA, cfg(mode)).accepted


def test_verifies_outcome() -> None:
    crit = [Criterion(id="a", description="a")]
    assert not verifies_outcome(Rubric(criteria=crit, checks=[CodeCheck(id="n", kind="no_tool_called")]))
    assert not verifies_outcome(Rubric(criteria=crit, checks=[CodeCheck(id="t", kind="tool_called", tool="x")]))
    # A call check with no arguments to compare says no more than tool_called.
    assert not verifies_outcome(Rubric(criteria=crit, checks=[CodeCheck(id="t", kind="tool_called_with", tool="x")]))
    assert verifies_outcome(Rubric(criteria=crit, checks=[
        CodeCheck(id="t", kind="tool_called_with", tool="x", arguments={"city": "Oslo"})]))
    assert verifies_outcome(Rubric(criteria=crit, checks=[CodeCheck(id="s", kind="state_equals", path="/a", value=1)]))
    assert verifies_outcome(Rubric(criteria=crit, python_tests="assert f(1) == 2"))


def _run(pairs: list[tuple[bool, int, int]], extra: list[Verdict] = ()) -> list[Verdict]:
    """(code passed, grounding score, fluency score) per verifiable trajectory; llm decision from grounding."""
    return [verdict(code=c, llm=g > 0, grounding=g, fluency=f) for c, g, f in pairs] + list(extra)


# grounding tracks the code checks on 9 of 10; fluency is always 2 (agrees only when code passes: 4 of 10).
CALIBRATION_RUN = [(True, 2, 2)] * 4 + [(False, 0, 2)] * 5 + [(False, 2, 2)]


def test_calibration_numbers() -> None:
    unpaired = [verdict(code=True, llm=None), verdict(code=True, llm=True, verifiable=False)]
    cal = calibrate(_run(CALIBRATION_RUN, unpaired), trust_agreement=0.8, min_pairs=8)
    # The trajectory without a judge reply and the one code cannot verify are not pairs.
    assert cal.overall.pairs == 10 and cal.overall.agreement == pytest.approx(0.9)
    g, f = cal.criteria["grounding"], cal.criteria["fluency"]
    assert (g.pairs, g.agree, g.both_pass, g.code_only, g.llm_only, g.both_fail) == (10, 9, 4, 0, 1, 5)
    assert f.agreement == pytest.approx(0.4) and f.llm_only == 6
    # kappa: expected agreement for grounding = 0.4*0.5 + 0.6*0.5 = 0.5, so (0.9-0.5)/0.5 = 0.8
    assert g.kappa == pytest.approx(0.8)
    assert f.kappa == pytest.approx(0.0)  # always "met": all of its agreement is chance
    assert cal.trusted_criteria == ["grounding"]
    assert cal.summary()["criteria"]["fluency"]["trusted"] is False


def test_kappa_of_a_judge_that_always_fails() -> None:
    a = Agreement(pairs=0)
    for code in [False] * 9 + [True]:
        a.add(code, False)
    assert a.agreement == pytest.approx(0.9) and a.kappa == pytest.approx(0.0)


def test_agreement_by_chance_is_not_trusted() -> None:
    # Code never passes and the judge never passes: agreement 1.0, but nothing shows it can tell good from bad.
    cal = calibrate(_run([(False, 0, 0)] * 12), trust_agreement=0.8, min_pairs=8)
    assert cal.criteria["grounding"].agreement == 1.0 and cal.criteria["grounding"].kappa == 0.0
    assert cal.trusted_criteria == []


def test_auto_with_agreement_above_the_level() -> None:
    cal = calibrate(_run(CALIBRATION_RUN), trust_agreement=0.8, min_pairs=8)
    c = cfg("auto")
    # Verifiable and code passes: the trusted criterion (grounding) takes part; fluency (untrusted) does not.
    a = accept(verdict(code=True, llm=False, grounding=2, fluency=0), CRITERIA, c, cal)
    assert a.accepted and a.by == "both" and a.trusted == ["grounding"]
    a = accept(verdict(code=True, llm=False, grounding=0, fluency=2), CRITERIA, c, cal)
    assert not a.accepted and "grounding" in a.reasons[0]
    # Code cannot verify the task: the trusted criterion alone accepts it, against the same threshold.
    a = accept(verdict(code=None, llm=True, verifiable=False), CRITERIA, c, cal)
    assert a.accepted and a.by == "llm"
    # A failed code check is never overridden by the judge.
    assert not accept(verdict(code=False, llm=True), CRITERIA, c, cal).accepted


def test_auto_with_agreement_below_the_level() -> None:
    cal = calibrate(_run(CALIBRATION_RUN), trust_agreement=0.95, min_pairs=8)
    assert cal.trusted_criteria == []
    c = cfg("auto", trust_agreement=0.95)
    # Nothing trusted: code checks alone decide what they can verify...
    a = accept(verdict(code=True, llm=False, grounding=0, fluency=0), CRITERIA, c, cal)
    assert a.accepted and a.by == "verifiable" and a.trusted == []
    # ...and what they cannot verify is rejected, saying why.
    a = accept(verdict(code=None, llm=True, verifiable=False), CRITERIA, c, cal)
    assert not a.accepted and "no LLM criterion" in a.reasons[0] and "0.95" in a.reasons[0]


def test_auto_needs_enough_pairs() -> None:
    cal = calibrate(_run(CALIBRATION_RUN[:4] + CALIBRATION_RUN[4:7]), trust_agreement=0.8, min_pairs=8)
    assert cal.criteria["grounding"].agreement == 1.0 and cal.trusted_criteria == []


def test_threshold_is_never_lowered() -> None:
    # Trusted grounding scored 1 (0.5) is below a 0.6 threshold over the trusted subset: rejected.
    cal = calibrate(_run(CALIBRATION_RUN), trust_agreement=0.8, min_pairs=8)
    a = accept(verdict(code=True, llm=True, grounding=1, fluency=2), CRITERIA, cfg("auto", pass_threshold=0.6), cal)
    assert not a.accepted and "pass_threshold" in a.reasons[0] and "0.60" in a.reasons[0]


def test_run_acceptance_joins_tasks() -> None:
    task = TaskRecord(id="t", rubric=Rubric(criteria=CRITERIA))
    records = [VerdictRecord(id=f"r{i}", task_id="t", verdict=v) for i, v in enumerate(_run(CALIBRATION_RUN))]
    decisions, cal = run_acceptance(records, {"t": task}, cfg("auto"))
    assert cal.trusted_criteria == ["grounding"]
    # 4 code passes, each with grounding 2 -> accepted by both; nothing else passes the code checks.
    assert sorted(i for i, a in decisions.items() if a.accepted) == ["r0", "r1", "r2", "r3"]
    assert {a.by for a in decisions.values() if a.accepted} == {"both"}


async def test_judge_records_what_each_side_said() -> None:
    from synth.judge.judge import judge_trajectory
    from tests.fixtures.fakes import ScriptedPool
    from tests.fixtures.judge import weather_task, weather_trajectory

    good = {"scores": [{"criterion_id": "grounding", "evidence": '{"temp_c": 18, "sky": "sunny"}', "score": 2},
                       {"criterion_id": "helpfulness", "evidence": "It is 18°C and sunny in Paris", "score": 2}],
            "summary": "fine"}
    v = await judge_trajectory(weather_trajectory(), weather_task(), ScriptedPool([good]), cfg("auto"), seed=1)
    assert (v.eligible, v.verifiable, v.code_passed, v.llm_passed) == (True, True, True, True)
    # The judge passes it, but the answer does not report the value the check looks for: the sides differ.
    v = await judge_trajectory(weather_trajectory(final="It is 18°C and sunny in Paris right now."),
                               weather_task(checks=[CodeCheck(id="m", kind="final_mentions", value="rain")]),
                               ScriptedPool([good]), cfg("auto"), seed=1)
    assert (v.code_passed, v.llm_passed, v.passed) == (False, True, False)
    # A judge reply that does not fit leaves the code's side usable.
    v = await judge_trajectory(weather_trajectory(), weather_task(), ScriptedPool(["not json"]), cfg("auto"), seed=1)
    assert (v.eligible, v.code_passed, v.llm_passed) == (True, True, None)
    assert accept(v, weather_task().rubric.criteria, cfg("auto")).by == "verifiable"
    # No final answer: not training data, whatever the checks say.
    v = await judge_trajectory(weather_trajectory(final=None), weather_task(), ScriptedPool([]), cfg("auto"), seed=1)
    assert v.eligible is False
