"""Numbers behind the report page: the funnel, acceptance by difficulty and domain, criterion scores, calls."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from pydantic import BaseModel, Field

from synth.config import PipelineConfig
from synth.judge.accept import run_acceptance
from synth.schemas.records import AgentRecord, TaskRecord, ToolBatchRecord, TrajectoryRecord, VerdictRecord
from synth.stages.outputs import RunOutputs
from synth.stages.split import task_split


class RunAnalysis(BaseModel):
    funnel: list[tuple[str, int]] = Field(description="Stage name and rows that went on to the next stage.")
    acceptance_by_difficulty: dict[str, tuple[int, int]] = Field(default_factory=dict, description="accepted, total")
    acceptance_by_domain: dict[str, tuple[int, int]] = Field(default_factory=dict)
    criterion_scores: dict[str, dict[int, int]] = Field(default_factory=dict, description="criterion -> score -> n")
    check_pass: dict[str, tuple[int, int]] = Field(default_factory=dict, description="check kind -> passed, total")
    call_modes: dict[str, int] = Field(default_factory=dict)
    injected: dict[str, int] = Field(default_factory=dict)
    recovery: dict[str, int] = Field(default_factory=dict, description="After an injected failure, what came next.")
    turns: dict[int, int] = Field(default_factory=dict)
    rejection_reasons: dict[str, int] = Field(default_factory=dict)
    accept_mode: str = "auto"
    accepted_by: dict[str, int] = Field(default_factory=dict, description="Accepted rows by what accepted them.")
    calibration: dict = Field(default_factory=dict, description="LLM judge vs code checks, overall and per criterion.")
    heldout: tuple[int, int] = Field(default=(0, 0), description="Held-out tasks, and their judged trajectories.")
    excluded: tuple[int, int] = Field(default=(0, 0), description="Tasks on neither side of the held-out split "
                                      "(their tools mix both), and their judged trajectories.")


def _read(run_dir: Path, stage: str, model):
    return RunOutputs(run_dir).rows(stage, model)  # none before the stage ran


def _next_after_failure(traj: TrajectoryRecord, call_id: str) -> str:
    """What the agent did after the tool message answering ``call_id``: retried, tried another tool, or told
    the user."""
    msgs = traj.messages
    for i, m in enumerate(msgs):
        if m.role == "tool" and m.tool_call_id == call_id:
            failed_name = next((c.name for c in traj.calls if c.tool_call_id == call_id), "")
            for later in msgs[i + 1:]:
                if later.role == "assistant":
                    if later.tool_calls:
                        same = any(tc.function.name == failed_name for tc in later.tool_calls)
                        return "retried the tool" if same else "tried another tool"
                    return "told the user"
            return "episode ended"
    return "episode ended"


def analyse(run_dir: Path, config: PipelineConfig | None = None) -> RunAnalysis:
    config = config or PipelineConfig()
    batches = _read(run_dir, "tools", ToolBatchRecord)
    agents = _read(run_dir, "agents", AgentRecord)
    tasks = _read(run_dir, "tasks", TaskRecord)
    trajs = _read(run_dir, "rollouts", TrajectoryRecord)
    verdicts = _read(run_dir, "judge", VerdictRecord)
    by_task = {t.id: t for t in tasks}
    by_agent = {a.id: a for a in agents}
    by_traj = {t.id: t for t in trajs}
    decisions, calibration = run_acceptance(verdicts, by_task, config.judge)
    split = task_split(config, RunOutputs(run_dir))
    held, excluded = set(split.ids("heldout")), set(split.ids("excluded"))
    # Accepted means: into train (held-out tasks never go there, nor tasks on neither side), under judge.accept.
    accepted = [v for v in verdicts if v.id in decisions and decisions[v.id].accepted
                and split.side(v.task_id) == "train"]
    out = RunAnalysis(funnel=[
        ("synthetic tools", sum(len(b.tools) for b in batches)),
        ("agents", sum(a.error is None for a in agents)),
        ("tasks", sum(t.error is None for t in tasks)),
        ("episodes run", len(trajs)),
        ("episodes completed", sum(t.error is None for t in trajs)),
        ("judged", sum(v.verdict is not None and v.trajectory_id in by_traj and by_traj[v.trajectory_id].error is None
                       for v in verdicts)),
        ("accepted", len(accepted)),
    ])
    diff: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    dom: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    scores: dict[str, Counter] = defaultdict(Counter)
    checks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    reasons: Counter = Counter()
    for v in verdicts:
        if v.verdict is None:
            continue
        task = by_task.get(v.task_id)
        traj = by_traj.get(v.trajectory_id)
        agent = by_agent.get(traj.agent_id) if traj else None
        decision = decisions[v.id]
        if v.task_id not in held and v.task_id not in excluded:
            for key, table in ((task.difficulty if task else "?", diff), (agent.domain if agent else "?", dom)):
                table[key][0] += decision.accepted
                table[key][1] += 1
        for s in v.verdict.scores:
            scores[s.criterion_id][s.score] += 1
        kinds = {c.id: c.kind for c in (task.rubric.checks if task and task.rubric else [])}
        for c in v.verdict.checks:
            cell = checks[kinds.get(c.check_id, "other")]
            cell[0] += c.passed
            cell[1] += 1
        if not decision.accepted:
            for r in decision.reasons:
                reasons[r.split(":")[0][:70]] += 1
    modes, injected, recovery, turns = Counter(), Counter(), Counter(), Counter()
    for t in trajs:
        turns[t.turns] += 1
        for c in t.calls:
            modes[c.mode] += 1
            if c.injected != "none":
                injected[c.injected] += 1
                recovery[_next_after_failure(t, c.tool_call_id)] += 1
    out.acceptance_by_difficulty = {k: (a, n) for k, (a, n) in sorted(diff.items())}
    out.acceptance_by_domain = {k: (a, n) for k, (a, n) in sorted(dom.items())}
    out.criterion_scores = {k: dict(sorted(c.items())) for k, c in sorted(scores.items())}
    out.check_pass = {k: (a, n) for k, (a, n) in sorted(checks.items())}
    out.call_modes, out.injected, out.recovery = dict(modes), dict(injected), dict(recovery)
    out.turns = dict(sorted(turns.items()))
    out.rejection_reasons = dict(reasons.most_common(12))
    out.accept_mode = config.judge.accept
    out.accepted_by = dict(Counter(decisions[v.id].by for v in accepted if decisions[v.id].by))
    out.calibration = calibration.summary()
    out.heldout = (len(held), sum(v.task_id in held for v in verdicts if v.verdict is not None))
    out.excluded = (len(excluded), sum(v.task_id in excluded for v in verdicts if v.verdict is not None))
    return out
