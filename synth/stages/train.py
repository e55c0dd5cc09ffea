"""Stage ``train``: one training job per optimizer (and seed replicate) on the dataset's train split.

Each job is a ``synth.train.job.TrainJob`` built from the ``train`` section: the base model, the run's dataset
(read as the declared input ``dataset``; ``train.data_runs`` adds other runs' datasets, as ``synth improve`` does
for its earlier rounds), the optimizer and its settings, the seed, the dataset's held-out share and the output
folder ``runs/<run>/train/<name>/``. A job's row id hashes its spec and its data, so a finished job is skipped on
a re-run, a killed one resumes from its last state (``synth.train.trainer``), and other settings or data plan
another job. With ``train.here`` false a job whose checkpoint is not in its folder yet writes its spec to
``runs/<run>/train/jobs/<name>.yaml`` and waits: train it elsewhere (``synth train --job``), copy its folder back,
and run the stage again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from synth.config import PipelineConfig
from synth.data.heldout import HeldoutSet
from synth.errors import SynthError
from synth.schemas.ids import train_id
from synth.schemas.records import Row
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, Waiting, WorkItem
from synth.stages.dataset import DatasetStage, recorded_heldout
from synth.stages.outputs import RunOutputs
from synth.train.job import DataSource, TrainJob, write_job
from synth.train.trainer import RUNTIME_FIELDS, TrainSummary

JOBS = "jobs"
RESERVED = {JOBS, "journal"}  # folders of the stage itself beside the checkpoints
FACTS = ("steps", "first_loss", "last_loss", "max_logit", "heads_clipped", "update_rms", "tokens_per_s", "wall_s",
         "device", "dtype", "fingerprint", "checkpoint")
"""What the stage's summary keeps of each job's training summary."""


class NoDatasetToTrainOn(SynthError):
    """A run whose dataset the jobs must read has none built."""

    hint = "run `synth pipeline` (or `synth dataset`) for that run first"


class TrainElsewhere(Waiting):
    """A job waits for its checkpoint to be trained on another machine (``train.here`` false)."""

    def __init__(self, job: Path, out: Path) -> None:
        super().__init__(f"job {job}: train it elsewhere and copy its folder back to {out}",
                         hint="run `synth train --job <file>` from the project root where the GPU is, with the "
                         "job's data beside it, copy each output folder back, and run this command again")
        self.job, self.out = job, out


class TrainRecord(Row):
    """One training job and what it made."""

    name: str = ""
    optimizer: str = ""
    job: TrainJob | None = None
    data: dict[str, str] = Field(default_factory=dict, description="Each data source -> digest of its rows.")
    summary: TrainSummary | None = Field(default=None, description="The trainer's summary (checkpoint, metrics).")


class TrainStage(Stage):
    name = "train"
    inputs = (DatasetStage.name,)
    record = TrainRecord
    uses_llm = False
    local = True  # the driver's GPU or CPU, one job at a time: a job already uses every core it is given

    def concurrency(self, config: PipelineConfig) -> int | None:
        return 1

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        items = []
        for job, data in jobs(ctx):
            key = job.model_dump(mode="json", exclude={*RUNTIME_FIELDS, "data", "output_dir"})
            items.append(WorkItem(id=train_id(key, data), seed=job.seed,
                                  payload={"job": job.model_dump(mode="json"), "data": data}))
        return items

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        from synth.train.trainer import train, trained

        job = TrainJob.model_validate(item.payload["job"])
        if ctx.config.train.here:
            summary = train(job)  # a job finished before (here, or elsewhere and copied back) is not trained again
        elif (summary := trained(job)) is None:
            raise TrainElsewhere(write_job(job, ctx.out_dir / JOBS / f"{job.name}.yaml"), job.output_dir)
        return TrainRecord(id=item.id, seed=item.seed, name=job.name, optimizer=job.optimizer, job=job,
                           data=item.payload["data"], summary=summary)

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        summary.extra["jobs"] = {
            r.name: {"optimizer": r.optimizer, "seed": r.seed, "examples": r.summary.data.examples,
                     **r.summary.model_dump(mode="json", include=set(FACTS))}
            for r in rows if isinstance(r, TrainRecord) and r.summary is not None}


def job_names(config: PipelineConfig) -> list[tuple[str, str, int]]:
    """Every job of ``train``: (name, optimizer, seed), each optimizer's own seed first, then its replicates."""
    cfg = config.train
    out = []
    for opt in cfg.optimizers:
        own = cfg.name or opt
        out.append((own, opt, config.seed))
        out += [(f"{own}-seed{config.seed + i}", opt, config.seed + i) for i in range(1, cfg.replicates + 1)]
    reserved = sorted({n for n, _, _ in out} & RESERVED)
    if reserved:
        raise SynthError(f"a training job may not be named {reserved[0]!r}: the train stage keeps its own files "
                         "there", hint="set another train.name")
    return out


def _dataset(outputs: RunOutputs, where: Path) -> tuple[Path, str, HeldoutSet | None]:
    """A run's dataset folder, the digest of its rows and the held-out set it recorded."""
    if not outputs.finished(DatasetStage.name):
        raise NoDatasetToTrainOn(f"no dataset has been built in {where}")
    return outputs.dir(DatasetStage.name), outputs.digest(DatasetStage.name), recorded_heldout(outputs)


def jobs(ctx: StageContext) -> list[tuple[TrainJob, dict[str, str]]]:
    """The stage's jobs, each with the digests of the data it reads (the row id hashes both)."""
    config = ctx.config
    sources: list[tuple[Path, str, HeldoutSet | None]] = [
        _dataset(RunOutputs(config.runs_dir / run, reader=TrainStage.name, allowed=TrainStage.inputs),
                 config.runs_dir / run) for run in config.train.data_runs if run != config.run]
    sources.append(_dataset(ctx.inputs, ctx.run_dir))
    shares = {h.share for _, _, h in sources if h is not None}
    if len(shares) > 1:
        raise SynthError(f"the datasets to train on were built with other held-out shares ({sorted(shares)}): "
                         "a task held out of one could be trained on from another",
                         hint="rebuild them with one dataset.heldout_share")
    share = shares.pop() if shares else config.dataset.heldout_share
    data = {str(folder): digest for folder, digest, _ in sources}
    settings: dict[str, Any] = config.train.model_dump(
        include=set(type(config.train).model_fields) - {"optimizers", "name", "replicates", "data_runs", "here"})
    return [(TrainJob(**settings, name=name, optimizer=opt, seed=seed, heldout_share=share,
                      data=[DataSource(dataset=folder) for folder, _, _ in sources],
                      output_dir=ctx.out_dir / name), data)
            for name, opt, seed in job_names(config)]


def planned_jobs(config: PipelineConfig) -> dict[str, str]:
    """Each job's name -> the id of its row, as the stage plans them for ``config`` now (before it runs them)."""
    stage = TrainStage()
    return {item.payload["job"]["name"]: item.id for item in stage.plan(StageContext(config=config, stage=stage))}
