"""Judge evidence must be quoted from the part of the transcript its criterion names."""

from __future__ import annotations

from synth.judge.judge import check_reply
from synth.judge.transcript import evidence_haystacks
from synth.schemas.rubric import Criterion
from synth.schemas.verdict import CriterionScore, JudgeReply
from synth.tasks.rubrics import default_library
from tests.fixtures.judge import weather_trajectory

FLUENCY = Criterion(id="fluency", description="fluent text", evidence_from=["assistant"])
TOOL_USE = Criterion(id="tool_use", description="right calls", evidence_from=["assistant_call"])
ANYWHERE = Criterion(id="task_1", description="mentions the weather")


def _scores(*pairs: tuple[str, str]) -> JudgeReply:
    return JudgeReply(scores=[CriterionScore(criterion_id=c, evidence=e, score=2) for c, e in pairs], summary="ok")


def test_quote_from_the_wrong_part_scores_zero_and_says_where_it_must_come_from() -> None:
    haystacks = evidence_haystacks(weather_trajectory())
    # The user's words are no evidence that the assistant wrote fluently; a tool result is no tool call.
    reply = _scores(
        ("fluency", "What's the weather in Paris?"),
        ("tool_use", '"temp_c": 18, "sky": "sunny"'),
        ("task_1", "What's the weather in Paris?"),
    )
    scores, notes = check_reply(reply, [FLUENCY, TOOL_USE, ANYWHERE], haystacks)
    assert [s.score for s in scores] == [0, 0, 2]
    assert "must come from assistant" in (scores[0].note or "")
    assert "must come from assistant_call" in (scores[1].note or "")
    assert len(notes) == 2


def test_quote_from_the_named_part_keeps_its_score() -> None:
    haystacks = evidence_haystacks(weather_trajectory())
    reply = _scores(("fluency", "It is 18°C and sunny in Paris"), ("tool_use", '{"city": "Paris"}'))
    scores, notes = check_reply(reply, [FLUENCY, TOOL_USE], haystacks)
    assert [s.score for s in scores] == [2, 2] and notes == []


def test_invented_quote_is_reported_as_not_found() -> None:
    scores, _ = check_reply(_scores(("fluency", "It is raining cats and dogs")), [FLUENCY],
                            evidence_haystacks(weather_trajectory()))
    assert scores[0].score == 0 and "not found" in (scores[0].note or "")


def test_every_shipped_criterion_names_where_its_evidence_comes_from() -> None:
    library = default_library()
    for criterion in [*library.core, *library.prescriptive]:
        assert criterion.evidence_from, criterion.id
