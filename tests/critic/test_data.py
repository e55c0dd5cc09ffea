"""Critic examples from a judged run: outcome from the check, quote in the transcript, split by tool group,
dedup, balance, and the prompt/target format the judge stage reads."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from synth.critic.data import CriticError, build, check_criterion, criterion_library, load_examples
from synth.judge.judge import EVIDENCE_MIN_CHARS, judge_json_schema
from synth.judge.transcript import evidence_found
from synth.schemas.rubric import CodeCheck
from synth.schemas.verdict import JudgeReply
from tests.fixtures.critic import SHARE, write_critic_run


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from synth.serve.checkpoint import ensure_checkpoint

    return AutoTokenizer.from_pretrained(ensure_checkpoint())


def _build(tmp_path: Path, tokenizer, **kw):  # type: ignore[no-untyped-def]
    run = write_critic_run(tmp_path / "runs", duplicate=kw.pop("duplicate", False))
    summary = build([run], tmp_path / "critic", heldout_share=SHARE, tokenizer=tokenizer, **kw)
    return summary, load_examples(tmp_path / "critic" / "train.jsonl"), load_examples(
        tmp_path / "critic" / "heldout.jsonl")


def test_outcome_and_reason_come_from_the_check(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, train, held = _build(tmp_path, tokenizer)
    for e in train + held:
        reply = JudgeReply.model_validate_json(e.messages[2]["content"])
        (score,) = reply.scores
        assert score.score == (2 if e.passed else 0)
        assert score.criterion_id == e.criterion_id
        assert reply.summary == e.reason[:80] or reply.summary.endswith("...")
        # The fixture's good episodes pass both checks, the bad ones fail both.
        assert e.passed == e.trajectory_id.endswith("-ok")


def test_quotes_are_in_the_transcript_shown_and_in_the_criterions_parts(
        tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, train, held = _build(tmp_path, tokenizer)
    for e in train + held:
        if e.passed:
            assert e.evidence, e
        if e.evidence:
            assert evidence_found(e.evidence, e.haystack, EVIDENCE_MIN_CHARS)[0]
            assert e.evidence.casefold() in e.messages[1]["content"].casefold()
    calls = [e for e in train + held if e.check_kind == "call_made_with"]
    # The quote is the call the check looked at: the right city when it passed, the wrong one when it failed.
    assert all(("Paris" in e.evidence) != e.passed for e in calls)


def test_split_by_tool_group_and_no_tool_on_both_sides(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    summary, train, held = _build(tmp_path, tokenizer)
    assert train and held
    assert {n for e in held for n in e.agent_tools} == {"get_alerts"}
    assert {n for e in train for n in e.agent_tools} == {"get_weather"}
    assert summary.splits["heldout"]["tools"] == ["get_alerts"]
    rows = [json.loads(line) for line in (tmp_path / "critic" / "train.jsonl").read_text().splitlines()]
    from synth.data.heldout import row_side

    assert all(row_side(r, SHARE) == "train" for r in rows)  # what the trainer's held-out filter reads


def test_balanced_by_outcome(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, train, held = _build(tmp_path, tokenizer)
    for rows in (train, held):
        assert sum(e.passed for e in rows) == sum(not e.passed for e in rows) > 0


def test_identical_episodes_give_one_example(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    summary, train, held = _build(tmp_path, tokenizer, duplicate=True)
    ids = [e.id for e in train + held]
    assert len(ids) == len(set(ids))
    assert summary.dropped["duplicate prompt"] == len(ids)


def test_examples_above_the_token_limit_are_dropped_and_counted(
        tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, train, held = _build(tmp_path, tokenizer)
    limit = sorted(e.tokens for e in train + held)[len(train + held) // 2]
    summary = build([tmp_path / "runs" / "crit"], tmp_path / "short", heldout_share=SHARE, tokenizer=tokenizer,
                    max_tokens=limit)
    kept = load_examples(tmp_path / "short" / "train.jsonl") + load_examples(tmp_path / "short" / "heldout.jsonl")
    assert kept and all(e.tokens <= limit for e in kept)
    assert summary.dropped["too long"] > 0
    with pytest.raises(CriticError):
        build([tmp_path / "runs" / "crit"], tmp_path / "none", heldout_share=SHARE, tokenizer=tokenizer,
              max_tokens=50)


def test_prompt_is_the_judges_with_one_criterion_and_the_target_fits_its_schema(
        tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    _, train, _ = _build(tmp_path, tokenizer)
    e = train[0]
    system, user, target = e.messages
    assert system["role"] == "system" and "strict judge" in system["content"]
    assert user["content"].count("\n- ") >= 1 and f"- {e.criterion_id}: " in user["content"]
    assert "Here: " in e.criterion.description
    jsonschema.validate(json.loads(target["content"]), judge_json_schema([e.criterion]))


def test_each_check_kind_maps_to_a_rubric_criterion() -> None:
    library = criterion_library()
    check = CodeCheck(id="c", kind="call_made_with", tool="t", description="calls t with {'a': 1}")
    got = check_criterion(check, [], library)
    assert got.id == "tool_use" and got.description.endswith("Here: calls t with {'a': 1}.")
    assert check_criterion(CodeCheck(id="r", kind="reports_result", tool="t"), [], library).id == "grounding"
    assert check_criterion(None, [], library).id == "helpfulness"  # a coding task's tests
