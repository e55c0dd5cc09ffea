"""The judge's token budget holds the longest reply its schema allows, so a reply is never cut and re-sampled.

A small judge given room fills its quotes until its replies hit max_tokens, and every cut reply is generated twice
for nothing (docs/studies/embedded-acceptance.md). The budget is checked with the embedded model's
own tokenizer on the worst text a small judge writes (digits and punctuation, close to one token per character).
"""

from __future__ import annotations

import json

import pytest

from synth.judge.judge import (
    EVIDENCE_MAX_CHARS,
    SUMMARY_MAX_CHARS,
    SUMMARY_TOKENS,
    TOKENS_PER_CRITERION,
    judge_json_schema,
    judge_trajectory,
)
from synth.schemas.rubric import Criterion
from tests.fixtures.fakes import ScriptedPool

# Criterion ids as long as the rubric library's longest, and as many as a task's rubric can hold.
IDS = ["no_invented_results", "handles_tool_errors", "refuses_appropriately", "asks_clarification", "grounding",
       "helpfulness", "tool_use", "fluency", "clarity", "task_1", "task_2", "task_3", "task_4"]
RAMBLE = "1933.0 [{'a': 1}], 2021-11-03 12:00; #42 @x ~7 "


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from synth.serve.checkpoint import ensure_checkpoint

    return AutoTokenizer.from_pretrained(ensure_checkpoint())


def _longest_reply(ids: list[str]) -> str:
    quote = (RAMBLE * 10)[:EVIDENCE_MAX_CHARS]
    scores = [{"criterion_id": cid, "evidence": quote, "score": 2} for cid in ids]
    # Spaces after separators, as guided decoding lets the model write them.
    return json.dumps({"scores": scores, "summary": (RAMBLE * 10)[:SUMMARY_MAX_CHARS]}, ensure_ascii=False)


def test_longest_reply_fits_the_budget(tokenizer) -> None:
    for n in (1, 5, len(IDS)):
        text = _longest_reply(IDS[:n])
        tokens = len(tokenizer(text).input_ids)
        assert tokens <= TOKENS_PER_CRITERION * n + SUMMARY_TOKENS, (n, tokens)


def test_schema_bounds_quote_and_summary() -> None:
    schema = judge_json_schema([Criterion(id="grounding", description="d")])
    zero, positive = schema["properties"]["scores"]["prefixItems"][0]["anyOf"]
    assert positive["properties"]["evidence"]["maxLength"] == EVIDENCE_MAX_CHARS
    assert schema["properties"]["summary"]["maxLength"] == SUMMARY_MAX_CHARS
    # The quote comes first; an empty one allows only a 0.
    assert list(zero["properties"]) == ["criterion_id", "evidence", "score"]
    assert zero["properties"]["score"]["const"] == 0 and zero["properties"]["evidence"]["const"] == ""
    import jsonschema
    slot = schema["properties"]["scores"]["prefixItems"][0]
    jsonschema.validate({"criterion_id": "grounding", "score": 0, "evidence": ""}, slot)
    jsonschema.validate({"criterion_id": "grounding", "score": 2, "evidence": "It is sunny"}, slot)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"criterion_id": "grounding", "score": 2, "evidence": ""}, slot)


async def test_judge_request_asks_for_the_budget() -> None:
    from synth.config import JudgeStageConfig
    from tests.fixtures.judge import weather_task, weather_trajectory

    task = weather_task()
    pool = ScriptedPool([{"scores": [], "summary": "x"}])
    await judge_trajectory(weather_trajectory(), task, pool, JudgeStageConfig(), seed=0)
    n = len(task.rubric.criteria)
    assert pool.calls[0]["params"]["max_tokens"] == TOKENS_PER_CRITERION * n + SUMMARY_TOKENS
