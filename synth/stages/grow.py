"""`synth tools grow`: run the tools stage round after round until the synthetic registry holds ``grow.target``
tools (synth.tools.grow plans each round; the runner journals, resumes and spreads the items over Ray)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pydantic import BaseModel, Field

from synth.config import EndpointConfig, PipelineConfig
from synth.errors import SynthError
from synth.schemas.usage import UsageByRole
from synth.stages.outputs import store_dir
from synth.stages.runner import run_stage
from synth.stages.summary import StageSummary
from synth.stages.tools import DROPPED, SYNTHETIC, ToolsStage


class GrowTargetMissing(SynthError, ValueError):
    """Growing was asked for without a target."""

    hint = "pass --target N (or --set grow.target=N)"


class GrowReport(BaseModel):
    target: int
    reached: bool
    rounds: int = Field(description="Tools-stage rounds this command ran (a resumed run counts its own).")
    stop: str = Field(description="Why it stopped: the target, no progress in a round, or max_rounds.")
    synthetic_tools: int
    wall_s: float
    registry: str = Field(description="The grown synthetic registry (one ToolSpec JSON a line).")
    dropped_file: str
    summary: StageSummary

    @property
    def usage(self) -> UsageByRole:
        return self.summary.usage


def grow_tools(config: PipelineConfig, endpoints: list[EndpointConfig], out: Path | None = None,
               progress: bool = True) -> GrowReport:
    """Grow the run's synthetic registry to ``config.grow.target`` tools; ``out`` gets a copy of it."""
    target = config.grow.target
    if target < 1:
        raise GrowTargetMissing("growing the synthetic registry needs a target of at least one tool")
    started = time.monotonic()
    before = -1
    stop = f"max_rounds ({config.grow.max_rounds}) reached"
    rounds = 0
    summary: StageSummary | None = None
    for rounds in range(1, config.grow.max_rounds + 1):  # noqa: B007 -- the count is reported
        summary = run_stage(ToolsStage.name, config, endpoints, progress=progress)
        kept = int(summary.extra.get("synthetic_tools", 0))
        if kept >= target:
            stop = "target reached"
            break
        if kept <= before:
            stop = "a round kept no new tool (the model repeats itself: see dropped.jsonl)"
            break
        before = kept
    assert summary is not None  # max_rounds >= 1
    folder = store_dir(config.run_dir, ToolsStage.name)
    registry = folder / SYNTHETIC
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(registry, out)
        registry = out
    kept = int(summary.extra.get("synthetic_tools", 0))
    return GrowReport(target=target, reached=kept >= target, rounds=rounds, stop=stop, synthetic_tools=kept,
                      wall_s=round(time.monotonic() - started, 2), registry=str(registry),
                      dropped_file=str(folder / DROPPED), summary=summary)
