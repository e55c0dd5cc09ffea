"""Stage ``card``: the dataset card, ``README.md`` of what ``publish`` pushes, with the held-out evaluation.

It reads the card the ``dataset`` stage wrote with the dataset (metadata, statistics, licence, provenance) and,
when the ``eval`` stage has run, its scores, and writes ``runs/<run>/card/README.md``. Its one row's id hashes
the dataset row and the evaluation's rows, so a new build or a new evaluation makes a new card and nothing else
does. Derived: stages that read it bring it up to date first (``synth publish``), and ``synth eval`` writes it.
"""

from __future__ import annotations

from synth.errors import SynthError
from synth.schemas.ids import card_id
from synth.schemas.records import Row
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.dataset import DatasetStage, built_dataset
from synth.stages.eval import EvalStage, eval_summary

CARD = "README.md"


class NoDatasetCard(SynthError):
    """The dataset folder holds no card to start from."""

    hint = "build the dataset again (`synth dataset`)"


class CardRecord(Row):
    dataset: str = ""
    evaluation: str | None = None  # digest of the eval stage's rows the card shows; None: no evaluation yet
    path: str = ""


class CardStage(Stage):
    name = "card"
    inputs = (DatasetStage.name, EvalStage.name)
    optional = (EvalStage.name,)  # a dataset is published with its card whether or not a model was evaluated
    record = CardRecord
    uses_llm = False
    local = True
    derived = True
    stops = (Exception,)  # one card: when it cannot be written, the stage fails and says why

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        dataset = built_dataset(ctx.inputs)
        evaluation = ctx.inputs.digest(EvalStage.name) if ctx.inputs.finished(EvalStage.name) else None
        built = dataset.id if dataset is not None else ""
        return [WorkItem(id=card_id(built, evaluation), payload={"dataset": built, "evaluation": evaluation})]

    def lost(self, ctx: StageContext, done: set[str]) -> set[str]:
        return set() if (ctx.out_dir / CARD).exists() else done

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.evaluate.report import with_section

        source = ctx.input_file(DatasetStage.name, CARD)
        if not source.exists():
            raise NoDatasetCard(f"{source} does not exist")
        card = source.read_text()
        if item.payload["evaluation"] is not None and (done := ctx.summary(EvalStage.name)) is not None:
            card = with_section(card, eval_summary(done))
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        (ctx.out_dir / CARD).write_text(card)
        return CardRecord(id=item.id, seed=item.seed, dataset=item.payload["dataset"],
                          evaluation=item.payload["evaluation"], path=str(ctx.out_dir / CARD))

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        done = next((r for r in rows if isinstance(r, CardRecord) and r.error is None), None)
        if done is not None:
            summary.extra |= {"card": done.path, "evaluated": done.evaluation is not None}
