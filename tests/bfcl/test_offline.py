"""Scoring replies generated elsewhere: the exported requests are what scoring sends, under keys that parse back;
raw texts read by vLLM's own hermes parser get BFCL's verdicts; a selection that does not match the replies is
refused; and on the base model's recorded replies the offline path gives the online path's verdicts."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from synth.bfcl.data import BfclError, BfclItem, load_items, select
from synth.bfcl.offline import ToolCallReader, parse_key, read_replies, request_key, score_replies
from synth.bfcl.run import ITEMS, BfclSettings, read_records, read_summary
from synth.bfcl.score import request
from synth.cli import app
from synth.paths import REPO_ROOT
from synth.serve.checkpoint import ensure_checkpoint

CATEGORIES = ("simple_python", "parallel", "irrelevance")
SELECTION = ["--category", ",".join(CATEGORIES), "--limit", "3", "--seed", "0"]
SETTINGS = BfclSettings(categories=list(CATEGORIES), limit=3, seed=0)
RECORDED = REPO_ROOT / "bench" / "results" / "bfcl_base.items.jsonl.gz"


@pytest.fixture(scope="module")
def reader() -> ToolCallReader:
    return ToolCallReader(ensure_checkpoint())


def _chosen(category: str) -> list[BfclItem]:
    return select(load_items(category), 3, 0)


def _answer(item: BfclItem) -> list[tuple[str, dict[str, Any]]]:
    """BFCL's first possible answer of each call (an argument left out where that is allowed)."""
    calls = []
    for answer in item.ground_truth or []:
        (name, params), = answer.items()
        calls.append((name, {k: next(v for v in options if v != "") for k, options in params.items()
                             if "" not in options}))
    return calls


def _hermes(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """Calls as the tool template teaches the model to write them (FC names with underscores, as sent)."""
    return "\n".join(f'<tool_call>\n{json.dumps({"name": n.replace(".", "_"), "arguments": a})}\n</tool_call>'
                     for n, a in calls)


def _python(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """Calls as BFCL's prompt-mode system prompt asks for them."""
    return "[" + ", ".join(f"{n}({', '.join(f'{k}={v!r}' for k, v in a.items())})" for n, a in calls) + "]"


def _write(path: Path, texts: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"key": k, "text": t, "finish_reason": "stop"}) + "\n"
                            for k, t in texts.items()))
    return path


def _export(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "requests.jsonl"
    result = CliRunner().invoke(app, ["bfcl", "export", "--out", str(out), *SELECTION])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_export_writes_what_scoring_sends_under_keys_that_parse_back(tmp_path: Path) -> None:
    rows = _export(tmp_path)
    assert len(rows) == 2 * 3 * 3 and len({r["key"] for r in rows}) == len(rows)
    items = {(c, i.id): i for c in CATEGORIES for i in _chosen(c)}
    seen = set()
    for row in rows:
        mode, category, item_id = parse_key(row["key"])
        item = items[(category, item_id)]
        seen.add((mode, category, item_id))
        assert request_key(mode, item) == row["key"]
        messages, params = request(item, mode)
        assert row["messages"] == messages
        assert row["tools"] == params.get("tools")
        if mode == "fc":
            assert row["tools"] and row["messages"] == item.messages
        else:  # BFCL's own system prompt, listing the functions, is in the messages
            assert row["messages"][0]["role"] == "system" and item.functions[0]["name"] in row["messages"][0]["content"]
    assert seen == {(m, c, i) for m in ("fc", "prompt") for c, i in items}, "every selected item, in both modes"


@pytest.mark.parametrize("key", ["fc/simple_python", "chat/simple_python/simple_python_0",
                                 "fc/java/java_0", "fc/simple_python/", "fc/simple_python/a/b"])
def test_a_key_no_export_writes_is_refused(key: str) -> None:
    with pytest.raises(BfclError, match="not a BFCL request key"):
        parse_key(key)


def test_the_parser_is_vllms_hermes_and_reads_every_call(reader: ToolCallReader) -> None:
    from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser

    assert reader.parser_cls is Hermes2ProToolParser
    item = _chosen("parallel")[1]
    reply = reader.reply(item, "fc", "Two rates:\n" + _hermes(_answer(item)), "stop")
    assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls or []] == [
        ("get_exchange_rate", {"base_currency": "USD", "target_currency": "AUD"}),
        ("get_exchange_rate", {"base_currency": "USD", "target_currency": "CAD"})]
    assert reply.text == "Two rates:\n" and reply.finish_reason == "tool_calls"
    # Blank text before the call is no content, as vLLM's server sends it; a text without calls is the text.
    assert reader.reply(item, "fc", "\n " + _hermes(_answer(item)), "stop").text is None
    plain = reader.reply(item, "fc", "No idea.", "length")
    assert (plain.text, plain.tool_calls, plain.finish_reason) == ("No idea.", None, "length")


def test_a_block_the_parser_cannot_read_is_text_and_counted_without_a_traceback(
        reader: ToolCallReader, capfd: pytest.CaptureFixture[str]) -> None:
    item = _chosen("simple_python")[0]
    before = reader.unreadable
    broken = '<tool_call>\n{"name": "get_stock_price", "arguments": {company: AAPL}}\n</tool_call>'
    reply = reader.reply(item, "fc", broken, "stop")
    assert (reply.text, reply.tool_calls) == (broken, None)  # what vLLM's server returns for it
    assert reader.unreadable == before + 1
    assert "Traceback" not in "".join(capfd.readouterr())


def test_score_replies_gives_bfcls_verdicts_and_sits_beside_another_model(tmp_path: Path) -> None:
    requests = _export(tmp_path)
    right, prose, wrong_type = _chosen("simple_python")
    para = _chosen("parallel")[0]
    texts = {r["key"]: "I think the answer is 42." for r in requests}
    (name, args), = _answer(wrong_type)
    assert isinstance(args["date"], int)
    bad = [(name, {**args, "date": str(args["date"])})]
    texts |= {
        request_key("fc", right): _hermes(_answer(right)),
        request_key("fc", wrong_type): _hermes(bad),
        request_key("fc", prose): "The stock price of Microsoft and Google went up.",
        request_key("fc", para): _hermes(_answer(para)),  # two <tool_call> blocks: two calls, both needed
        request_key("prompt", right): "<|im_start|>" + _python(_answer(right)),  # special tokens: dropped
        request_key("prompt", wrong_type): _python(bad),
    }
    for item in _chosen("irrelevance"):
        texts[request_key("fc", item)] = ""
        texts[request_key("prompt", item)] = ""
    replies = _write(tmp_path / "trained.jsonl", texts)
    base = _write(tmp_path / "base.jsonl", {r["key"]: "Hello." for r in requests})
    out = tmp_path / "bfcl"
    for name_, path in (("base", base), ("trained", replies)):
        result = CliRunner().invoke(app, ["bfcl", "score-replies", "--replies", str(path), "--name", name_,
                                          "--out", str(out), *SELECTION])
        assert result.exit_code == 0, result.output

    rows = {(r.mode, r.id): r for r in read_records(out / ITEMS).values() if r.model == "trained"}
    assert len(rows) == 18 and all(r.endpoint == "offline" and r.raw_text == texts[f"{r.mode}/{r.category}/{r.id}"]
                                   for r in rows.values())
    assert rows[("fc", right.id)].valid and rows[("fc", right.id)].reply.tool_calls
    assert not rows[("fc", wrong_type.id)].valid
    assert (rows[("fc", wrong_type.id)].error_type or "").startswith("type_error")
    assert rows[("fc", prose.id)].error_type == "ast_decoder:decoder_failed"
    assert rows[("fc", para.id)].valid and len(rows[("fc", para.id)].reply.tool_calls or []) == 2
    assert rows[("prompt", right.id)].valid
    assert (rows[("prompt", wrong_type.id)].error_type or "").startswith("type_error")
    summary = read_summary(out)
    assert set(summary.models) == {"base", "trained"}
    trained = summary.models["trained"]
    assert {c: s.correct for c, s in trained["fc"].items()} == {"simple_python": 1, "parallel": 1, "irrelevance": 3}
    assert {c: s.correct for c, s in trained["prompt"].items()} == {"simple_python": 1, "parallel": 0,
                                                                    "irrelevance": 3}
    assert {c: s.correct for c, s in summary.models["base"]["fc"].items()} == {
        "simple_python": 0, "parallel": 0, "irrelevance": 3}
    run = summary.runs["trained"]
    assert run.offline and "generate.py" in run.offline.generator and "Hermes2ProToolParser" in \
        run.offline.tool_parser and run.offline.replies == str(replies)
    page = (out / "summary.md").read_text()
    assert "| trained | fc |" in page and "| base | fc |" in page and "generated offline" in page

    size = (out / ITEMS).stat().st_size
    again = CliRunner().invoke(app, ["bfcl", "score-replies", "--replies", str(replies), "--name", "trained",
                                     "--out", str(out), *SELECTION])
    assert again.exit_code == 0, again.output
    assert (out / ITEMS).stat().st_size == size and read_summary(out).runs["trained"].resumed == 18


def test_replies_that_do_not_match_the_selection_are_refused(tmp_path: Path) -> None:
    requests = _export(tmp_path)
    replies = _write(tmp_path / "r.jsonl", {r["key"]: "" for r in requests})
    tokenizer = ensure_checkpoint()
    everything = BfclSettings(categories=list(CATEGORIES))  # the export's --limit forgotten
    with pytest.raises(BfclError, match="have no reply") as err:
        score_replies(replies, "m", tmp_path / "out", everything, tokenizer)
    assert "3 fc/simple_python" in err.value.hint
    fewer = BfclSettings(categories=["simple_python"], limit=3, seed=0)
    with pytest.raises(BfclError, match="outside this selection"):
        score_replies(replies, "m", tmp_path / "out", fewer, tokenizer)
    missing = _write(tmp_path / "m.jsonl", {r["key"]: "" for r in requests[1:]})
    summary = score_replies(missing, "m", tmp_path / "out", SETTINGS, tokenizer, allow_missing=True)
    assert summary.models["m"]["fc"]["simple_python"].unanswered == 1
    _write(tmp_path / "dup.jsonl", {"x": ""})
    (tmp_path / "dup.jsonl").write_text((tmp_path / "dup.jsonl").read_text() * 2)
    with pytest.raises(BfclError, match="two replies"):
        read_replies(tmp_path / "dup.jsonl")


def test_offline_scoring_agrees_with_the_online_scorer_on_recorded_replies(tmp_path: Path) -> None:
    """The base model's replies as the server sent them (none carried tool_calls, so each text is the raw text;
    prompt-mode texts had special tokens skipped already), read back offline: the same verdict for every item."""
    with gzip.open(RECORDED, "rt") as fh:
        online = [json.loads(line) for line in fh if line.strip()]
    assert len(online) == 500 and all(r["reply"]["tool_calls"] is None for r in online)
    texts = {f"{r['mode']}/{r['category']}/{r['id']}": r["reply"]["text"] for r in online}
    replies = _write(tmp_path / "base.jsonl", texts)
    settings = BfclSettings(limit=50, seed=0, max_tokens=online[0]["max_tokens"])
    score_replies(replies, "base-offline", tmp_path, settings, ensure_checkpoint())
    offline = {(r.mode, r.category, r.id): r for r in read_records(tmp_path / ITEMS).values()}
    assert len(offline) == len(online)
    for row in online:
        mine = offline[(row["mode"], row["category"], row["id"])]
        assert (mine.valid, mine.error_type, mine.decoded, mine.reply.text if mine.reply else None) == (
            row["valid"], row["error_type"], row["decoded"], row["reply"]["text"]), row["id"]


def test_synth_bfcl_without_a_subcommand_still_scores_a_served_model() -> None:
    """The scoring options stay on `synth bfcl` itself: with no subcommand they reach the endpoint."""
    result = CliRunner().invoke(app, ["bfcl", "--model", "http://127.0.0.1:9/v1", "--category", "irrelevance",
                                      "--limit", "1"])
    assert isinstance(result.exception, BfclError) and "did not answer" in str(result.exception)


def test_scoring_options_before_a_subcommand_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bfcl", "--limit", "3", "export", "--out", str(tmp_path / "r.jsonl")])
    said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich's box, whatever the width
    assert result.exit_code == 2 and "--limit is for scoring a served model" in said
    assert not (tmp_path / "r.jsonl").exists()
