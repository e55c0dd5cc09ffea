"""A training job spec: what one ``synth train --job job.yaml`` needs, and nothing of the pipeline's config.

A job names its base model, its data (built dataset folders, e.g. a run's dataset stage, or Parquet/JSON-lines
files), its optimizer with the hyper-parameters and schedule (``synth.config.TrainSettings``), its seed, the
held-out share whose rows it must never train on, and the folder its checkpoint goes to. The ``train`` stage
builds one job per optimizer from the pipeline's ``train`` section; a GPU machine runs one from its YAML file with
only that file and the data beside it (paths relative to where it runs, as they are on the machine that wrote it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SerializerFunctionWrapHandler, ValidationError, model_serializer, model_validator

from synth.config import RUN_NAME, Optimizer, Strict, TrainSettings, read_yaml
from synth.errors import SynthError


class JobError(SynthError, ValueError):
    """A job file that cannot be used: missing, not YAML, or a field that does not validate."""

    hint = "fix the job file (or the --set override), then run `synth train --job` again"


class DataSource(Strict):
    """Training rows: a built dataset folder (its SFT view or train split, as ``synth dataset`` writes it), or
    Parquet / JSON-lines files with ``messages`` and ``tools``."""

    dataset: Path | None = Field(default=None, description="A built dataset folder, e.g. runs/<run>/dataset.")
    files: list[Path] = Field(default_factory=list, description="Parquet or JSON-lines files of rows.")

    @model_validator(mode="after")
    def _exactly_one(self) -> DataSource:
        if (self.dataset is None) == (not self.files):
            raise ValueError("give either `dataset` (a dataset folder) or `files` (row files), not both or none")
        return self

    def describe(self) -> str:
        return str(self.dataset) if self.dataset is not None else ", ".join(str(f) for f in self.files)


class TrainJob(TrainSettings):
    """One training run: base model, data, optimizer and its hyper-parameters, schedule, seed, output folder."""

    name: str = Field(pattern=RUN_NAME, description="The job's name (its checkpoint's folder name).")
    optimizer: Optimizer = Field(default="muonclip", description="muonclip (synth.optim.MuonClip) or adamw.")
    base_model: Path | None = Field(default=None, description="HF checkpoint to start from; None: embedded SmolLM2.")
    data: list[DataSource] = Field(min_length=1, description="Where the rows come from, all of them together.")
    seed: int = Field(default=0, description="Seeds the model's start, the batches' order and the schedule.")
    heldout_share: float = Field(
        default=0.2, ge=0, lt=1, description="Rows of held-out tasks at this share (by task key, as the dataset "
        "chose them) are dropped: a job never trains on an evaluation task, even from an older dataset.")
    output_dir: Path = Field(description="Where the checkpoint, train_summary.json and log.jsonl go.")
    role: Literal["agent", "judge"] = Field(
        default="agent", description="What the model is trained to be: the agent (on a dataset's accepted rows) or "
        "the judge (a critic, on `synth critic build` examples: the judge's prompt for one criterion and the "
        "verified outcome; synth.critic). The steps, optimizers and checkpoint are the same.")

    @model_validator(mode="after")
    def _role_data(self) -> TrainJob:
        if self.role == "judge" and any(d.dataset is not None for d in self.data):
            raise ValueError("a judge job trains on critic example files (`synth critic build` writes "
                             "train.jsonl), not on a dataset folder, whose rows are the agent's")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An agent job dumps as it did before roles existed: its job files, stage row ids and fingerprints stay.
        out: dict[str, Any] = handler(self)
        if out.get("role") == "agent":
            out.pop("role")
        return out


def write_job(job: TrainJob, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
    return path


def load_job(path: Path, overrides: list[str] | None = None) -> TrainJob:
    """The job in ``path`` with ``field=value`` overrides (YAML values, e.g. ``base_model=/models/base`` or
    ``data=[{dataset: runs/r/dataset}]``)."""
    data = read_yaml(path, overrides, error=JobError, what="job file",
                     missing_hint="give the YAML file `synth train` or `synth improve` wrote (runs/<run>/train/jobs/)",
                     override_form="field=value", override_hint="write each --set as field=value, e.g. threads=8")
    try:
        return TrainJob.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise JobError(f"invalid job {path}: {problems}") from exc
