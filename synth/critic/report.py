"""The critic report: the raw judge and the trained critic on the held-out critic examples, against the code checks.

Per judge: AUC of the verdict's probability of pass against the verified outcome (ranks, ties counted half),
accuracy of its decision (a score above 0 that survives the evidence rule, what calibration counts), the share of
positive scores whose quote is in the transcript, the score gap between passing and failing examples, and the
cost per judged row (tokens, seconds); overall and per criterion and check kind. With the JSON a page
(``critic.md``) says on which machine and what is missing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.config import PipelineConfig
from synth.critic.data import CriticError, CriticExample, CriticSummary
from synth.critic.score import JudgeRun, Judgment, evidence_rule, judge_all, read_journal
from synth.llm.client import LLMPool


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U), tied scores sharing their mean rank; None when
    one class is absent."""
    pos = sum(labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


class Metrics(BaseModel):
    n: int
    auc: float | None
    accuracy: float | None
    quotes_found: float | None = Field(description="Share of positive scores whose quote is in the transcript.")
    positive_scores: int = 0
    replies_failed: int = 0
    mean_p_pass_passing: float | None = None
    mean_p_pass_failing: float | None = None
    score_gap: float | None = Field(default=None, description="Mean probability of pass on passing examples "
                                    "minus that on failing ones.")
    auc_unchecked: float | None = Field(default=None, description="AUC before the evidence rule zeroes scores.")


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def metrics(judgments: list[Judgment]) -> Metrics:
    labels = [j.passed for j in judgments]
    positive = [j for j in judgments if j.score]
    good = [j.p_pass for j in judgments if j.passed]
    bad = [j.p_pass for j in judgments if not j.passed]
    gap = None if not good or not bad else round(sum(good) / len(good) - sum(bad) / len(bad), 4)
    return Metrics(
        n=len(judgments), auc=_r(auc([j.p_pass for j in judgments], labels)),
        accuracy=_r(sum(j.predicted == j.passed for j in judgments) / len(judgments)) if judgments else None,
        quotes_found=_r(sum(bool(j.quote_found) for j in positive) / len(positive)) if positive else None,
        positive_scores=len(positive), replies_failed=sum(j.score is None for j in judgments),
        mean_p_pass_passing=_mean(good), mean_p_pass_failing=_mean(bad), score_gap=gap,
        auc_unchecked=_r(auc([j.p_pass_unchecked for j in judgments], labels)))


def _by(judgments: list[Judgment], key: Callable[[Judgment], str]) -> dict[str, Metrics]:
    groups: dict[str, list[Judgment]] = {}
    for j in judgments:
        groups.setdefault(key(j), []).append(j)
    return {k: metrics(v) for k, v in sorted(groups.items())}


class JudgeResult(BaseModel):
    model: str
    auc: float | None
    accuracy: float | None
    quotes_found: float | None
    overall: Metrics
    criteria: dict[str, Metrics]
    check_kinds: dict[str, Metrics]
    cost: dict[str, float | int | None]


def judge_result(model: str, run: JudgeRun) -> JudgeResult:
    js = run.judgments
    overall = metrics(js)
    n = max(1, len(js))
    cost = {"prompt_tokens_per_row": round(sum(j.prompt_tokens for j in js) / n, 1),
            "completion_tokens_per_row": round(sum(j.completion_tokens for j in js) / n, 1),
            "seconds_per_row": round(run.wall_s / n, 3), "latency_s_mean": round(sum(j.seconds for j in js) / n, 3),
            "concurrency": run.concurrency, "wall_s": round(run.wall_s, 1)}
    return JudgeResult(model=model, auc=overall.auc, accuracy=overall.accuracy, quotes_found=overall.quotes_found,
                       overall=overall, criteria=_by(js, lambda j: j.criterion_id),
                       check_kinds=_by(js, lambda j: j.check_kind), cost=cost)


async def judge_with(endpoint_url: str, model: str, examples: list[CriticExample], config: PipelineConfig,
                     concurrency: int, journal: Path | None = None) -> JudgeRun:
    from synth.config import EndpointConfig

    pool = LLMPool([EndpointConfig(base_url=endpoint_url, max_concurrency=concurrency)],
                   config.llm.model_copy(update={"model": model, "structured_retries": 0}))
    try:
        return await judge_all(pool, examples, concurrency=concurrency, journal=journal)
    finally:
        await pool.aclose()


def judge_raw(examples: list[CriticExample], config: PipelineConfig, concurrency: int,
              journal: Path | None = None) -> JudgeRun:
    """The raw judge: the embedded server as it runs (``embedded.port``), started by the caller."""
    from synth.serve.server import base_url, served_name

    return asyncio.run(judge_with(base_url(config.embedded), served_name(config.embedded), examples, config,
                                  concurrency, journal))


def judge_checkpoint(checkpoint: Path, name: str, examples: list[CriticExample], config: PipelineConfig,
                     port: int, concurrency: int, journal: Path | None = None) -> JudgeRun:
    """A trained critic, served as the eval stage serves a trained checkpoint (its own port, the template it
    was trained with), for the length of the run."""
    from synth.evaluate.episode import served_checkpoint, serving

    emb = served_checkpoint(config, f"critic-{name}", checkpoint, port)
    with serving(emb, concurrency) as endpoint:
        return asyncio.run(judge_with(endpoint.base_url, emb.served_name or name, examples, config, concurrency,
                                      journal))


def write_judgments(path: Path, run: JudgeRun) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(run.model_dump_json())


def load_judgments(path: Path) -> JudgeRun:
    return JudgeRun.model_validate_json(path.read_text())


def write_report(out: Path, *, data: CriticSummary, examples: list[CriticExample], raw: JudgeRun,
                 trained: dict[str, tuple[JudgeRun, dict[str, Any]]], machine: dict[str, Any],
                 command: str) -> tuple[Path, Path]:
    """``<out>.json`` and ``<out>.md``: ``trained`` maps each critic's name to its judgments and its training
    summary (steps, loss, wall time). The first trained critic is the JSON's ``trained``."""
    results = {"raw": judge_result("raw", raw), **{k: judge_result(k, r) for k, (r, _) in trained.items()}}
    first = next(iter(trained), None)
    ids = [e.id for e in examples]

    def short(r: JudgeResult) -> dict[str, Any]:
        return {"auc": r.auc, "accuracy": r.accuracy, "quotes_found": r.quotes_found, **r.model_dump()}

    body: dict[str, Any] = {
        "n": len(ids), "passing": sum(e.passed for e in examples), "failing": sum(not e.passed for e in examples),
        "raw": short(results["raw"]),
        "trained": short(results[first]) if first else None,
        "critics": {k: short(results[k]) for k in trained},
        "training": {k: s for k, (_, s) in trained.items()},
        "data": {"runs": data.runs, "heldout_share": data.heldout_share, "splits": {
            k: {kk: vv for kk, vv in v.items() if kk != "tools"} for k, v in data.splits.items()},
            "heldout_tools": data.splits.get("heldout", {}).get("tools", []),
            "dropped": data.dropped},
        "targets": {"auc": 0.80, "accuracy": 0.75, "quotes_found": 0.80},
        "machine": machine, "command": command,
    }
    json_path = out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    md_path = out.with_suffix(".md")
    md_path.write_text(_page(body, results))
    return json_path, md_path


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _page(body: dict[str, Any], results: dict[str, JudgeResult]) -> str:
    names = list(results)
    lines = ["# The critic: a judge trained on verified outcomes", "",
             f"{body['n']} held-out criterion judgments ({body['passing']} passing, {body['failing']} failing the "
             "code check behind the criterion), on tasks whose tools the critic's training never saw. "
             "Targets: AUC >= 0.80, accuracy >= 0.75, quotes found >= 80%.", "",
             f"Machine: {body['machine'].get('cpu', body['machine'])}. Command: `{body['command']}`.", "",
             "| judge | AUC | accuracy | quotes found | positive scores | gap (pass - fail) | AUC before the "
             "evidence rule | tokens/row | s/row |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in names:
        r = results[k]
        o = r.overall
        lines.append(f"| {k} | {_f(o.auc)} | {_f(o.accuracy)} | {_f(o.quotes_found)} | {o.positive_scores} | "
                     f"{_f(o.score_gap)} | {_f(o.auc_unchecked)} | "
                     f"{r.cost['prompt_tokens_per_row']} + {r.cost['completion_tokens_per_row']} | "
                     f"{r.cost['seconds_per_row']} |")
    for title, attr in (("criterion", "criteria"), ("check kind", "check_kinds")):
        keys = sorted({c for r in results.values() for c in getattr(r, attr)})
        lines += ["", f"## Per {title}", "", "| " + title + " | n | " + " | ".join(
            f"{k} AUC | {k} acc." for k in names) + " |", "| --- | --- |" + " --- | --- |" * len(names)]
        for c in keys:
            cells = []
            n = 0
            for k in names:
                m = getattr(results[k], attr).get(c)
                n = max(n, m.n if m else 0)
                cells += [_f(m.auc if m else None), _f(m.accuracy if m else None)]
            lines.append(f"| {c} | {n} | " + " | ".join(cells) + " |")
    if body["training"]:
        lines += ["", "## Training", "", "| critic | optimizer | steps | tokens stepped | loss first -> last | "
                  "stepping s |", "| --- | --- | --- | --- | --- | --- |"]
        for k, s in body["training"].items():
            lines.append(f"| {k} | {s.get('optimizer')} | {s.get('steps')} | {s.get('steps_tokens')} | "
                         f"{_f(s.get('first_loss'))} -> {_f(s.get('last_loss'))} | {_f(s.get('steps_wall_s'))} |")
    return "\n".join(lines) + "\n"


class ReportError(CriticError):
    """A report that cannot be made as asked."""


def _parse_critics(critics: list[str]) -> dict[str, Path]:
    out = {}
    for item in critics:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ReportError(f"--critic {item!r} is not NAME=CHECKPOINT",
                              hint="e.g. --critic muonclip=runs/critic-data/judge-muonclip")
        out[name] = Path(path)
    return out


def _cached_or_run(path: Path, ids: list[str], run: Callable[[], JudgeRun], concurrency: int) -> JudgeRun:
    """Judgments already made on exactly these examples are read back, not paid for again: the finished run's
    file, else its journal when it holds every example (no server is started for them)."""
    if path.exists():
        done = load_judgments(path)
        if [j.id for j in done.judgments] == ids:
            return done
    journaled = read_journal(path.with_suffix(".jsonl"))
    if all(i in journaled for i in ids):
        result = JudgeRun(judgments=[journaled[i].judgment for i in ids], concurrency=concurrency,
                          wall_s=max((journaled[i].wall_s for i in ids), default=0.0))
    else:
        result = run()
    write_judgments(path, result)
    return result


def _rescored(run: JudgeRun, examples: list[CriticExample]) -> JudgeRun:
    """The evidence rule applied again from what each judgment kept (its quote, its score's distribution), so
    judgments journaled under an older rule are measured by the current one."""
    by_id = {e.id: e for e in examples}
    return run.model_copy(update={"judgments": [evidence_rule(j, by_id[j.id]) for j in run.judgments]})


def _training(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "train_summary.json"
    if not path.exists():
        return {}
    s = json.loads(path.read_text())
    return {"optimizer": s.get("optimizer"), "steps": s.get("steps"), "examples": s.get("data", {}).get("examples"),
            "tokens_trained": s.get("tokens_trained"), "first_loss": s.get("first_loss"),
            "last_loss": s.get("last_loss"), "wall_s": s.get("wall_s"), "tokens_per_s": s.get("tokens_per_s"),
            "device": s.get("device"), "dtype": s.get("dtype"), "max_logit": s.get("max_logit"),
            "heads_clipped": s.get("heads_clipped"),
            # A resumed job's summary times only its last process; the steps' own times cover them all.
            "steps_wall_s": round(sum(h.get("wall_s", 0.0) for h in s.get("log", [])), 1),
            "steps_tokens": sum(h.get("tokens", 0) for h in s.get("log", []))}


def run_report(data_dir: Path, critics: list[str], out: Path, config: PipelineConfig, *, limit: int | None,
               concurrency: int, port: int, command: str) -> tuple[Path, Path]:
    """Judge the held-out examples with the raw judge (the embedded server, which must be up) and each trained
    critic (served here on ``port``), keep the judgments beside the data, write the report."""
    from synth.critic.data import load_examples
    from synth.machine import machine_info
    from synth.serve.server import is_healthy

    checkpoints = _parse_critics(critics)
    summary = CriticSummary.model_validate_json((data_dir / "summary.json").read_text())
    examples = load_examples(data_dir / "heldout.jsonl")[:limit]
    ids = [e.id for e in examples]

    def raw_judge() -> JudgeRun:
        if not is_healthy(config.embedded):
            raise ReportError(f"the raw judge's server (embedded, port {config.embedded.port}) is not up",
                              hint="start it with `synth serve`, then run this again")
        return judge_raw(examples, config, concurrency, data_dir / "judgments-raw.jsonl")

    raw = _rescored(_cached_or_run(data_dir / "judgments-raw.json", ids, raw_judge, concurrency), examples)
    trained = {}
    for name, ckpt in checkpoints.items():
        run = _cached_or_run(data_dir / f"judgments-{name}.json", ids,
                             lambda c=ckpt, n=name: judge_checkpoint(c, n, examples, config, port, concurrency,
                                                                     data_dir / f"judgments-{n}.jsonl"),
                             concurrency)
        trained[name] = (_rescored(run, examples), _training(ckpt))
    return write_report(out, data=summary, examples=examples, raw=raw, trained=trained, machine=machine_info(),
                        command=command)
