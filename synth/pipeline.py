"""The whole pipeline: every stage in order, then the dataset stage and a report; quota mode grows the run
until enough trajectories are accepted or the budget is spent."""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.data.summary import DatasetSummary
from synth.preflight import Preflight
from synth.quota import next_agent_count
from synth.stages.base import StageSummary
from synth.stages.dataset import DatasetStage, built_summary
from synth.stages.registry import ORDER
from synth.stages.runner import run_stage

log = logging.getLogger(__name__)


class PipelineReport(BaseModel):
    run: str
    stages: list[StageSummary]
    dataset: DatasetSummary | None = None
    rounds: int = 1
    wall_s: float = 0.0
    stop: str = Field(default="done", description="Why the run stopped: done, quota met, budget spent.")
    agents: int | None = Field(default=None, description="Agents planned in the last round.")
    preflight: Preflight | None = Field(default=None, description="Server dtype, measured rates, deadline.")


def run_stages(config: PipelineConfig, endpoints: list[EndpointConfig], stages: list[str] | None = None,
               progress: bool = True, budget: _Budget | None = None) -> list[StageSummary]:
    summaries: list[StageSummary] = []
    for name in stages or ORDER:
        # Each stage is sent what is left of the budget, so its workers stop starting rows once it is gone.
        staged = budget.apply(config, summaries) if budget else config
        summaries.append(run_stage(name, staged, endpoints, progress=progress))
    return summaries


class _Budget:
    """A quota run's budget: a deadline and a token allowance, shared by every stage of every round."""

    def __init__(self, config: PipelineConfig, started_unix: float, spent_before: int = 0) -> None:
        self.quota = config.quota
        self.stop_at = started_unix + config.quota.max_wall_s
        self.spent_before = spent_before

    def spent(self, summaries: list[StageSummary]) -> int:
        return self.spent_before + _tokens(summaries)

    def apply(self, config: PipelineConfig, summaries: list[StageSummary]) -> PipelineConfig:
        left = None if self.quota.max_tokens is None else max(0, self.quota.max_tokens - self.spent(summaries))
        return config.model_copy(update={"quota": config.quota.model_copy(
            update={"stop_at": self.stop_at, "tokens_left": left})})


def _tokens(summaries: list[StageSummary]) -> int:
    # A stage's summary counts every row it holds (resumed ones too), so this is what the run has spent so far.
    return sum(s.usage.total().prompt_tokens + s.usage.total().completion_tokens for s in summaries)


def _train_accepted(summaries: list[StageSummary]) -> int:
    judge = next((s for s in summaries if s.stage == "judge"), None)
    if judge is None:
        return 0
    return int(judge.extra.get("train", judge.extra.get("accepted", 0)))


def run_pipeline(config: PipelineConfig, endpoints: list[EndpointConfig], progress: bool = True,
                 preflight: Preflight | None = None) -> PipelineReport:
    started = time.monotonic()
    budget = _Budget(config, time.time()) if config.accept else None
    summaries = run_stages(config, endpoints, progress=progress, budget=budget)
    rounds, stop = 1, "done"
    if config.accept:
        assert budget is not None
        # Quota mode: grow the number of agents and run again; finished rows are resumed, not redone.
        while True:
            accepted = _train_accepted(summaries)
            tokens = _tokens(summaries)
            stopped = [s.extra["budget_stop"] for s in summaries if s.extra.get("budget_stop")]
            if accepted >= config.accept:
                stop = f"quota met: {accepted} >= {config.accept} accepted into train"
                break
            if config.quota.max_tokens and tokens >= config.quota.max_tokens:
                stop = f"token budget spent: {tokens} >= {config.quota.max_tokens}"
                break
            if time.time() >= budget.stop_at or stopped:
                stop = f"time budget spent: {config.quota.max_wall_s:.0f}s" if time.time() >= budget.stop_at \
                    else f"budget spent inside round {rounds}: {stopped[0]}"
                break
            if rounds >= config.quota.max_rounds:
                stop = f"max rounds reached ({rounds})"
                break
            count = next_agent_count(config.agents.count, accepted, config.accept, config.quota.max_growth)
            config = config.model_copy(update={"agents": config.agents.model_copy(update={"count": count})})
            log.info("quota: %d/%d accepted; growing to %d agents", accepted, config.accept, count)
            summaries = run_stages(config, endpoints, progress=progress, budget=budget)
            rounds += 1
    # After the last round, so the dataset is built once from every round's rows (and not again on a re-run
    # that changed nothing).
    dataset = built_summary(run_stage(DatasetStage.name, config, endpoints, progress=progress))
    report = PipelineReport(run=config.run, stages=summaries, dataset=dataset, rounds=rounds,
                            wall_s=round(time.monotonic() - started, 1), stop=stop,
                            agents=config.agents.count, preflight=preflight)
    (config.run_dir / "report.json").write_text(report.model_dump_json(indent=2))
    return report
