"""The expert-iteration loop's records and its pluggable steps, in their own module so the loop, its steps, the
data-value page and the plots import them without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.evaluate.episode import ModelEval
from synth.pipeline import PipelineReport
from synth.stages.summary import StageSummary


class ModelScores(BaseModel):
    valid_call_rate: float | None = Field(default=None, description="Calls that parse, name a tool of the "
                                          "agent's toolset and validate against its schema.")
    pass_rate: float | None = Field(default=None, description="Held-out episodes whose code checks all pass.")
    judge_score: float | None = Field(default=None, description="Mean weighted judge score in [0, 1].")
    episodes: int = 0
    checkpoint: str | None = None
    identity: str | None = Field(default=None, description="What the scored weights are known by (the eval rows "
                                 "of this model carry it).")
    detail: dict = Field(default_factory=dict, description="What the evaluator reported besides (per difficulty).")

    @classmethod
    def of(cls, result: ModelEval) -> ModelScores:
        """A model's curve numbers from its evaluation: a rate of nothing (no call tried, no checked episode) is
        None, not 0."""
        o = result.overall
        return cls(valid_call_rate=o.valid_call_rate if o.calls_attempted else None,
                   pass_rate=o.pass_rate if o.checked_episodes else None,
                   judge_score=o.judge_score if o.episodes else None, episodes=o.episodes,
                   checkpoint=result.checkpoint, identity=result.identity,
                   detail={"overall": o.model_dump(),
                           "by_difficulty": {d: s.model_dump() for d, s in result.by_difficulty.items()},
                           "by_tools": {k: s.model_dump() for k, s in result.by_tools.items()},
                           "forced": result.forced.model_dump() if result.forced else None})


class RoundResult(BaseModel):
    round: int
    run: str | None = Field(default=None, description="The round's pipeline run (None for round 0).")
    agent: str = Field(default="base", description="The model that played the agent when generating.")
    agent_job: str | None = Field(default=None, description="The train row of that model: a later change of it "
                                  "makes this round's data stale.")
    generated: bool = False
    accepted_new: int = Field(default=0, description="Trajectories this round added to train.")
    agents: int | None = Field(default=None, description="Agents the round's pipeline planned.")
    episodes: int | None = Field(default=None, description="Episodes the round's pipeline planned.")
    generation: dict[str, Any] | None = Field(default=None, description="The grounded-generation settings the "
                                              "round's rollouts ran with.")
    pipeline_wall_s: float | None = None
    train_trajectories: int = Field(default=0, description="Train rows the round's models were trained on.")
    trained: dict[str, str] = Field(default_factory=dict, description="job name -> checkpoint")
    train_summaries: dict[str, dict] = Field(default_factory=dict)
    train_wall_s: float | None = None
    models: dict[str, ModelScores] = Field(default_factory=dict, description="name -> held-out scores")
    eval_wall_s: float | None = Field(default=None, description="Wall seconds of the round's eval stage in the "
                                      "process that ran it (0: every episode was on disk).")
    note: str | None = None


class ImproveReport(BaseModel):
    run: str
    heldout_tasks: int = 0
    heldout_task_ids: list[str] = Field(default_factory=list)
    rounds: list[RoundResult] = Field(default_factory=list)
    plot: str | None = None
    waiting: list[str] = Field(default_factory=list, description="Job files to train elsewhere before the run "
                               "can go on (improve.train_here=false); empty when it is not waiting.")

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


@dataclass
class Steps:
    """The three actions of a round; the defaults are the real ones (``synth.improve.steps``): the pipeline, then
    the ``train`` and ``eval`` stages of the round's run."""

    generate: Callable[[PipelineConfig, list[EndpointConfig], Path | None], PipelineReport]
    """Run the round's pipeline with this agent checkpoint (None: base)."""
    train: Callable[[PipelineConfig], StageSummary]
    """Run the round's ``train`` stage."""
    evaluate: Callable[[PipelineConfig, list[EndpointConfig]], StageSummary]
    """Run the round's ``eval`` stage (``eval.models`` and ``eval.tasks_from`` say what it scores)."""
