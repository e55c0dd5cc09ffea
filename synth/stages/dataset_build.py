"""Join trajectories with their verdicts, tasks and agents into a Hugging Face dataset on disk and as Parquet.

Layout under ``runs/<run>/dataset/``:
  hf/            ``DatasetDict.save_to_disk``: split ``train`` (accepted), ``rejected`` (kept for analysis) and
                 ``heldout`` (every trajectory of a held-out task, accepted or not: never trained on). Tasks on
                 neither side of the held-out split (``synth.data.heldout``: their tools mix held-out and training
                 groups) and accepted rows that hold BFCL's function names or questions are in no split, counted
  data/          the same splits as Parquet (what the Hub serves), ``<split>-*.parquet``
  sft/           the training view TRL's SFT trainer reads: ``messages`` and ``tools``, arguments as dicts
  dedup/         the near-duplicate index of the kept train rows and the held-out rows (MinHash signatures by
                 row id), which later runs check against, and ``dropped.jsonl``: the train rows left out as
                 near-copies, of what (``synth.data.trajectory_dedup``)
  README.md      the dataset card (YAML metadata + this run's statistics)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, Json, List, Value
from pydantic import BaseModel, Field

from synth.config import PipelineConfig
from synth.data.card import write_card
from synth.data.heldout import HeldoutSet, TaskSplit
from synth.data.summary import Contamination, DatasetSummary, Deduplication
from synth.data.trajectory_dedup import INDEX_DIR, DedupIndex, Dropped, dedup_train, write_dropped
from synth.judge.accept import run_acceptance
from synth.schemas.records import AgentRecord, TaskRecord, TrajectoryRecord, VerdictRecord
from synth.stages.outputs import RunOutputs
from synth.stages.split import task_split

FUNCTION = {"name": Value("string"), "arguments": Value("string")}
TOOL_CALL = {"id": Value("string"), "type": Value("string"), "function": FUNCTION}
MESSAGE = {"role": Value("string"), "content": Value("string"), "tool_calls": List(TOOL_CALL),
           "tool_call_id": Value("string"), "name": Value("string")}

FEATURES = Features({
    "id": Value("string"),
    "agent_id": Value("string"),
    "task_id": Value("string"),
    "difficulty": Value("string"),
    "domain": Value("string"),
    "messages": List(MESSAGE),
    "tools": List(Json()),
    "rubric": Json(),
    "verdict": Json(),
    "accepted": Value("bool"),
    "score": Value("float64"),
    "calls": Json(),
    "usage": Json(),
    "model": Value("string"),
    "seed": Value("int64"),
    "turns": Value("int64"),
    "stop_reason": Value("string"),
    "required_first_call": Value("string"),
    "forced_answer_step": Value("int64"),
    "sample": Value("int64"),
    "heldout": Value("bool"),
    "split_keys": List(Value("string")),
    "accepted_by": Value("string"),
    "acceptance": Json(),
})

SFT_FEATURES = Features({
    "messages": List({**MESSAGE, "tool_calls": List({"id": Value("string"), "type": Value("string"),
                                                     "function": {"name": Value("string"),
                                                                  "arguments": Json()}})}),
    "tools": List(Json()),
})


def _message_row(msg: dict[str, Any]) -> dict[str, Any]:
    return {"role": msg["role"], "content": msg.get("content"), "tool_calls": msg.get("tool_calls") or [],
            "tool_call_id": msg.get("tool_call_id"), "name": msg.get("name")}


def _sft_message(msg: dict[str, Any]) -> dict[str, Any]:
    row = _message_row(msg)
    row["tool_calls"] = [
        {**call, "function": {"name": call["function"]["name"],
                              "arguments": json.loads(call["function"]["arguments"] or "{}")}}
        for call in row["tool_calls"]
    ]
    return row


class Collected(BaseModel):
    """The joined rows of a run and what was left out of them."""

    rows: list[dict[str, Any]]
    errored: int = Field(description="Trajectories that failed before the judge.")
    excluded: int = Field(description="Judged trajectories of tasks on neither side of the held-out split, and "
                          "training ones that call a tool named as a held-out tool (outside their toolset).")


def collect_rows(run_dir: Path, config: PipelineConfig | None = None, inputs: RunOutputs | None = None,
                 split: TaskSplit | None = None) -> Collected:
    """Joined rows (accepted under ``judge.accept``, each with its side of ``split``: ``task_split``'s by
    default), without those of tasks on neither side. ``inputs``: how the stages are read (the dataset stage's
    declared inputs; by default every stage of ``run_dir``)."""
    config = config or PipelineConfig()
    inputs = inputs or RunOutputs(run_dir)
    split = split or task_split(config, inputs)
    tasks = {t.id: t for t in inputs.rows("tasks", TaskRecord)}
    agents = {a.id: a for a in inputs.rows("agents", AgentRecord)}
    verdicts = {v.id: v for v in inputs.rows("judge", VerdictRecord)}
    decisions, _ = run_acceptance(verdicts.values(), tasks, config.judge)
    rows, errored, excluded = [], 0, 0
    held_tools = set(split.tools)
    for traj in sorted(inputs.rows("rollouts", TrajectoryRecord), key=lambda t: t.id):
        record = verdicts.get(traj.id)
        if traj.error is not None or record is None or record.verdict is None:
            errored += 1
            continue
        task, agent = tasks[traj.task_id], agents[traj.agent_id]
        side = split.side(task.id)
        # A call to a tool outside the toolset is answered as unknown, but its name is still in the row: one
        # named as a held-out tool keeps the row out of train like a held-out tool in its toolset would.
        called = {c.function.name for m in traj.messages for c in m.tool_calls or []}
        if side not in ("train", "heldout") or (side == "train" and called & held_tools):
            excluded += 1
            continue
        usage = traj.usage.model_copy(deep=True)
        usage.merge(record.usage)
        rows.append({
            "id": traj.id, "agent_id": agent.id, "task_id": task.id, "difficulty": task.difficulty,
            "domain": agent.domain,
            "messages": [_message_row(m.openai()) for m in traj.messages],
            "tools": traj.tools or agent.tools,
            "rubric": task.rubric.model_dump() if task.rubric else None,
            "verdict": record.verdict.model_dump(),
            "accepted": decisions[record.id].accepted, "score": record.verdict.score,
            "calls": [c.model_dump() for c in traj.calls], "usage": usage.model_dump(),
            "model": traj.model or "", "seed": traj.seed, "turns": traj.turns, "stop_reason": traj.stop_reason,
            "required_first_call": traj.required_first_call, "forced_answer_step": traj.forced_answer_step,
            "sample": traj.sample, "heldout": side == "heldout", "split_keys": split.keys[task.id],
            "accepted_by": decisions[record.id].by, "acceptance": decisions[record.id].model_dump(),
        })
    return Collected(rows=rows, errored=errored, excluded=excluded)


def bfcl_guard(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Contamination]:
    """``rows`` without those holding one of BFCL's function names or questions (``synth.bfcl.contamination``),
    and the count: of the rows kept (0, measured again), of those left out and what they held. Without BFCL's
    data (``bfcl-eval`` not installed) nothing can be told apart: every row is kept and the count is unknown."""
    from synth.errors import SynthError

    try:
        from synth.bfcl.contamination import contamination

        flagged = [contamination([r]) for r in rows]
    except SynthError as exc:
        return rows, Contamination(count=None, note=f"{exc}" + (f" ({exc.hint})" if exc.hint else ""))
    kept = [r for r, c in zip(rows, flagged, strict=True) if not c.contaminated_rows]
    left = [c for c in flagged if c.contaminated_rows]
    return kept, Contamination(count=contamination(kept).contaminated_rows, kept_out=len(left),
                               names=sorted({n for c in left for n in c.function_names}),
                               questions=sorted({q for c in left for q in c.question_ids}))


def dedup_sources(config: PipelineConfig) -> dict[str, Path]:
    """The earlier datasets this run's train rows are checked against, by name: ``dataset.dedup.runs``, the runs
    it trains with (``train.data_runs``: synth improve's earlier rounds) and ``dataset.dedup.indexes``."""
    cfg = config.dataset.dedup
    runs = [*cfg.runs, *(config.train.data_runs if cfg.data_runs else [])]
    out = {run: RunOutputs(config.runs_dir / run).dir("dataset") for run in dict.fromkeys(runs) if run != config.run}
    return out | {str(path): path for path in cfg.indexes}


def dedup_digests(config: PipelineConfig) -> dict[str, str]:
    """``"dedup <name>"`` -> a digest of what each earlier dataset holds: the dataset stage plans a new build when
    one changes. Empty when deduplication is off or checks nothing earlier."""
    if not config.dataset.dedup.enabled:
        return {}
    out = {}
    for name, folder in dedup_sources(config).items():
        h = hashlib.sha256()
        for sub in (folder, folder / INDEX_DIR, folder / "data"):
            for f in sorted(sub.glob("*")) if sub.is_dir() else []:
                if f.is_file() and f.suffix in (".json", ".npz", ".parquet"):
                    h.update(f"{f.relative_to(folder)}\n".encode() + hashlib.sha256(f.read_bytes()).digest())
        out[f"dedup {name}"] = h.hexdigest()[:16]
    return out


def deduplicate(config: PipelineConfig, train: list[dict[str, Any]],
                heldout: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Dropped], DedupIndex, Deduplication]:
    """``train`` without its near-copies (``dataset.dedup``), what was dropped, the index of this run's rows for
    later runs, and the counts by reason. Off: every row is kept and still indexed."""
    cfg = config.dataset.dedup
    if not cfg.enabled:
        return (train, [], DedupIndex.of_rows(config.run, [*train, *heldout]),
                Deduplication(enabled=False, threshold=cfg.threshold, checked=len(train)))
    earlier = [DedupIndex.load(folder, name) for name, folder in dedup_sources(config).items()]
    kept, dropped, index = dedup_train(train, heldout, earlier, cfg.threshold, source=config.run)
    against = {e.source: sum(d.reason == "earlier" and d.source == e.source for d in dropped) for e in earlier}
    return kept, dropped, index, Deduplication(
        threshold=cfg.threshold, checked=len(train), against=against,
        within_run=sum(d.reason == "within_run" for d in dropped),
        near_heldout=sum(d.reason == "heldout" for d in dropped))


def _table(rows: list[dict[str, Any]], features: Features) -> Dataset:
    # from_list([]) infers no columns; an empty split must still have the schema so it loads and concatenates.
    if not rows:
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return Dataset.from_list(rows, features=features)


def build_dataset(config: PipelineConfig, inputs: RunOutputs | None = None, out: Path | None = None,
                  split: TaskSplit | None = None) -> DatasetSummary:
    """Build the dataset (in ``out``, by default the dataset stage's folder ``runs/<run>/dataset/``) from the
    judged trajectories; ``inputs`` and ``split`` as in ``collect_rows``. The pipeline runs this as the
    ``dataset`` stage (``synth.stages.dataset``), which skips it when nothing changed."""
    out = out or RunOutputs(config.run_dir).dir("dataset")
    inputs = inputs or RunOutputs(config.run_dir)
    split = split or task_split(config, inputs)
    collected = collect_rows(config.run_dir, config, inputs, split)
    rows = collected.rows
    # A held-out task's rows go to `heldout` whatever the judge said: evaluation runs on these tasks.
    heldout = [r for r in rows if r["heldout"]]
    accepted, bfcl = bfcl_guard([r for r in rows if r["accepted"] and not r["heldout"]])
    # After the BFCL guard, so a copy is never dropped for a row that then leaves train for another reason.
    accepted, dropped, index, dedup = deduplicate(config, accepted, heldout)
    rejected = [r for r in rows if not r["accepted"] and not r["heldout"]]
    splits = DatasetDict({
        "train": _table(accepted, FEATURES),
        "rejected": _table(rejected, FEATURES),
        "heldout": _table(heldout, FEATURES),
    })
    # Build beside the target and swap, so a killed run never leaves half a dataset where the last one was.
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    # Explicit shard counts: datasets writes an empty split with zero shards, which load_from_disk then rejects.
    splits.save_to_disk(str(tmp / "hf"), num_shards={k: max(1, -(-len(v) // 100_000)) for k, v in splits.items()})
    (tmp / "data").mkdir(parents=True)
    # Parquet only for splits with rows: the Hub's loader rejects a split whose files hold none.
    for name, split_rows in splits.items():
        if len(split_rows):
            split_rows.to_parquet(str(tmp / "data" / f"{name}-00000-of-00001.parquet"))
    index.save(tmp / INDEX_DIR)
    write_dropped(tmp / INDEX_DIR, dropped)
    sft = _table([{"messages": [_sft_message(m) for m in r["messages"]], "tools": r["tools"]} for r in accepted],
                 SFT_FEATURES)
    (tmp / "sft").mkdir()
    if len(sft):
        sft.to_parquet(str(tmp / "sft" / "train-00000-of-00001.parquet"))
    kept = {r["id"] for r in accepted}
    by_difficulty: dict[str, dict[str, int]] = {}
    for r in rows:
        cell = by_difficulty.setdefault(r["difficulty"], {"accepted": 0, "rejected": 0, "heldout": 0})
        if r["heldout"] or not r["accepted"] or r["id"] in kept:
            cell["heldout" if r["heldout"] else "accepted" if r["accepted"] else "rejected"] += 1
    accepted_by: dict[str, int] = {}
    for r in accepted:
        accepted_by[r["accepted_by"]] = accepted_by.get(r["accepted_by"], 0) + 1
    tasks = inputs.rows("tasks", TaskRecord)
    _, calibration = run_acceptance(inputs.rows("judge", VerdictRecord), {t.id: t for t in tasks}, config.judge)
    summary = DatasetSummary(path=str(out), trajectories=len(rows) + collected.errored + collected.excluded,
                             accepted=len(accepted), rejected=len(rejected), errored=collected.errored,
                             heldout=len(heldout), heldout_tasks=len(split.ids("heldout")),
                             excluded=collected.excluded, excluded_tasks=split.excluded_by(),
                             heldout_groups=len(split.groups), heldout_tools=len(split.tools), contamination=bfcl,
                             dedup=dedup, accept_mode=config.judge.accept, accepted_by=accepted_by,
                             calibration=calibration.summary(), by_difficulty=by_difficulty)
    write_card(tmp / "README.md", config, summary, rows)
    (tmp / "summary.json").write_text(summary.model_dump_json(indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return summary


def heldout_task_ids(config: PipelineConfig) -> list[str]:
    """The run's held-out tasks (usable ones, by id); they never enter ``train``."""
    return task_split(config).ids("heldout")


def heldout_set(config: PipelineConfig, inputs: RunOutputs | None = None, split: TaskSplit | None = None) -> HeldoutSet:
    """What the dataset records for evaluation: its held-out tasks, their agents, the groups and tools they hold
    out."""
    inputs = inputs or RunOutputs(config.run_dir)
    return HeldoutSet.of(split or task_split(config, inputs), inputs.rows("tasks", TaskRecord),
                         inputs.rows("agents", AgentRecord))
