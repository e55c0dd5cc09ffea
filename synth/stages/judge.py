"""Stage ``judge``: code checks plus an LLM judge per rubric criterion; a verdict for every trajectory.

When every verdict exists, the run's calibration (LLM judge vs code checks) is measured and each verdict is
accepted or rejected under ``judge.accept`` (``synth.judge.accept``); both go to ``judge/acceptance.json``.
"""

from __future__ import annotations

import json

from synth.schemas.ids import verdict_id
from synth.schemas.records import Row, TaskRecord, TrajectoryRecord, VerdictRecord
from synth.schemas.usage import UsageByRole
from synth.schemas.verdict import Verdict
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem

ACCEPTANCE = "acceptance.json"


class JudgeStage(Stage):
    name = "judge"
    # agents and tools (optional, upstream of rollouts: nothing in the fingerprint) only for the count of rows
    # that go to train, which needs each task's side of the held-out split (synth.data.heldout).
    inputs = ("rollouts", "tasks", "agents", "tools")
    optional = ("agents", "tools")
    record = VerdictRecord

    async def setup(self, ctx: StageContext) -> None:
        ctx.cache["tasks"] = {t.id: t for t in ctx.rows("tasks", TaskRecord)}
        ctx.cache["trajs"] = {t.id: t for t in ctx.rows("rollouts", TrajectoryRecord)}

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        trajs = sorted(ctx.rows("rollouts", TrajectoryRecord), key=lambda t: t.id)
        # The verdict's id is the trajectory's: one verdict per trajectory, joined by id in the dataset.
        return [WorkItem(id=verdict_id(t.id), seed=t.seed, payload={}) for t in trajs]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.judge.judge import judge_trajectory

        traj: TrajectoryRecord = ctx.cache["trajs"][item.id]  # verdict_id is the trajectory's id
        task: TaskRecord | None = ctx.cache["tasks"].get(traj.task_id)
        if task is None:  # an episode that failed before it knew its task (older rows): nothing to judge
            why = f"{traj.error.kind}: {traj.error.message}" if traj.error else f"unknown task {traj.task_id!r}"
            verdict = Verdict(passed=False, score=0.0, eligible=False, samples=0,
                              reasons=[f"trajectory failed before judging: {why}"])
            return VerdictRecord(id=item.id, seed=item.seed, trajectory_id=traj.id, task_id=traj.task_id,
                                 verdict=verdict, usage=usage)
        pool = ctx.llm("judge")
        verdict = await judge_trajectory(traj, task, pool, ctx.config.judge, seed=item.seed, usage=usage)
        return VerdictRecord(id=item.id, seed=item.seed, trajectory_id=traj.id, task_id=task.id, verdict=verdict,
                             usage=usage, model=await pool.model())

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        from synth.judge.accept import gate_summary, run_acceptance
        from synth.stages.split import task_split

        records = [r for r in rows if isinstance(r, VerdictRecord) and r.verdict]
        tasks = {t.id: t for t in ctx.rows("tasks", TaskRecord)}
        decisions, calibration = run_acceptance(records, tasks, ctx.config.judge)
        accepted = sum(a.accepted for a in decisions.values())
        split = task_split(ctx.config, ctx.inputs)
        train = sum(decisions[r.id].accepted and split.side(r.task_id) == "train" for r in records)
        reasons: dict[str, int] = {}
        for a in decisions.values():
            if not a.accepted:
                for reason in a.reasons or ["unspecified"]:
                    key = reason.split(":")[0][:60]
                    reasons[key] = reasons.get(key, 0) + 1
        by: dict[str, int] = {}
        for a in decisions.values():
            if a.by:
                by[a.by] = by.get(a.by, 0) + 1
        summary.rejected = reasons
        summary.extra |= {"accepted": accepted, "train": train, "rejected": len(decisions) - accepted, "accept_mode":
                         ctx.config.judge.accept, "accepted_by": by, "calibration": calibration.summary(),
                         "gates": gate_summary(decisions.values())}
        (ctx.out_dir / ACCEPTANCE).write_text(json.dumps({
            "mode": ctx.config.judge.accept, "calibration": calibration.summary(),
            "rows": {rid: a.model_dump() for rid, a in sorted(decisions.items())},
        }, indent=1))
