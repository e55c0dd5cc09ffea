"""The expert-iteration loop's records and its pluggable steps, in their own module so the loop, its steps, the
evaluation adapter and the plots import them without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig


class ModelScores(BaseModel):
    valid_call_rate: float | None = Field(default=None, description="Calls that parse, name a tool of the "
                                          "agent's toolset and validate against its schema.")
    pass_rate: float | None = Field(default=None, description="Held-out episodes whose code checks all pass.")
    judge_score: float | None = Field(default=None, description="Mean weighted judge score in [0, 1].")
    episodes: int = 0
    wall_s: float | None = Field(default=None, description="Wall seconds of this model's evaluation (serving "
                                 "included), as measured when it ran.")
    checkpoint: str | None = None
    detail: dict = Field(default_factory=dict, description="What the evaluator reported besides (per difficulty).")


class RoundResult(BaseModel):
    round: int
    run: str | None = Field(default=None, description="The round's pipeline run (None for round 0).")
    agent: str = Field(default="base", description="The model that played the agent when generating.")
    generated: bool = False
    accepted_new: int = Field(default=0, description="Trajectories this round added to train.")
    train_trajectories: int = Field(default=0, description="Train rows the round's models were trained on.")
    trained: dict[str, str] = Field(default_factory=dict, description="optimizer -> checkpoint")
    train_summaries: dict[str, dict] = Field(default_factory=dict)
    fingerprints: dict[str, str] = Field(default_factory=dict, description="optimizer -> the training fingerprint "
                                         "its scores were measured with (other settings or data: scored again)")
    models: dict[str, ModelScores] = Field(default_factory=dict, description="name -> held-out scores")
    note: str | None = None


class ImproveReport(BaseModel):
    run: str
    heldout_tasks: int = 0
    heldout_task_ids: list[str] = Field(default_factory=list)
    rounds: list[RoundResult] = Field(default_factory=list)
    plot: str | None = None

    def round(self, k: int) -> RoundResult:
        for r in self.rounds:
            if r.round == k:
                return r
        r = RoundResult(round=k)
        self.rounds.append(r)
        self.rounds.sort(key=lambda x: x.round)
        return r


TRAIN_FACTS = ("steps", "first_loss", "last_loss", "max_logit", "heads_clipped", "update_rms", "tokens_per_s",
               "wall_s", "device", "dtype")
"""What the loop and the data-value page keep of a training run's summary."""


def replicate_name(optimizer: str, seed: int) -> str:
    """The name of a seed replicate of an optimizer's model (the round's own model is named by the optimizer)."""
    return f"{optimizer}-seed{seed}"


def optimizer_of(name: str) -> str:
    """The optimizer of a round's model named ``name`` (``adamw`` or ``adamw-seed3`` -> ``adamw``)."""
    return name.split("-seed")[0]


class TrainElsewhere(Exception):
    """A training step waits for its checkpoint to be trained on another machine (``improve.train_here=false``)."""

    def __init__(self, job: Path, out: Path) -> None:
        super().__init__(f"train {job} elsewhere (`synth train --config {job}` from the project root, with its "
                         f"data files beside it), copy its output folder back to {out}, and run `synth improve` "
                         "again")
        self.job, self.out = job, out


@dataclass
class Steps:
    """The three actions of a round; the defaults are the real ones (``synth.improve.steps``)."""

    generate: Callable[[PipelineConfig, list[EndpointConfig], Path | None], int]
    """Run the pipeline for a round with this agent checkpoint (None: base); returns rows added to train."""
    train: Callable[[PipelineConfig, list[Path]], dict]
    """Train ``config.train`` on these train-split Parquet files; returns the train summary as a dict."""
    evaluate: Callable[[PipelineConfig, list[EndpointConfig], dict[str, Path | None], list[str], int],
                       dict[str, ModelScores]]
    """Scores of each named model (None: the base) on these held-out task ids of ``config``'s run, in round k."""
    fingerprint: Callable[[PipelineConfig, list[Path]], str | None] = lambda config, files: None
    """What a finished ``train`` of these settings and files is known by (None: not known, never stale)."""
