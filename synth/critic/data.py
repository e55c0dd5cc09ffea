"""Critic examples from judged runs: the judge's own prompt for one criterion -> the verified outcome.

Each code check of a judged row (``runs/<run>/judge``) stands behind one rubric criterion (``CHECK_CRITERION``:
a call's arguments behind ``tool_use``, a reported result behind ``grounding``, ...). An example is the judge's
prompt (``rubrics/prompts/judge.j2``) over the row's transcript with that one criterion, worded as the rubric
words it plus what the check asks ("Here: calls search_nodes with ..."), and as its target the reply the judge
should give: score 2 when the check passed, 0 when it failed, the check's detail as the summary, and an evidence
quote picked by code from the span the check looked at (the call it matched or refused, the final answer it read),
so the quote is in the transcript by construction and the target obeys the evidence rule it will be judged by.

The split is the dataset's rule (``synth.data.heldout``: by tool group, same salt) at the critic's own share: a
held-out example's task holds only tools of held-out groups, and a training example holding a tool named as a
held-out one (in any of the runs read) is dropped, so the critic is measured on tools it never saw. Examples are
deduplicated by their prompt (best-of-N episodes are often identical) and balanced by outcome in each split.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from synth.data.heldout import TaskSplit, ToolGroups
from synth.errors import SynthError
from synth.judge.checks import MadeCall, final_answer, made_calls, typed_match, values_match
from synth.judge.judge import EVIDENCE_MAX_CHARS, EVIDENCE_MIN_CHARS, SUMMARY_MAX_CHARS
from synth.judge.transcript import evidence_found, evidence_haystacks, render_transcript
from synth.prompts import render
from synth.schemas.records import AgentRecord, TaskRecord, ToolBatchRecord, TrajectoryRecord, VerdictRecord
from synth.schemas.rubric import EVIDENCE_LABELS, CodeCheck, Criterion, EvidenceSource
from synth.stages.outputs import RunOutputs
from synth.text import normalize

CHECK_CRITERION: dict[str, str] = {
    "tool_called": "tool_use",
    "tool_called_with": "tool_use",
    "call_made_with": "tool_use",
    "calls_in_one_turn": "tool_use",
    "only_tools_called": "no_needless_calls",
    "calls_at_most": "no_needless_calls",
    "no_tool_called": "no_needless_calls",
    "reports_result": "grounding",
    "final_mentions": "helpfulness",
    "state_equals": "helpfulness",
    "answers_without_call": "helpfulness",
}
"""The rubric criterion each code check kind verifies part of (a coding task's tests: ``helpfulness``)."""
TESTS_CRITERION = "helpfulness"
CALL_KINDS = {"tool_called", "tool_called_with", "call_made_with", "calls_in_one_turn", "only_tools_called",
              "calls_at_most", "no_tool_called"}
"""Checks that read the assistant's calls: their quote is a call's arguments."""
PASS_SCORE = 2
MAX_TOKENS = 768
TRANSCRIPT_CHARS = (2400, 1600, 1000, 600)
"""Transcript budgets tried in turn until the example fits ``max_tokens`` (CPU training pays per token)."""
MESSAGE_CHARS = 300
REPLY_TOKENS = 60
"""About the target reply's length: a score object with a 40-character quote and an 80-character summary."""

Side = Literal["train", "heldout"]


class CriticError(SynthError, ValueError):
    """Critic data that cannot be built: a run without judged rows, or too few examples."""

    hint = "run the pipeline on a run first (`synth pipeline --run NAME`), then build from runs/NAME"


class CriticExample(BaseModel):
    """One criterion of one judged row, with its verified outcome; ``messages`` is the training row."""

    id: str = Field(description="Hash of the prompt: the dedup key.")
    run: str
    trajectory_id: str
    task_id: str
    side: Side
    split_keys: list[str] = Field(description="The task's tool groups (synth.data.heldout.split_keys).")
    agent_tools: list[str] = Field(default_factory=list, description="Names of the tools the task's agent holds.")
    check_id: str
    check_kind: str = Field(description="The code check's kind (``tests`` for a coding task's tests).")
    criterion_id: str
    criterion: Criterion = Field(description="The criterion as the judge reads it.")
    passed: bool = Field(description="The code check's verified outcome.")
    reason: str = Field(description="The check's detail: why it passed or failed.")
    evidence: str = Field(description="The quote the target gives: in the transcript, from the criterion's parts.")
    haystack: str = Field(default="", description="The criterion's parts of the whole transcript, normalized: "
                          "where a verdict's quote must be found (the judge's evidence rule).")
    messages: list[dict[str, Any]] = Field(description="System and user prompt, then the target reply.")
    tools: list[dict[str, Any]] = Field(default_factory=list, description="None: the judge calls no tool.")
    tokens: int = 0

    @property
    def prompt(self) -> list[dict[str, Any]]:
        return self.messages[:2]

    def train_row(self) -> dict[str, Any]:
        """What the trainer reads: the conversation, and the task and split keys its held-out filter reads."""
        return {"messages": self.messages, "tools": [], "task_id": self.task_id, "split_keys": self.split_keys}


class CriticSummary(BaseModel):
    runs: list[str]
    heldout_share: float
    max_tokens: int
    candidates: int = Field(description="Code check results read on usable rows.")
    dropped: dict[str, int] = Field(default_factory=dict, description="Why candidates were dropped, with counts.")
    splits: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per split: examples, per "
                                              "outcome, per criterion and check kind, tools.")
    files: dict[str, str] = Field(default_factory=dict)


def check_criterion(check: CodeCheck | None, criteria: list[Criterion], library: dict[str, Criterion]) -> Criterion:
    """The criterion the check verifies, worded for it: the rubric's criterion (or the library's) plus what the
    check asks, so one criterion of the judge's prompt has one verified answer."""
    kind = check.kind if check is not None else "tests"
    cid = CHECK_CRITERION.get(kind, TESTS_CRITERION)
    base = next((c for c in criteria if c.id == cid), None) or library.get(cid)
    what = (check.description if check is not None and check.description else
            f"the {kind} check" if check is not None else "the assistant's code passes the task's tests")
    if base is None:
        return Criterion(id=cid, description=f"The assistant {what}.")
    return base.model_copy(update={"description": f"{base.description} Here: {what}."})


def _cut(text: str, at: int = 0) -> str:
    """A quote of at most EVIDENCE_MAX_CHARS from ``text`` starting near ``at``, on whole characters."""
    start = max(0, min(at, len(text) - EVIDENCE_MAX_CHARS))
    return text[start: start + EVIDENCE_MAX_CHARS].strip()


def _quoted_calls(calls: list[MadeCall], check: CodeCheck, passed: bool) -> list[MadeCall]:
    """The calls the check looked at, the one that decided it first."""
    named = [c for c in calls if check.tool is None or c.name == check.tool]
    if check.kind == "only_tools_called":
        named = [c for c in calls if c.name not in check.tools] or calls
    elif check.kind == "calls_at_most":
        named = list(reversed(calls))  # the last call is the one past the budget
    elif check.kind == "calls_in_one_turn":
        wanted = {s.name for s in check.calls}
        named = [c for c in calls if c.name in wanted] or calls

    def matches(c: MadeCall) -> bool:
        if c.arguments is None:
            return False
        if check.kind == "tool_called_with":
            return values_match(check.arguments, c.arguments, subset=True)
        return typed_match(check.arguments, c.arguments)

    if passed and check.kind in ("call_made_with", "tool_called_with"):
        named = sorted(named, key=lambda c: not matches(c))
    return named


def _answer_quotes(answer: str | None, check: CodeCheck | None, detail: str) -> list[str]:
    if not answer or not answer.strip():
        return []
    text = answer.strip()
    out = []
    values = [check.value] if check is not None and check.value not in (None, "") else []
    for value in [*values, *_quoted_in(detail)]:
        at = normalize(text).find(normalize(str(value)))
        if at >= 0:
            out.append(_cut(text, max(0, at - 8)))
    return [*out, _cut(text)]


def _quoted_in(detail: str) -> list[str]:
    """Values a check's detail names (``reports "Paris" from ...``): where the answer mentions the result."""
    if " reports " not in detail:
        return []
    value = detail.split(" reports ", 1)[1].split(" from ", 1)[0].strip()
    try:
        return [str(json.loads(value))]
    except ValueError:
        return [value]


def quote_haystack(traj: TrajectoryRecord, criterion: Criterion) -> str:
    """Where a quote for ``criterion`` must be found: its parts of the transcript (all of it when it names none)."""
    haystacks = evidence_haystacks(traj)
    sources: list[EvidenceSource | None] = list(criterion.evidence_from) if criterion.evidence_from else [None]
    return "\n".join(haystacks[s] for s in sources)


def pick_evidence(traj: TrajectoryRecord, check: CodeCheck | None, passed: bool, detail: str,
                  criterion: Criterion, transcript: str) -> str:
    """The quote for the target: from the span the check looked at, found (by the judge's own rule) in the
    criterion's parts of the transcript and in the transcript the prompt shows; "" when there is none."""
    if check is not None and check.kind in CALL_KINDS:
        # The arguments as the transcript shows them (the call's own text), not re-serialised.
        shown_args = {tc.id: tc.function.arguments for m in traj.messages for tc in m.tool_calls or []}
        quotes = [_cut(shown_args[c.id]) for c in _quoted_calls(made_calls(traj), check, passed)
                  if shown_args.get(c.id)]
        quotes += _answer_quotes(final_answer(traj), check, detail)
    else:
        quotes = _answer_quotes(final_answer(traj), check, detail)
    allowed = quote_haystack(traj, criterion)
    shown = normalize(transcript)
    for quote in quotes:
        if len(normalize(quote)) < EVIDENCE_MIN_CHARS:
            continue
        if evidence_found(quote, allowed, EVIDENCE_MIN_CHARS)[0] and normalize(quote) in shown:
            return quote
    return ""


def judge_prompt(traj: TrajectoryRecord, task: TaskRecord, criterion: Criterion,
                 transcript: str) -> list[dict[str, Any]]:
    """The judge's prompt (``judge.j2``) with one criterion, over ``transcript``."""
    instructions = next((m.content or "" for m in traj.messages if m.role == "system"), "")
    tools = [{"name": (t.get("function", t)).get("name", ""), "description": (t.get("function", t)).get(
        "description", "")} for t in traj.tools]
    variables = {"task": task, "instructions": instructions, "tools": tools, "criteria": [criterion],
                 "quote_from": ({criterion.id: " or ".join(EVIDENCE_LABELS[s] for s in criterion.evidence_from)}
                                if criterion.evidence_from else {}),
                 "transcript": transcript}
    return [{"role": "system", "content": render("judge", part="system", **variables)},
            {"role": "user", "content": render("judge", part="user", **variables)}]


def prompt_tokens(tokenizer: Any, prompt: list[dict[str, Any]]) -> int:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def target_reply(criterion_id: str, passed: bool, evidence: str, reason: str) -> str:
    """The reply the judge should give, as the server writes it under the judge's schema (compact JSON)."""
    summary = reason if len(reason) <= SUMMARY_MAX_CHARS else reason[: SUMMARY_MAX_CHARS - 3] + "..."
    body = {"scores": [{"criterion_id": criterion_id, "evidence": evidence if evidence else "",
                        "score": PASS_SCORE if passed else 0}], "summary": summary}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _prompt_id(messages: list[dict[str, Any]]) -> str:
    return "crit-" + hashlib.sha256(json.dumps(messages[:2], sort_keys=True).encode()).hexdigest()[:16]


class _RunData(BaseModel):
    run: str
    verdicts: list[VerdictRecord]
    trajectories: dict[str, TrajectoryRecord]
    tasks: dict[str, TaskRecord]
    agents: dict[str, AgentRecord]
    split: TaskSplit


def read_run(run_dir: Path, share: float) -> _RunData:
    """A run's judged rows with their trajectories, tasks and agents, and its split at ``share``."""
    out = RunOutputs(run_dir)
    if not out.finished("judge"):
        raise CriticError(f"{run_dir} has no finished judge stage")
    tasks = out.rows("tasks", TaskRecord)
    agents = out.rows("agents", AgentRecord)
    batches = out.rows("tools", ToolBatchRecord) if out.finished("tools") else []
    split = TaskSplit.of(share, tasks, agents, ToolGroups.of_batches(batches))
    return _RunData(run=run_dir.name, verdicts=out.rows("judge", VerdictRecord),
                    trajectories={t.id: t for t in out.rows("rollouts", TrajectoryRecord)},
                    tasks={t.id: t for t in tasks}, agents={a.id: a for a in agents}, split=split)


def run_examples(data: _RunData, library: dict[str, Criterion], tokenizer: Any, max_tokens: int,
                 dropped: Counter[str]) -> list[CriticExample]:
    """Every usable example of one run (before dedup, cross-run exclusion and balance)."""
    out = []
    for rec in data.verdicts:
        v = rec.verdict
        traj = data.trajectories.get(rec.trajectory_id)
        task = data.tasks.get(rec.task_id)
        if v is None or traj is None or task is None or task.rubric is None:
            dropped["no verdict, trajectory or rubric"] += len(v.checks) if v else 1
            continue
        if traj.error is not None:
            dropped["trajectory failed"] += len(v.checks)
            continue
        side = data.split.side(task.id)
        if side not in ("train", "heldout"):
            dropped["task on neither side of the split"] += len(v.checks)
            continue
        agent = data.agents.get(task.agent_id)
        names = sorted(t["function"]["name"] for t in agent.tools) if agent is not None else []
        checks = {c.id: c for c in task.rubric.checks}
        for result in v.checks:
            check = checks.get(result.check_id)
            if check is None and not task.rubric.python_tests:
                dropped["check not in the rubric"] += 1
                continue
            criterion = check_criterion(check, task.rubric.criteria, library)
            example = None
            for budget in TRANSCRIPT_CHARS:
                transcript = render_transcript(traj, MESSAGE_CHARS, budget)
                evidence = pick_evidence(traj, check, result.passed, result.detail, criterion, transcript)
                prompt = judge_prompt(traj, task, criterion, transcript)
                n = prompt_tokens(tokenizer, prompt) + REPLY_TOKENS
                if n <= max_tokens:
                    example = (prompt, evidence, n)
                    break
            if example is None:
                dropped["too long"] += 1
                continue
            prompt, evidence, n = example
            if result.passed and not evidence:
                dropped["passed, but no quote for it in the transcript"] += 1
                continue
            reply = target_reply(criterion.id, result.passed, evidence, result.detail)
            out.append(CriticExample(
                id=_prompt_id(prompt), run=data.run, trajectory_id=traj.id, task_id=task.id, side=side,
                split_keys=data.split.keys.get(task.id, []), agent_tools=names, check_id=result.check_id,
                check_kind=check.kind if check is not None else "tests", criterion_id=criterion.id,
                criterion=criterion, passed=result.passed, reason=result.detail, evidence=evidence,
                haystack=quote_haystack(traj, criterion),
                messages=[*prompt, {"role": "assistant", "content": reply}], tokens=n))
    return out


def dedup(examples: Iterable[CriticExample], dropped: Counter[str]) -> list[CriticExample]:
    """The first example of each prompt."""
    seen: set[str] = set()
    out = []
    for e in examples:
        if e.id in seen:
            dropped["duplicate prompt"] += 1
            continue
        seen.add(e.id)
        out.append(e)
    return out


def exclude_seen_tools(examples: list[CriticExample], dropped: Counter[str]) -> list[CriticExample]:
    """Training examples whose task holds a tool named as a held-out example's tool (in any run) are dropped."""
    held = {n for e in examples if e.side == "heldout" for n in e.agent_tools}
    out = []
    for e in examples:
        if e.side == "train" and set(e.agent_tools) & held:
            dropped["train task holds a held-out tool's name"] += 1
            continue
        out.append(e)
    return out


def balance(examples: list[CriticExample], seed: int, dropped: Counter[str]) -> list[CriticExample]:
    """As many passing as failing examples per split: the majority outcome is sampled down (fixed by seed)."""
    out = []
    for side in ("train", "heldout"):
        rows = [e for e in examples if e.side == side]
        by = {True: [e for e in rows if e.passed], False: [e for e in rows if not e.passed]}
        n = min(len(by[True]), len(by[False]))
        for outcome, group in by.items():
            group = sorted(group, key=lambda e: e.id)
            random.Random(f"{seed}:{side}:{outcome}").shuffle(group)
            out += group[:n]
            if len(group) > n:
                dropped[f"balance ({side}, {'pass' if outcome else 'fail'})"] += len(group) - n
    return sorted(out, key=lambda e: (e.side, e.id))


def split_summary(examples: list[CriticExample]) -> dict[str, Any]:
    def count(key: Any) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for e in examples:
            cell = out.setdefault(key(e), {"pass": 0, "fail": 0})
            cell["pass" if e.passed else "fail"] += 1
        return dict(sorted(out.items()))

    return {"examples": len(examples), "pass": sum(e.passed for e in examples),
            "fail": sum(not e.passed for e in examples), "tokens": sum(e.tokens for e in examples),
            "with_quote": sum(bool(e.evidence) for e in examples),
            "criteria": count(lambda e: e.criterion_id), "check_kinds": count(lambda e: e.check_kind),
            "runs": dict(Counter(e.run for e in examples)),
            "tools": sorted({n for e in examples for n in e.agent_tools})}


def criterion_library() -> dict[str, Criterion]:
    from synth.tasks.rubrics import default_library

    lib = default_library()
    return {c.id: c for c in [*lib.core, *lib.prescriptive]}


def build(run_dirs: list[Path], out_dir: Path, *, heldout_share: float = 0.5, seed: int = 0,
          max_tokens: int = MAX_TOKENS, tokenizer: Any = None) -> CriticSummary:
    """Build the critic data of ``run_dirs`` into ``out_dir``: ``train.jsonl``, ``heldout.jsonl`` (one
    ``CriticExample`` a line) and ``summary.json``."""
    if not 0 < heldout_share < 1:
        raise CriticError(f"critic held-out share must be in (0, 1), got {heldout_share}",
                          hint="give --heldout-share between 0 and 1, e.g. 0.5")
    if tokenizer is None:
        from transformers import AutoTokenizer

        from synth.serve.checkpoint import ensure_checkpoint

        tokenizer = AutoTokenizer.from_pretrained(ensure_checkpoint())
    library = criterion_library()
    dropped: Counter[str] = Counter()
    examples: list[CriticExample] = []
    candidates = 0
    for run_dir in run_dirs:
        data = read_run(run_dir, heldout_share)
        candidates += sum(len(r.verdict.checks) for r in data.verdicts if r.verdict is not None)
        examples += run_examples(data, library, tokenizer, max_tokens, dropped)
    examples = balance(exclude_seen_tools(dedup(examples, dropped), dropped), seed, dropped)
    if not examples:
        raise CriticError(f"no critic example in {', '.join(str(r) for r in run_dirs)}: {dict(dropped)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = CriticSummary(runs=[str(r) for r in run_dirs], heldout_share=heldout_share, max_tokens=max_tokens,
                            candidates=candidates, dropped=dict(sorted(dropped.items())))
    for side in ("train", "heldout"):
        rows = [e for e in examples if e.side == side]
        path = out_dir / f"{side}.jsonl"
        path.write_text("".join(e.model_dump_json() + "\n" for e in rows))
        summary.files[side] = str(path)
        summary.splits[side] = split_summary(rows)
    (out_dir / "summary.json").write_text(summary.model_dump_json(indent=2))
    return summary


def load_examples(path: Path) -> list[CriticExample]:
    if not path.exists():
        raise CriticError(f"no critic examples at {path}", hint="build them first: `synth critic build`")
    return [CriticExample.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
