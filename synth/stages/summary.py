"""What a stage did, written as ``summary.json`` beside its rows (its own module, so the reading API in
``synth.stages.outputs`` and the stage contract in ``synth.stages.base`` both use it without importing each other)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from synth.schemas.usage import UsageByRole

SUMMARY = "summary.json"


class StageSummary(BaseModel):
    stage: str
    planned: int = Field(description="Rows this stage should hold (its input).")
    ok: int
    failed: int
    errors: dict[str, int] = Field(default_factory=dict, description="Failed rows by error kind.")
    rejected: dict[str, int] = Field(default_factory=dict, description="Rows kept out by the stage, by reason.")
    usage: UsageByRole = Field(default_factory=UsageByRole)
    wall_s: float = 0.0
    resumed: int = Field(default=0, description="Rows found on disk from an earlier run and not redone.")
    extra: dict[str, Any] = Field(default_factory=dict)
