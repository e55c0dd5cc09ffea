"""Scoring a served model: every reply kept, BFCL's verdicts summed, resumable, a dead endpoint named.

The endpoint is a scripted OpenAI-compatible server (control flow only; the integration test scores a real model).
Its "oracle" model answers every AST item with BFCL's own first possible answer and abstains on irrelevance, so a
correct pipeline scores it 100% everywhere; the "mute" model answers in prose.
"""

from __future__ import annotations

import json
import socket
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from synth.bfcl.data import BfclError, BfclItem, load_items
from synth.bfcl.run import ITEMS, BfclSettings, read_records, read_summary, score_model
from synth.config import EndpointConfig, LLMConfig
from tests.fixtures.fake_openai import FakeServer, completion

LLM = LLMConfig(max_retries=0, timeout_s=30)
SETTINGS = BfclSettings(categories=["simple_python", "parallel", "irrelevance"], limit=3, seed=0, max_tokens=64)


@cache
def _by_question() -> dict[str, BfclItem]:
    return {i.question(): i for c in ("simple_python", "parallel", "irrelevance") for i in load_items(c)}


def _oracle_calls(item: BfclItem) -> list[tuple[str, dict[str, Any]]]:
    calls = []
    for answer in item.ground_truth or []:
        (name, params), = answer.items()
        calls.append((name, {k: next(v for v in options if v != "") for k, options in params.items()
                             if any(v != "" for v in options)}))
    return calls


def _tool_completion(calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    body = completion("")
    body["choices"][0]["message"] = {"role": "assistant", "content": None, "tool_calls": [
        {"id": f"call-{i}", "type": "function", "function": {"name": name.replace(".", "_"),
                                                             "arguments": json.dumps(args)}}
        for i, (name, args) in enumerate(calls)]}
    body["choices"][0]["finish_reason"] = "tool_calls"
    return body


def oracle(_n: int, body: dict[str, Any]) -> tuple[int, Any]:
    question = next(m["content"] for m in body["messages"] if m["role"] == "user")
    calls = _oracle_calls(_by_question()[question])
    if not calls:
        return 200, completion("None of these functions can do that.")
    if "tools" in body:
        return 200, _tool_completion(calls)
    text = ", ".join(f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})" for name, args in calls)
    return 200, completion(f"[{text}]", prompt_tokens=300, completion_tokens=20)


def mute(_n: int, _body: dict[str, Any]) -> tuple[int, Any]:
    return 200, completion("The answer is 42.")


async def test_every_reply_is_kept_with_bfcls_verdict_and_summed(tmp_path: Path) -> None:
    async with FakeServer(oracle) as server:
        summary = await score_model([EndpointConfig(base_url=server.url)], LLM, SETTINGS, tmp_path, progress=False)
    assert len(server.requests) == 2 * 3 * 3
    fc_bodies = [b for b in server.requests if "tools" in b]
    assert len(fc_bodies) == 9 and all(b["max_tokens"] == 64 and b["temperature"] == 0.0 for b in server.requests)
    scores = summary.models["fake-model"]
    for mode in ("fc", "prompt"):
        assert {c: (s.n, s.accuracy) for c, s in scores[mode].items()} == {
            "simple_python": (3, 1.0), "parallel": (3, 1.0), "irrelevance": (3, 1.0)}
    assert scores["fc"]["parallel"].tool_call_replies == 3
    assert summary.non_live_mean["fake-model"] == {"fc": None, "prompt": None}  # not all four AST categories
    rows = read_records(tmp_path / ITEMS)
    assert len(rows) == 18
    row = next(r for r in rows.values() if r.mode == "fc" and r.category == "parallel")
    assert row.valid and row.reply is not None and len(row.reply.tool_calls or []) >= 2
    assert row.decoded and row.endpoint == server.url and row.model == "fake-model"
    text = next(r for r in rows.values() if r.mode == "prompt" and r.category == "simple_python")
    assert text.reply and text.reply.text and text.reply.text.startswith("[") and text.prompt_tokens == 300
    assert read_summary(tmp_path) == summary
    page = (tmp_path / "summary.md").read_text()
    assert "| fake-model | fc | 100.0% (3) | 100.0% (3) | 100.0% (3) |  |" in page


async def test_a_model_that_answers_in_prose_scores_zero_but_irrelevance(tmp_path: Path) -> None:
    settings = SETTINGS.model_copy(update={"categories": ["simple_python", "multiple", "parallel",
                                                          "parallel_multiple", "irrelevance"], "limit": 2})
    async with FakeServer(mute) as server:
        summary = await score_model([EndpointConfig(base_url=server.url)], LLM, settings, tmp_path, progress=False)
    for mode in ("fc", "prompt"):
        per = summary.models["fake-model"][mode]
        assert [per[c].accuracy for c in per] == [0.0, 0.0, 0.0, 0.0, 1.0]
        assert summary.non_live_mean["fake-model"][mode] == 0.0
    row = next(iter(read_records(tmp_path / ITEMS).values()))
    assert row.error_type == "ast_decoder:decoder_failed" and row.reply and row.reply.text == "The answer is 42."


async def test_a_rerun_asks_only_what_is_not_scored_yet(tmp_path: Path) -> None:
    flaky = {"first": True}

    def script(n: int, body: dict[str, Any]) -> tuple[int, Any]:
        if flaky["first"] and n == 2:
            return 400, {"error": {"message": "prompt too long"}}
        return oracle(n, body)

    async with FakeServer(script) as server:
        ep = [EndpointConfig(base_url=server.url)]
        first = await score_model(ep, LLM, SETTINGS, tmp_path, progress=False)
        assert len(server.requests) == 18
        assert sum(c.unanswered for per in first.models["fake-model"].values() for c in per.values()) == 1
        flaky["first"] = False
        second = await score_model(ep, LLM, SETTINGS, tmp_path, progress=False)
        assert len(server.requests) == 19  # only the failed one again
        assert second.runs["fake-model"].resumed == 17
        assert all(c.accuracy == 1.0 and c.unanswered == 0 for per in second.models["fake-model"].values()
                   for c in per.values())
        await score_model(ep, LLM, SETTINGS, tmp_path, progress=False)
        assert len(server.requests) == 19  # all scored: nothing asked
        # Other sampling settings are another run: asked again, kept beside the first.
        await score_model(ep, LLM, SETTINGS.model_copy(update={"max_tokens": 32, "modes": ["prompt"]}), tmp_path,
                          progress=False)
        assert len(server.requests) == 19 + 9
    assert len(read_records(tmp_path / ITEMS)) == 18 + 9


async def test_a_killed_run_keeps_the_rows_it_finished(tmp_path: Path) -> None:
    (tmp_path / ITEMS).write_text('{"model": "fake-model", "mode": "fc", "cate')  # a line cut by a kill
    async with FakeServer(oracle) as server:
        await score_model([EndpointConfig(base_url=server.url)], LLM, SETTINGS, tmp_path, progress=False)
    assert len(read_records(tmp_path / ITEMS)) == 18


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_dead_endpoint_is_a_synth_error_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(BfclError) as err:
        await score_model([EndpointConfig(base_url=url)], LLM, SETTINGS, tmp_path, progress=False)
    assert url in str(err.value) and "SYNTH_BASE_URL" in err.value.hint


async def test_an_endpoint_that_fails_mid_run_stops_it_with_a_synth_error(tmp_path: Path) -> None:
    async with FakeServer(lambda n, b: (503, {"error": {"message": "engine dead"}})) as server:
        with pytest.raises(BfclError, match="stopped answering") as err:
            await score_model([EndpointConfig(base_url=server.url)], LLM, SETTINGS, tmp_path, progress=False)
    assert "kept" in err.value.hint


async def test_a_model_the_endpoint_does_not_serve_is_refused(tmp_path: Path) -> None:
    async with FakeServer(oracle) as server:
        with pytest.raises(BfclError, match="serves fake-model, not 'other'"):
            await score_model([EndpointConfig(base_url=server.url)], LLM, SETTINGS, tmp_path, model="other",
                              progress=False)
        assert server.requests == []


async def test_every_request_failing_is_an_error_not_a_score_of_zero(tmp_path: Path) -> None:
    async with FakeServer(lambda n, b: (400, {"error": {"message": "unknown parameter"}})) as server:
        with pytest.raises(BfclError, match="every request failed"):
            await score_model([EndpointConfig(base_url=server.url)], LLM, SETTINGS, tmp_path, progress=False)
    assert all(r.request_error for r in read_records(tmp_path / ITEMS).values())


def test_modes_and_categories_from_the_command_line() -> None:
    s = BfclSettings.parse("prompt,fc", "all")
    assert s.modes == ["fc", "prompt"] and len(s.categories) == 5
    assert BfclSettings.parse("prompt", "irrelevance,simple_python").categories == ["simple_python", "irrelevance"]
    with pytest.raises(BfclError, match="unknown BFCL mode"):
        BfclSettings.parse("native", "all")
