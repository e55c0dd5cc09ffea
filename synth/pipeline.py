"""The whole pipeline: every stage in order, then the dataset and a report; quota mode grows the run until
enough trajectories are accepted or the budget is spent."""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.data.build import DatasetSummary, build_dataset
from synth.stages.base import StageSummary
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


def run_stages(config: PipelineConfig, endpoints: list[EndpointConfig], stages: list[str] | None = None,
               progress: bool = True) -> list[StageSummary]:
    return [run_stage(name, config, endpoints, progress=progress) for name in (stages or ORDER)]


def run_pipeline(config: PipelineConfig, endpoints: list[EndpointConfig], progress: bool = True) -> PipelineReport:
    started = time.monotonic()
    summaries = run_stages(config, endpoints, progress=progress)
    rounds, stop = 1, "done"
    if config.accept:
        # Quota mode: grow the number of agents and run again; finished rows are resumed, not redone.
        while True:
            accepted = summaries[-1].extra.get("accepted", 0)
            tokens = sum(s.usage.total().prompt_tokens + s.usage.total().completion_tokens for s in summaries)
            if accepted >= config.accept:
                stop = f"quota met: {accepted} >= {config.accept} accepted"
                break
            if config.quota.max_tokens and tokens >= config.quota.max_tokens:
                stop = f"token budget spent: {tokens} >= {config.quota.max_tokens}"
                break
            if time.monotonic() - started >= config.quota.max_wall_s:
                stop = f"time budget spent: {config.quota.max_wall_s:.0f}s"
                break
            if rounds >= config.quota.max_rounds:
                stop = f"max rounds reached ({rounds})"
                break
            rate = max(accepted, 1) / max(1, config.agents.count)
            grow = max(1, int((config.accept - accepted) / rate) + 1)
            config = config.model_copy(update={"agents": config.agents.model_copy(
                update={"count": config.agents.count + grow})})
            log.info("quota: %d/%d accepted; growing to %d agents", accepted, config.accept, config.agents.count)
            summaries = run_stages(config, endpoints, progress=progress)
            rounds += 1
    dataset = build_dataset(config)
    report = PipelineReport(run=config.run, stages=summaries, dataset=dataset, rounds=rounds,
                            wall_s=round(time.monotonic() - started, 1), stop=stop)
    (config.run_dir / "report.json").write_text(report.model_dump_json(indent=2))
    return report
