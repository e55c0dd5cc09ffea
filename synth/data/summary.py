"""What a built dataset holds, as the pipeline report and the dataset card show it (its own module, so the card
and the builder each import it without importing each other)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DatasetSummary(BaseModel):
    path: str
    trajectories: int
    accepted: int
    rejected: int
    errored: int = Field(description="Trajectories that failed before the judge (not in either split).")
    heldout: int = Field(default=0, description="Judged trajectories of held-out tasks (split heldout).")
    heldout_tasks: int = Field(default=0, description="Held-out tasks among the run's tasks.")
    accept_mode: str = "auto"
    accepted_by: dict[str, int] = Field(default_factory=dict, description="Accepted rows by what accepted them.")
    calibration: dict[str, Any] = Field(default_factory=dict, description="LLM judge vs code checks (agreement).")
    by_difficulty: dict[str, dict[str, int]] = Field(default_factory=dict)
