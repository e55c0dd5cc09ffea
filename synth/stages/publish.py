"""Stage ``publish``: push the built dataset with its card (the ``card`` stage's ``README.md``, evaluation
included) to the Hugging Face Hub (``synth.data.publish``), as one row that records what went to which repo.

Run only when asked (``synth publish --repo-id OWNER/NAME``): it needs a token. Its item's id hashes the repo and
the card row (which hashes the dataset row and the evaluation), so publishing the same dataset and card to the
same repo again sends nothing, and a rebuilt dataset or a new evaluation is pushed anew. The token is read from
the environment by the push itself and never enters a row or the config.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from synth.data.publish import PublishError, publish
from synth.schemas.ids import publish_id
from synth.schemas.records import Row
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.card import CARD, CardRecord, CardStage
from synth.stages.dataset import DatasetStage, built_dataset

UPLOAD = "upload"
PUSHED = ("data", "sft", "summary.json")  # what the Hub serves of the dataset folder, besides the card


class PublishRecord(Row):
    repo_id: str = ""
    private: bool = False
    dataset: str = ""  # the id of the dataset row that was pushed
    card: str = ""  # the id of the card row pushed with it
    url: str = ""


class PublishStage(Stage):
    name = "publish"
    inputs = (DatasetStage.name, CardStage.name)
    record = PublishRecord
    uses_llm = False
    local = True  # the token is in the driver's environment, not on a cluster's nodes
    derived = True
    stops = (Exception,)  # no token, a refusing Hub: one message, as `synth publish` always gave

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        cfg = ctx.config.publish
        if not cfg.repo_id:
            raise PublishError("no Hub repo to publish to", hint="pass --repo-id OWNER/NAME (publish.repo_id)")
        dataset = built_dataset(ctx.inputs)
        if dataset is None:
            raise PublishError(f"{ctx.inputs.dir(DatasetStage.name)} holds no built dataset",
                               hint="run `synth dataset` first")
        card = next((r for r in ctx.rows(CardStage.name, CardRecord) if r.error is None), None)
        if card is None:
            raise PublishError("the dataset has no card yet", hint="run `synth dataset` again")
        return [WorkItem(id=publish_id(cfg.repo_id, card.id),
                         payload={"repo_id": cfg.repo_id, "private": cfg.private, "dataset": dataset.id,
                                  "card": card.id})]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        folder = staged(ctx.inputs.dir(DatasetStage.name), ctx.input_file(CardStage.name, CARD), ctx.out_dir / UPLOAD)
        url = publish(folder, item.payload["repo_id"], private=item.payload["private"])
        return PublishRecord(id=item.id, seed=item.seed, repo_id=item.payload["repo_id"],
                             private=item.payload["private"], dataset=item.payload["dataset"],
                             card=item.payload["card"], url=url)

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        done = next((r for r in rows if isinstance(r, PublishRecord) and r.error is None), None)
        if done is not None:
            summary.extra |= {"url": done.url, "repo_id": done.repo_id}


def staged(dataset: Path, card: Path, out: Path) -> Path:
    """The folder to push: the dataset's served files (hard links where the file system allows, else copies)
    and the card as its ``README.md``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in PUSHED:
        source = dataset / name
        if source.is_dir():
            shutil.copytree(source, out / name, copy_function=_link)
        elif source.exists():
            _link(str(source), str(out / name))
    shutil.copy(card, out / CARD)
    return out


def _link(source: str, target: str) -> str:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)
    return target
