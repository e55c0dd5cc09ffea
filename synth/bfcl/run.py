"""Score one served model on BFCL: every item's reply kept (resumable JSONL), a summary JSON and a markdown table.

Rows go to ``<out>/items.jsonl`` as they finish, one per (served model, mode, category, item, sampling settings);
a rerun with the same ones skips the items already scored (a row whose request failed is tried again). The
summary (``summary.json``, ``summary.md``) keeps every model scored into the same folder, so a base and its trained
models sit side by side. Requests go through the project's ``LLMPool`` (its per-endpoint concurrency, retries and
deadlines); an endpoint that does not answer stops the run with a ``BfclError``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, Field
from tqdm.auto import tqdm

from synth.bfcl.data import CATEGORIES, NON_LIVE_MEAN, BfclError, BfclItem, check_categories, load_items, select
from synth.bfcl.package import load
from synth.bfcl.score import MODES, Mode, RawToolCall, Reply, Verdict, request, score
from synth.config import EndpointConfig, LLMConfig
from synth.llm.client import EndpointUnavailable, LLMPool
from synth.machine import machine_info

log = logging.getLogger(__name__)
ITEMS = "items.jsonl"
SUMMARY = "summary.json"
TABLE = "summary.md"


class BfclSettings(BaseModel):
    """What is scored and how it is sampled."""

    modes: list[Mode] = Field(default_factory=lambda: list(MODES))
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    limit: int | None = Field(default=None, description="Items per category (a fixed subset); None: all.")
    seed: int = Field(default=0, description="Picks the subset when limit is set.")
    max_tokens: int = Field(default=512, ge=1, description="Tokens one reply may take.")
    temperature: float = Field(default=0.0, ge=0, le=2, description="BFCL samples at 0.001: greedy in effect.")
    concurrency: int = Field(default=16, ge=1, description="Requests in flight at once.")

    @classmethod
    def parse(cls, modes: str, categories: str, **rest: Any) -> BfclSettings:
        """From the command line's comma-separated lists ('all' for every category)."""
        mode_list = [m.strip() for m in modes.split(",") if m.strip()]
        bad = [m for m in mode_list if m not in MODES]
        if bad or not mode_list:
            raise BfclError(f"unknown BFCL mode(s): {', '.join(bad) or '(none given)'}",
                            hint="use fc, prompt or fc,prompt")
        names = [c.strip() for c in categories.split(",") if c.strip()]
        cats = list(CATEGORIES) if names in ([], ["all"]) else check_categories(names)
        return cls(modes=[m for m in MODES if m in mode_list], categories=cats, **rest)


class ItemRecord(BaseModel):
    """One item's reply and verdict: enough to rescore it with BFCL's checker alone."""

    model: str = Field(description="The served model name the endpoint answered as.")
    mode: Mode
    category: str
    id: str
    endpoint: str
    max_tokens: int
    temperature: float
    reply: Reply | None = None
    decoded: Any = None
    valid: bool = False
    error: list[Any] = Field(default_factory=list)
    error_type: str | None = None
    request_error: str | None = Field(default=None, description="Set when no reply came (scored as wrong; "
                                      "tried again by the next run).")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    raw_text: str | None = Field(default=None, description="The text as generated, before the tool parser (replies "
                                 "generated offline and scored by `synth bfcl score-replies`); None when served.")

    def key(self) -> tuple[str, str, str, str, int, float]:
        return (self.model, self.mode, self.category, self.id, self.max_tokens, self.temperature)


class CategoryScore(BaseModel):
    n: int
    accuracy: float = Field(description="Correct over n (0-1); an item whose request failed counts as wrong.")
    correct: int
    unanswered: int = Field(default=0, description="Items without a reply (request failed, or never asked).")
    tool_call_replies: int = Field(default=0, description="Replies that carried tool_calls (FC mode).")


class OfflineSource(BaseModel):
    """Where replies generated elsewhere came from and how their texts were read (``synth bfcl score-replies``)."""

    generator: str = Field(description="What generated the texts (e.g. bench/gpu/generate.py: HF generate, greedy).")
    replies: str = Field(description="The replies file, as given.")
    replies_sha256: str
    tokenizer: str = Field(description="The checkpoint folder whose tokenizer the tool parser was given.")
    tool_parser: str = Field(description="The vLLM tool parser (registered name and class) that read FC texts.")
    vllm: str = Field(description="The installed vLLM version whose parser was used.")


class ModelRun(BaseModel):
    """How one model was scored: endpoint (or offline replies), settings, machine, BFCL version."""

    endpoint: str
    settings: BfclSettings
    bfcl_eval: str
    machine: dict[str, str | int]
    wall_s: float
    resumed: int = Field(description="Items found scored on disk and not asked again.")
    server: dict[str, Any] | None = Field(default=None, description="How a server started here was configured.")
    offline: OfflineSource | None = Field(default=None, description="Set when the replies were generated offline "
                                          "(not by a server) and scored from their texts.")


class BfclSummary(BaseModel):
    """``summary.json``: ``models`` has the issue's shape, name -> mode -> category -> {n, accuracy, ...}."""

    models: dict[str, dict[str, dict[str, CategoryScore]]] = Field(default_factory=dict)
    non_live_mean: dict[str, dict[str, float | None]] = Field(
        default_factory=dict, description="name -> mode -> unweighted mean accuracy over " + ", ".join(NON_LIVE_MEAN)
        + " (None unless all four were scored).")
    runs: dict[str, ModelRun] = Field(default_factory=dict)


def read_records(path: Path) -> dict[tuple[str, str, str, str, int, float], ItemRecord]:
    """The latest row of each key in ``path`` (later rows replace earlier ones: a retried failure)."""
    out: dict[tuple[str, str, str, str, int, float], ItemRecord] = {}
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = ItemRecord.model_validate_json(line)
        except ValueError:
            log.warning("%s line %d is not a BFCL row (a write cut short?); it is ignored", path, n)
            continue
        out[rec.key()] = rec
    return out


def _reply(result: Any) -> Reply:
    message = result.message
    calls = getattr(message, "tool_calls", None)
    return Reply(text=message.content, finish_reason=result.finish_reason,
                 tool_calls=None if calls is None else [RawToolCall(name=c.function.name,
                                                                    arguments=c.function.arguments or "")
                                                        for c in calls])


async def _one(pool: LLMPool, item: BfclItem, mode: Mode, base: ItemRecord) -> ItemRecord:
    messages, params = request(item, mode)
    started = time.monotonic()
    try:
        result = await pool.chat(messages, role="agent", **params)
    except EndpointUnavailable:
        raise
    except Exception as exc:  # one item's failed request is that item's row, never the whole run
        log.warning("BFCL %s %s (%s): %s", item.id, mode, type(exc).__name__, exc)
        return base.model_copy(update={"request_error": f"{type(exc).__name__}: {str(exc)[:500]}",
                                       "error_type": "request_error", "latency_s": time.monotonic() - started})
    reply = _reply(result)
    verdict: Verdict = score(item, mode, reply)
    return base.model_copy(update={
        "reply": reply, "decoded": verdict.decoded, "valid": verdict.valid, "error": verdict.error,
        "error_type": verdict.error_type, "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens, "latency_s": time.monotonic() - started})


async def served_models(endpoint: EndpointConfig) -> list[str]:
    """The model names ``endpoint`` serves; a ``BfclError`` when it does not answer."""
    client = openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=1, timeout=60)
    try:
        return [m.id for m in (await client.models.list()).data]
    except openai.APIError as exc:
        raise BfclError(f"the endpoint {endpoint.base_url} did not answer: {type(exc).__name__}: {exc}",
                        hint="start it (`synth serve`, or your vLLM server) or point --model / SYNTH_BASE_URL at "
                        "one that runs") from exc
    finally:
        await client.close()


def plan(settings: BfclSettings) -> dict[str, list[BfclItem]]:
    """The items each category scores under ``settings``."""
    return {c: select(load_items(c), settings.limit, settings.seed) for c in settings.categories}


async def score_model(endpoints: list[EndpointConfig], llm: LLMConfig, settings: BfclSettings, out: Path, *,
                      model: str | None = None, progress: bool = True,
                      server: dict[str, Any] | None = None) -> BfclSummary:
    """Score the model ``model`` serves (None: the first one the endpoint lists) and update ``out``'s summary."""
    if not endpoints:
        raise BfclError("no endpoint to score", hint="pass --model with an endpoint URL, or set SYNTH_BASE_URL")
    started = time.monotonic()
    listed = await served_models(endpoints[0])
    if model is None:
        if not listed:
            raise BfclError(f"the endpoint {endpoints[0].base_url} lists no model", hint="pass the served name")
        model = listed[0]
    elif model not in listed:
        raise BfclError(f"the endpoint {endpoints[0].base_url} serves {', '.join(listed) or 'nothing'}, not "
                        f"{model!r}", hint="pass one of the served names with --model")
    items = plan(settings)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ITEMS
    done = {k for k, r in read_records(path).items() if r.request_error is None}
    endpoint = ",".join(e.base_url for e in endpoints)
    todo: list[tuple[BfclItem, Mode, ItemRecord]] = []
    total = 0
    for mode in settings.modes:
        for category, chosen in items.items():
            for item in chosen:
                total += 1
                base = ItemRecord(model=model, mode=mode, category=category, id=item.id, endpoint=endpoint,
                                  max_tokens=settings.max_tokens, temperature=settings.temperature)
                if base.key() not in done:
                    todo.append((item, mode, base))
    if todo:
        await _run(endpoints, llm, settings, model, todo, path, progress)
    summary = summarize(out, model, settings, items)
    summary.runs[model] = ModelRun(endpoint=endpoint, settings=settings, bfcl_eval=load().version,
                                   machine=machine_info(), wall_s=round(time.monotonic() - started, 1),
                                   resumed=total - len(todo), server=server)
    write_summary(out, summary)
    return summary


def _ends_cut(path: Path) -> bool:
    """Whether ``path`` ends inside a line (a write a kill cut short)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) != b"\n"


def append_records(path: Path, records: list[ItemRecord]) -> None:
    """Append ``records`` to the rows at ``path`` (a row a kill cut short stays alone on its line)."""
    with path.open("a") as fh:
        if _ends_cut(path):
            fh.write("\n")
        fh.writelines(r.model_dump_json() + "\n" for r in records)


async def _run(endpoints: list[EndpointConfig], llm: LLMConfig, settings: BfclSettings, model: str,
               todo: list[tuple[BfclItem, Mode, ItemRecord]], path: Path, progress: bool) -> None:
    pool = LLMPool(endpoints, llm.model_copy(update={"model": model, "temperature": settings.temperature,
                                                     "max_tokens": settings.max_tokens}))
    gate = asyncio.Semaphore(settings.concurrency)
    bar = tqdm(total=len(todo), desc=f"BFCL {model}", disable=not progress, dynamic_ncols=True)
    failed: list[str] = []

    async def one(item: BfclItem, mode: Mode, base: ItemRecord, fh: Any) -> None:
        async with gate:
            row = await _one(pool, item, mode, base)
        if row.request_error:
            failed.append(row.request_error)
        fh.write(row.model_dump_json() + "\n")
        fh.flush()  # a killed run keeps every row it finished
        bar.update(1)

    with path.open("a") as fh:
        if _ends_cut(path):
            fh.write("\n")  # a line cut by a kill stays alone (and is skipped), not glued to the next row
        tasks = [asyncio.create_task(one(item, mode, base, fh)) for item, mode, base in todo]
        try:
            await asyncio.gather(*tasks)
        except EndpointUnavailable as exc:
            raise BfclError(f"the endpoint stopped answering while scoring {model}: {exc}",
                            hint="restart the server and run the same command again: scored items are kept") \
                from exc
        finally:
            # On a failure (or Ctrl-C) the other requests stop before the file closes under them.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
            await pool.aclose()
    if failed and len(failed) == len(todo):
        raise BfclError(f"every request failed ({len(failed)}), e.g. {failed[0]}",
                        hint="check the endpoint and the served model; the rows keep each error")


def summarize(out: Path, model: str, settings: BfclSettings, items: dict[str, list[BfclItem]]) -> BfclSummary:
    """``out``'s summary with ``model``'s scores under ``settings`` (re)computed from its rows."""
    summary = read_summary(out)
    records = read_records(out / ITEMS)
    scores: dict[str, dict[str, CategoryScore]] = {}
    for mode in settings.modes:
        per: dict[str, CategoryScore] = {}
        for category, chosen in items.items():
            rows = [records.get((model, mode, category, i.id, settings.max_tokens, settings.temperature))
                    for i in chosen]
            correct = sum(1 for r in rows if r is not None and r.valid)
            per[category] = CategoryScore(
                n=len(chosen), correct=correct, accuracy=round(correct / len(chosen), 4) if chosen else 0.0,
                unanswered=sum(1 for r in rows if r is None or r.request_error),
                tool_call_replies=sum(1 for r in rows if r and r.reply and r.reply.tool_calls))
        scores[mode] = per
    summary.models[model] = scores
    summary.non_live_mean[model] = {mode: non_live_mean(per) for mode, per in scores.items()}
    return summary


def non_live_mean(per: dict[str, CategoryScore]) -> float | None:
    """BFCL's non-live mean: the unweighted mean of the four AST categories' accuracies (None if one is missing)."""
    if not all(c in per for c in NON_LIVE_MEAN):
        return None
    return round(sum(per[c].accuracy for c in NON_LIVE_MEAN) / len(NON_LIVE_MEAN), 4)


def read_summary(out: Path) -> BfclSummary:
    path = out / SUMMARY
    if not path.exists():
        return BfclSummary()
    try:
        return BfclSummary.model_validate_json(path.read_text())
    except ValueError:
        log.warning("%s is not a BFCL summary; it is rewritten", path)
        return BfclSummary()


def table(summary: BfclSummary) -> str:
    """The summary as a markdown page: one row per model and mode, accuracy (n) per category."""
    cats = [c for c in CATEGORIES if any(c in per for m in summary.models.values() for per in m.values())]
    lines = ["# BFCL v4, non-live AST categories", "",
             "Accuracy per category (items scored), BFCL's own data and AST checker (bfcl-eval); non-live mean = "
             "unweighted mean of " + ", ".join(NON_LIVE_MEAN) + ". An item whose request failed counts as wrong.",
             "", "| model | mode | " + " | ".join(cats) + " | non-live mean |",
             "| --- | --- | " + " | ".join("---:" for _ in cats) + " | ---: |"]
    for name, modes in summary.models.items():
        for mode, per in modes.items():
            cells = [f"{per[c].accuracy:.1%} ({per[c].n})" if c in per else "" for c in cats]
            mean = summary.non_live_mean.get(name, {}).get(mode)
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + f" | {'' if mean is None else f'{mean:.1%}'} |")
    lines.append("")
    for name, run in summary.runs.items():
        s = run.settings
        subset = f"{s.limit} per category (seed {s.seed})" if s.limit else "all items"
        m = run.machine
        source = f"endpoint {run.endpoint}" if run.offline is None else (
            f"replies generated offline by {run.offline.generator} ({run.offline.replies}), FC texts read by vLLM "
            f"{run.offline.vllm}'s {run.offline.tool_parser} parser; scored")
        lines.append(f"- {name}: {subset}, max_tokens {s.max_tokens}, temperature {s.temperature}; {source}; "
                     f"bfcl-eval {run.bfcl_eval}; {m.get('date')}, {m.get('cpu')} "
                     f"({m.get('cores')} cores); {run.wall_s:.0f} s, {run.resumed} items resumed.")
        errors = sum(c.unanswered for per in summary.models.get(name, {}).values() for c in per.values())
        if errors:
            lines.append(f"  - {errors} items without a reply (request errors), counted as wrong.")
    return "\n".join(lines) + "\n"


def write_summary(out: Path, summary: BfclSummary) -> None:
    (out / SUMMARY).write_text(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    (out / TABLE).write_text(table(summary))


def run_bfcl(endpoints: list[EndpointConfig], llm: LLMConfig, settings: BfclSettings, out: Path, *,
             model: str | None = None, progress: bool = True, server: dict[str, Any] | None = None) -> BfclSummary:
    """``score_model`` from synchronous code (the CLI)."""
    return asyncio.run(score_model(endpoints, llm, settings, out, model=model, progress=progress, server=server))
