"""Stage ``dataset``: join the judged trajectories with their tasks and agents into the Hugging Face dataset
(``synth.stages.dataset_build``), as one row that records what was built from which inputs, and the evaluation
set: the held-out tasks, their agents and the tool groups and tools they hold out (``synth.data.heldout``: the
split is by tool group, so no training row holds a held-out tool), which the ``eval`` stage scores as recorded
here. It reads the tools stage (optional) for its synthetic tools' domain leaves, the groups they are held out by.

Its one work item's id hashes the rows of its inputs, so a re-run with the same rows finds the dataset built and
does nothing, while new rows (a quota round, a recomputed judge) plan a new item and the dataset is built again;
a change of its settings (``dataset.*``, the judge's acceptance) recomputes it (a derived stage never refuses).
"""

from __future__ import annotations

from pydantic import Field

from synth.data.heldout import RULE, HeldoutSet
from synth.data.summary import DatasetSummary
from synth.schemas.ids import dataset_id
from synth.schemas.records import Row
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.outputs import RunOutputs
from synth.stages.split import task_split

BUILT = "summary.json"  # written last into the dataset folder: a folder without it is no finished build


class DatasetRecord(Row):
    inputs: dict[str, str] = Field(default_factory=dict, description="Input stage -> digest of its rows.")
    summary: DatasetSummary | None = None
    heldout: HeldoutSet | None = Field(default=None, description="The held-out tasks evaluation scores.")


class DatasetStage(Stage):
    name = "dataset"
    inputs = ("tools", "agents", "tasks", "rollouts", "judge")
    # Upstream of agents, so it adds nothing to the fingerprint; optional, so a run whose tools stage never ran
    # (hand-made agents) still builds. What was read of it is in the item's id.
    optional = ("tools",)
    record = DatasetRecord
    uses_llm = False
    local = True  # one build, in the driver, which writes runs/<run>/dataset/
    derived = True
    stops = (Exception,)  # a build that fails is the stage's failure: say why, as `synth dataset` always did

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        from synth.stages.dataset_build import dedup_digests

        source = {name: ctx.inputs.digest(name) for name in self.inputs
                  if name not in self.optional or ctx.inputs.finished(name)}
        # The earlier datasets this run's train rows are checked against for near-copies: when one changes, the
        # build is redone (nothing is added when there are none, so other builds keep their ids).
        source |= dedup_digests(ctx.config)
        return [WorkItem(id=dataset_id(source), payload={"inputs": source})]

    def lost(self, ctx: StageContext, done: set[str]) -> set[str]:
        # The row describes the folder it built: when that folder is gone, build it again. A row from before the
        # dataset recorded its held-out tasks, or chose them by another rule, is built again too: evaluation
        # reads them from it.
        if not (ctx.out_dir / BUILT).exists():
            return done
        return {r.id for r in ctx.own_rows(DatasetRecord) if r.id in done and r.error is None
                and (r.heldout is None or r.heldout.rule != RULE)}

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.stages.dataset_build import build_dataset, heldout_set

        split = task_split(ctx.config, ctx.inputs)
        summary = build_dataset(ctx.config, ctx.inputs, out=ctx.out_dir, split=split)
        return DatasetRecord(id=item.id, seed=item.seed, inputs=item.payload["inputs"], summary=summary,
                             heldout=heldout_set(ctx.config, ctx.inputs, split))

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        built = next((r for r in rows if isinstance(r, DatasetRecord) and r.summary), None)
        if built is not None and built.summary is not None:
            summary.extra["dataset"] = built.summary.model_dump(mode="json")
        if built is not None and built.heldout is not None:
            summary.extra["heldout"] = built.heldout.summary()


def built_summary(summary: StageSummary) -> DatasetSummary:
    """What the dataset stage built, from its stage summary."""
    return DatasetSummary.model_validate(summary.extra["dataset"])


def built_dataset(outputs: RunOutputs) -> DatasetRecord | None:
    """The run's finished dataset row (None before the stage ran)."""
    return next((r for r in outputs.rows(DatasetStage.name, DatasetRecord) if r.error is None), None)


def recorded_heldout(outputs: RunOutputs) -> HeldoutSet | None:
    """The held-out tasks the run's dataset recorded (None: no dataset, or one built before it recorded them)."""
    built = built_dataset(outputs)
    return built.heldout if built is not None else None

