"""BFCL scored from replies generated elsewhere: the requests exported, the raw texts read back as a server would.

Where vLLM cannot run (a lent GPU machine has torch and transformers only), ``export_requests`` writes what each
(item, mode) would send: the messages and, in FC mode, the ``tools`` exactly as ``request()`` sends them (prompt
mode carries BFCL's system prompt in the messages and no tools). ``bench/gpu/generate.py`` renders them with the
same chat template the server uses and generates greedily; ``score_replies`` then turns each raw text into the
``Reply`` the server would have returned and scores it with ``score()``, into the same ``items.jsonl`` /
``summary.json`` / ``summary.md`` as ``synth bfcl``, so a base and its trained models sit side by side.

How a text becomes a ``Reply``, restating vLLM's non-streaming chat path (``OpenAIServingChat`` with
``--enable-auto-tool-choice --tool-call-parser hermes``; BFCL's requests leave ``tool_choice`` unset, which vLLM
makes ``auto`` when tools are sent):

- FC mode: the text goes through vLLM's own parser class, the one ``--tool-call-parser hermes`` loads
  (``Hermes2ProToolParser.extract_tool_calls``), built with the checkpoint's tokenizer as vLLM loads it. When it
  finds calls, the reply has them as ``tool_calls`` (name, arguments as a JSON string), its content is the text
  before the first call (None when blank) and its finish reason ``tool_calls``; otherwise the reply is the text as
  is. vLLM decodes FC replies with special tokens kept (the hermes parser asks for that), as the generator does.
- Prompt mode: the text as is, less the tokenizer's special tokens (vLLM skips them when no tools are sent).
- A request vLLM's request model refuses (the server would answer 400) is that item's request error, as online.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synth.bfcl.data import CATEGORIES, BfclError, BfclItem
from synth.bfcl.package import load
from synth.bfcl.run import (
    ITEMS,
    BfclSettings,
    BfclSummary,
    ItemRecord,
    ModelRun,
    OfflineSource,
    append_records,
    plan,
    read_records,
    summarize,
    write_summary,
)
from synth.bfcl.score import Mode, RawToolCall, Reply, request, score
from synth.machine import machine_info
from synth.tool_format import TOOL_CALL_OPEN, TOOL_CALL_PARSER

log = logging.getLogger(__name__)

GENERATOR = "bench/gpu/generate.py (transformers generate, greedy)"
"""What generated the replies unless told otherwise."""
OFFLINE_ENDPOINT = "offline"
"""The endpoint field of rows scored from generated texts."""
KEY_SEP = "/"


class ExportedRequest(BaseModel):
    """One line of the exported requests: what one (item, mode) sends, as ``bench/gpu/generate.py`` reads it."""

    key: str = Field(description="mode/category/item id (see request_key).")
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="FC mode: the tools as sent to the server; prompt mode: None (BFCL's system "
        "prompt is in the messages).")


class GeneratedReply(BaseModel):
    """One line of a generator's replies: the raw text of one request's reply."""

    model_config = ConfigDict(extra="ignore")

    key: str
    text: str
    finish_reason: str | None = None


def request_key(mode: Mode, item: BfclItem) -> str:
    """The key of ``item``'s request in ``mode``: ``mode/category/id`` (BFCL ids hold no slash)."""
    return KEY_SEP.join((mode, item.category, item.id))


def parse_key(key: str) -> tuple[Mode, str, str]:
    """(mode, category, item id) of a request key; a ``BfclError`` for one no export writes."""
    parts = key.split(KEY_SEP)
    if len(parts) != 3 or parts[0] not in get_args(Mode) or parts[1] not in CATEGORIES or not parts[2]:
        raise BfclError(f"{key!r} is not a BFCL request key (mode/category/id, e.g. fc/simple_python/"
                        "simple_python_0)", hint="score the replies to requests `synth bfcl export` wrote")
    return cast(Mode, parts[0]), parts[1], parts[2]


def export_requests(settings: BfclSettings, path: Path) -> int:
    """Write every (item, mode) request ``settings`` selects to ``path`` as JSONL; the number written."""
    items = plan(settings)
    rows = []
    for mode in settings.modes:
        for chosen in items.values():
            for item in chosen:
                messages, params = request(item, mode)
                rows.append(ExportedRequest(key=request_key(mode, item), messages=messages,
                                            tools=params.get("tools")))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    tmp.replace(path)
    return len(rows)


class ToolCallReader:
    """A generated text as the server would return it (see the module docstring), with vLLM's own parser."""

    def __init__(self, tokenizer_dir: Path, parser: str = TOOL_CALL_PARSER) -> None:
        try:
            # Imported here: vLLM is heavy (torch) and only reading FC replies needs it.
            from vllm import __version__ as vllm_version
            from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
            from vllm.tokenizers import get_tokenizer
            from vllm.tool_parsers import ToolParserManager
        except ImportError as exc:
            raise BfclError(f"vLLM could not be imported ({exc}); its tool parser reads the FC replies",
                            hint="install the project with its cpu extra (`make install`)") from exc
        if not (tokenizer_dir / "tokenizer_config.json").exists():
            raise BfclError(f"{tokenizer_dir} holds no tokenizer (no tokenizer_config.json)",
                            hint="pass --tokenizer with the checkpoint folder whose replies these are")
        self.tokenizer = get_tokenizer(str(tokenizer_dir))
        self.parser_cls = ToolParserManager.get_tool_parser(parser)
        self.parser_name = parser
        self.vllm_version = vllm_version
        self._request_cls = ChatCompletionRequest
        added = getattr(self.tokenizer, "added_tokens_decoder", {}) or {}
        special = {t.content for t in added.values() if getattr(t, "special", False)}
        self.special_tokens = sorted(special | set(self.tokenizer.all_special_tokens), key=len, reverse=True)
        # The parser logs a traceback for each block it cannot read (into the server's log, online); here that
        # would bury the command's output, so those replies are counted instead (``unreadable``).
        self._parser_log = logging.getLogger(self.parser_cls.__module__)
        self.unreadable = 0

    def describe(self) -> str:
        return f"{self.parser_name} ({self.parser_cls.__name__})"

    def reply(self, item: BfclItem, mode: Mode, text: str, finish_reason: str | None) -> Reply:
        """The ``Reply`` the server would have sent for ``text``; a ``ValidationError`` when vLLM's request model
        refuses ``item``'s request (the server would have answered 400)."""
        if mode == "prompt":
            for token in self.special_tokens:
                text = text.replace(token, "")
            return Reply(text=text, finish_reason=finish_reason)
        messages, params = request(item, mode)
        req = self._request_cls(model=OFFLINE_ENDPOINT, messages=messages, **params)
        quiet, self._parser_log.disabled = self._parser_log.disabled, True
        try:
            info = self.parser_cls(self.tokenizer).extract_tool_calls(text, req)
        finally:
            self._parser_log.disabled = quiet
        if not (info.tools_called and info.tool_calls):
            self.unreadable += int(TOOL_CALL_OPEN in text)
            return Reply(text=text, finish_reason=finish_reason)
        content = info.content if info.content and info.content.strip() else None
        return Reply(text=content, finish_reason="tool_calls",
                     tool_calls=[RawToolCall(name=c.function.name, arguments=c.function.arguments or "")
                                 for c in info.tool_calls])


def read_replies(path: Path) -> dict[str, GeneratedReply]:
    """The replies in ``path`` by key; a ``BfclError`` for a line that is not one, or a key given twice."""
    if not path.is_file():
        raise BfclError(f"no replies file at {path}", hint="pass the JSONL bench/gpu/generate.py wrote (--replies)")
    out: dict[str, GeneratedReply] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = GeneratedReply.model_validate_json(line)
        except ValidationError as exc:
            raise BfclError(f"{path} line {n} is not a reply ({{key, text, finish_reason}}): "
                            f"{exc.errors()[0]['msg']}", hint="pass the JSONL bench/gpu/generate.py wrote") from exc
        if row.key in out:
            raise BfclError(f"{path} holds two replies to {row.key}", hint="keep one reply per request")
        out[row.key] = row
    return out


def _selection_hint(replies: dict[str, GeneratedReply]) -> str:
    held = Counter(KEY_SEP.join(k.split(KEY_SEP)[:2]) for k in replies)
    return ("pass the --mode, --category, --limit and --seed the export used (the replies hold "
            + ", ".join(f"{n} {what}" for what, n in sorted(held.items())) + ")")


def score_replies(replies_path: Path, name: str, out: Path, settings: BfclSettings, tokenizer_dir: Path, *,
                  generator: str = GENERATOR, allow_missing: bool = False) -> BfclSummary:
    """Score the generated replies in ``replies_path`` as model ``name`` and update ``out``'s summary.

    ``settings`` selects the items as the export did; every selected request needs a reply (``allow_missing``:
    one without counts as wrong, as a failed request does online) and every reply must answer a selected request.
    """
    started = time.monotonic()
    if not name.strip():
        raise BfclError("the model name is empty", hint="pass --name, e.g. base or the trained model's name")
    replies = read_replies(replies_path)
    items = plan(settings)
    planned: dict[str, tuple[Mode, BfclItem]] = {
        request_key(mode, item): (mode, item) for mode in settings.modes for chosen in items.values()
        for item in chosen}
    unplanned = [k for k in replies if k not in planned]
    for key in unplanned:
        parse_key(key)
    if unplanned:
        raise BfclError(f"{len(unplanned)} replies in {replies_path} answer requests outside this selection, e.g. "
                        f"{unplanned[0]}", hint=_selection_hint(replies))
    missing = [k for k in planned if k not in replies]
    if missing and not allow_missing:
        raise BfclError(f"{len(missing)} of {len(planned)} selected requests have no reply in {replies_path}, e.g. "
                        f"{missing[0]}", hint=_selection_hint(replies) + ", or --allow-missing to count them as "
                        "wrong")
    reader = ToolCallReader(tokenizer_dir)
    records = []
    for key, (mode, item) in planned.items():
        base = ItemRecord(model=name, mode=mode, category=item.category, id=item.id, endpoint=OFFLINE_ENDPOINT,
                          max_tokens=settings.max_tokens, temperature=settings.temperature)
        generated = replies.get(key)
        if generated is None:
            records.append(base.model_copy(update={"request_error": f"no reply in {replies_path}",
                                                   "error_type": "request_error"}))
            continue
        try:
            reply = reader.reply(item, mode, generated.text, generated.finish_reason)
        except ValidationError as exc:
            records.append(base.model_copy(update={
                "request_error": f"vLLM would refuse the request: {str(exc)[:500]}", "error_type": "request_error",
                "raw_text": generated.text}))
            continue
        verdict = score(item, mode, reply)
        records.append(base.model_copy(update={
            "reply": reply, "decoded": verdict.decoded, "valid": verdict.valid, "error": verdict.error,
            "error_type": verdict.error_type, "raw_text": generated.text}))
    if reader.unreadable:
        log.warning("%d FC replies of %s hold a %s block vLLM's %s parser cannot read: scored as text, as the server "
                    "returns them", reader.unreadable, name, TOOL_CALL_OPEN, reader.describe())
    out.mkdir(parents=True, exist_ok=True)
    existing = read_records(out / ITEMS)
    changed = [r for r in records if existing.get(r.key()) != r]
    if changed:
        append_records(out / ITEMS, changed)
    summary = summarize(out, name, settings, items)
    summary.runs[name] = ModelRun(
        endpoint=OFFLINE_ENDPOINT, settings=settings, bfcl_eval=load().version, machine=machine_info(),
        wall_s=round(time.monotonic() - started, 1), resumed=len(records) - len(changed),
        offline=OfflineSource(generator=generator, replies=str(replies_path),
                              replies_sha256=hashlib.sha256(replies_path.read_bytes()).hexdigest(),
                              tokenizer=str(tokenizer_dir), tool_parser=reader.describe(), vllm=reader.vllm_version))
    write_summary(out, summary)
    return summary
