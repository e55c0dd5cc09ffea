"""Stage ``eval``: the held-out tasks the dataset recorded, as full episodes, with each model as the agent.

The models are the base (``eval.base_model``, else the embedded model) and every job the ``train`` stage finished
(or ``eval.models``: 'base', job names, checkpoint folders); each plays unforced, and those of
``eval.forced_models`` (the base) forced as well, as generation forces the agent (``synth.evaluate.episode``).
The tasks are exactly those the ``dataset`` stage recorded as held out (or those of ``eval.tasks_from``'s
dataset; the first ``eval.max_tasks`` by id): no share is computed again here, so an eval at another
``heldout_share`` never scores a task that was trained on. A dataset that chose them by task id (before the split
was by tool group) is refused: its held-out tasks can hold tools training used. One row per model, mode and task,
its id hashing the model's weights (its training fingerprint) and the task, so a killed eval resumes, a retrained
checkpoint gets new rows and other models' rows are kept.
The models are served one after another (``synth.evaluate.episode``); their scores go to ``eval.md``,
``eval.json`` and the plots in ``runs/<run>/eval/``, and into this stage's summary for the card.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from synth.config import PipelineConfig
from synth.data.heldout import RULE, HeldoutSet
from synth.errors import SynthError
from synth.evaluate.episode import (
    BASE,
    EvalRecord,
    EvalSummary,
    Mode,
    ModelUnderTest,
    agent_pool,
    checkpoint_model,
    failed_record,
    play,
    served_under_test,
    serving,
    summarize,
)
from synth.evaluate.metrics import expected_checks
from synth.schemas.ids import eval_id
from synth.schemas.records import Row
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.dataset import DatasetStage, recorded_heldout
from synth.stages.outputs import RunOutputs
from synth.stages.train import TrainRecord, TrainStage


class NoHeldoutTasks(SynthError):
    """The dataset the evaluation reads recorded no held-out task."""

    hint = ("rebuild the dataset with this version of synth (`synth dataset`), or raise dataset.heldout_share "
            "and run the pipeline again")


class UnknownModel(SynthError):
    """A model to evaluate that is neither the base, a job of the run's train stage, nor a checkpoint folder."""

    hint = "name 'base', a job of `synth train` in this run, or a checkpoint folder (one with config.json)"


class TrainedOnHeldout(SynthError):
    """A trained model whose job held out less than the tasks to score: it may have trained on some of them."""

    hint = ("evaluate at the share the models were trained with (dataset.heldout_share), or train them again at "
            "this one")


class EvalStage(Stage):
    name = "eval"
    inputs = (DatasetStage.name, TrainStage.name)
    optional = (TrainStage.name,)  # the base model alone can be scored before anything is trained
    record = EvalRecord
    local = True  # the model under test is served on this machine's eval.port
    retains = True  # a model left out this time keeps its episodes for the next time it is asked for

    def concurrency(self, config: PipelineConfig) -> int | None:
        return config.eval.concurrency

    def heldout(self, ctx: StageContext) -> HeldoutSet:
        """The tasks to score: those the dataset recorded as held out, the first ``eval.max_tasks`` by id."""
        source, where = ctx.inputs, ctx.run_dir
        if ctx.config.eval.tasks_from not in (None, ctx.config.run):
            where = ctx.config.runs_dir / str(ctx.config.eval.tasks_from)
            source = RunOutputs(where, reader=self.name, allowed=(DatasetStage.name,))
        recorded = recorded_heldout(source) if source.finished(DatasetStage.name) else None
        if recorded is None or not recorded.tasks:
            raise NoHeldoutTasks(f"the dataset of {where} recorded no held-out tasks")
        if recorded.rule != RULE:
            raise NoHeldoutTasks(f"the dataset of {where} chose its held-out tasks by {recorded.rule}, not by "
                                 f"{RULE}: they can hold tools that training used",
                                 hint="build the dataset again with this version of synth (`synth dataset`)")
        return recorded.first(ctx.config.eval.max_tasks)

    @staticmethod
    def modes(ctx: StageContext, model: ModelUnderTest) -> list[Mode]:
        """How ``model`` plays: unforced, and forced too when ``eval.forced_models`` names it."""
        return ["unforced", *(["forced"] if model.name in ctx.config.eval.forced_models else [])]

    def models(self, ctx: StageContext) -> list[ModelUnderTest]:
        """The models to score, in order: ``eval.models``, else the base and every finished training job."""
        from synth.train.trainer import base_model_dir

        jobs: dict[str, TrainRecord] = {}
        if ctx.inputs.finished(TrainStage.name):
            jobs = {r.name: r for r in ctx.rows(TrainStage.name, TrainRecord) if r.error is None and r.summary}
        out = []
        for name in ctx.config.eval.models or [BASE, *sorted(jobs)]:
            if name == BASE:
                out.append(checkpoint_model(BASE, base_model_dir(ctx.config.eval.base_model)))
            elif name in jobs and (s := jobs[name].summary) is not None:
                self._trained_apart(ctx, name, jobs[name])
                out.append(ModelUnderTest(name=name, checkpoint=s.checkpoint, identity=s.fingerprint))
            elif (Path(name) / "config.json").exists():
                out.append(checkpoint_model(Path(name).name, Path(name)))
            else:
                raise UnknownModel(f"model {name!r} is neither 'base', a finished job of {ctx.run_dir}'s train "
                                   f"stage (found: {', '.join(sorted(jobs)) or 'none'}) nor a checkpoint folder")
        return out

    def _trained_apart(self, ctx: StageContext, name: str, record: TrainRecord) -> None:
        """Refuse a job trained at a smaller held-out share than the tasks to score were held out at: a task
        held out now could have been on its training side then (``is_heldout`` grows with the share, so a larger
        training share holds out every task a smaller one does)."""
        share = self.heldout(ctx).share
        if record.job is not None and record.job.heldout_share < share:
            raise TrainedOnHeldout(f"model {name!r} was trained with held-out share {record.job.heldout_share}, but "
                                   f"the tasks to score were held out at {share}: it may have trained on some")

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        heldout = self.heldout(ctx)
        # An unforced row's id is as it always was, so episodes already played are kept.
        return [WorkItem(id=eval_id(m.name if mode == "unforced" else f"{m.name}:{mode}", m.identity, t.id, t.seed),
                         seed=t.seed, payload={"model": m.model_dump(), "mode": mode, "task": t.id,
                                               "agent": t.agent_id, "difficulty": t.difficulty,
                                               "has_checks": expected_checks(t.rubric) > 0})
                for m in self.models(ctx) for mode in self.modes(ctx, m) for t in heldout.tasks]

    async def setup(self, ctx: StageContext) -> None:
        heldout = self.heldout(ctx)
        ctx.cache["tasks"] = {t.id: t for t in heldout.tasks}
        ctx.cache["agents"] = {a.id: a for a in heldout.agents}
        ctx.cache["models"] = {m.name: m for m in self.models(ctx)}

    def group(self, item: WorkItem) -> str:
        return item.payload["model"]["name"]

    @contextlib.asynccontextmanager
    async def grouped(self, key: str, ctx: StageContext) -> AsyncIterator[None]:
        """Serve the group's model (one at a time, on ``eval.port``) for its episodes, then stop it."""
        emb = served_under_test(ctx.config, ctx.cache["models"][key])
        with serving(emb, ctx.config.eval.concurrency) as endpoint:
            pool = agent_pool(ctx.config, endpoint, emb.served_name or "")
            ctx.cache["under_test"] = pool
            try:
                yield
            finally:
                await pool.aclose()
                ctx.cache.pop("under_test", None)

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.stages.rollouts import agent_hub

        model = ModelUnderTest.model_validate(item.payload["model"])
        task, agent = ctx.cache["tasks"][item.payload["task"]], ctx.cache["agents"][item.payload["agent"]]
        assert ctx.pool is not None  # the stage uses the LLM: the runner gives it the run's pool
        roles = {r: p for r, p in ctx.role_pools.items() if r != "agent"}
        servers = sorted({s for s in agent.real_tools.values() if s != "builtin"})
        hub = agent_hub(agent, servers, allow_unconfined=ctx.config.rollouts.allow_unconfined) \
            if ctx.config.rollouts.real_exec and servers else None
        async with hub if hub is not None else contextlib.nullcontext():
            row = await play(ctx.config, task, agent, model, item.id, default=ctx.pool, roles=roles,
                             under_test=ctx.cache["under_test"], hub=hub, mode=item.payload.get("mode", "unforced"))
        usage.merge(row.usage)
        return row

    def failed_row(self, item: WorkItem, exc: BaseException, usage: UsageByRole | None = None) -> Row:
        base = super().failed_row(item, exc, usage)
        assert base.error is not None
        return failed_record(item.id, item.seed, ModelUnderTest.model_validate(item.payload["model"]),
                             item.payload["task"], item.payload["agent"], item.payload["difficulty"],
                             item.payload["has_checks"], base.error, base.usage,
                             mode=item.payload.get("mode", "unforced"))

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        from synth.evaluate.report import write_report

        heldout = self.heldout(ctx)
        models = self.models(ctx)
        names = {m.name: served_under_test(ctx.config, m).served_name or "" for m in models}
        result = summarize(ctx.config.run, heldout.share, heldout.tasks, models,
                           [r for r in rows if isinstance(r, EvalRecord)], names, seen=heldout.seen)
        result = write_report(result, ctx.out_dir)
        summary.extra["eval"] = result.model_dump(mode="json")


def eval_summary(summary: StageSummary) -> EvalSummary:
    """What the eval stage measured, from its stage summary."""
    return EvalSummary.model_validate(summary.extra["eval"])
