"""Stage ``judge``: code checks plus an LLM judge per rubric criterion; a verdict for every trajectory."""

from __future__ import annotations

from synth.schemas.records import Row, TaskRecord, TrajectoryRecord, VerdictRecord
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem


class JudgeStage(Stage):
    name = "judge"
    needs = "rollouts"
    record = VerdictRecord

    async def setup(self, ctx: StageContext) -> None:
        ctx.cache["tasks"] = {t.id: t for t in ctx.store("tasks").read(TaskRecord)}
        ctx.cache["trajs"] = {t.id: t for t in ctx.store("rollouts").read(TrajectoryRecord)}

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        trajs = sorted(ctx.store("rollouts").read(TrajectoryRecord), key=lambda t: t.id)
        # The verdict's id is the trajectory's: one verdict per trajectory, joined by id in the dataset.
        return [WorkItem(id=t.id, seed=t.seed, payload={}) for t in trajs]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.judge.judge import judge_trajectory

        traj: TrajectoryRecord = ctx.cache["trajs"][item.id]
        task: TaskRecord = ctx.cache["tasks"][traj.task_id]
        verdict = await judge_trajectory(traj, task, ctx.llm(), ctx.config.judge, seed=item.seed, usage=usage)
        return VerdictRecord(id=item.id, seed=item.seed, trajectory_id=traj.id, task_id=task.id, verdict=verdict,
                             usage=usage, model=await ctx.llm().model())

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        verdicts = [r.verdict for r in rows if isinstance(r, VerdictRecord) and r.verdict]
        accepted = sum(v.passed for v in verdicts)
        reasons: dict[str, int] = {}
        for v in verdicts:
            if not v.passed:
                for reason in v.reasons or ["unspecified"]:
                    key = reason.split(":")[0][:60]
                    reasons[key] = reasons.get(key, 0) + 1
        summary.rejected = reasons
        summary.extra = {"accepted": accepted, "rejected": len(verdicts) - accepted}
