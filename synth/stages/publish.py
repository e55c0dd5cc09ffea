"""Stage ``publish``: push the built dataset to the Hugging Face Hub (``synth.data.publish``), as one row that
records which dataset went to which repo.

Run only when asked (``synth publish --repo-id OWNER/NAME``): it needs a token. Its item's id hashes the repo and
the dataset row, so publishing the same dataset to the same repo again sends nothing, and a rebuilt dataset is
pushed anew. The token is read from the environment by the push itself and never enters a row or the config.
"""

from __future__ import annotations

from synth.data.publish import PublishError, publish
from synth.schemas.ids import publish_id
from synth.schemas.records import Row
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.dataset import DatasetStage, built_dataset


class PublishRecord(Row):
    repo_id: str = ""
    private: bool = False
    dataset: str = ""  # the id of the dataset row that was pushed
    url: str = ""


class PublishStage(Stage):
    name = "publish"
    inputs = (DatasetStage.name,)
    record = PublishRecord
    uses_llm = False
    local = True  # the token is in the driver's environment, not on a cluster's nodes
    derived = True
    stops = (Exception,)  # no token, a refusing Hub: one message, as `synth publish` always gave

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        cfg = ctx.config.publish
        if not cfg.repo_id:
            raise PublishError("no Hub repo to publish to: pass --repo-id OWNER/NAME (publish.repo_id)")
        dataset = built_dataset(ctx.inputs)
        if dataset is None:
            raise PublishError(f"{ctx.inputs.dir(DatasetStage.name)} holds no built dataset; run `synth dataset` "
                               "first")
        return [WorkItem(id=publish_id(cfg.repo_id, dataset.id),
                         payload={"repo_id": cfg.repo_id, "private": cfg.private, "dataset": dataset.id})]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        url = publish(ctx.inputs.dir(DatasetStage.name), item.payload["repo_id"], private=item.payload["private"])
        return PublishRecord(id=item.id, seed=item.seed, repo_id=item.payload["repo_id"],
                             private=item.payload["private"], dataset=item.payload["dataset"], url=url)

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        done = next((r for r in rows if isinstance(r, PublishRecord) and r.error is None), None)
        if done is not None:
            summary.extra |= {"url": done.url, "repo_id": done.repo_id}
