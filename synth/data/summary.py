"""What a built dataset holds, as the pipeline report and the dataset card show it (its own module, so the card
and the builder each import it without importing each other)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, computed_field


class Contamination(BaseModel):
    """How much of BFCL (its function names and questions, ``synth.bfcl.contamination``) the train split holds."""

    count: int | None = Field(description="Train rows holding a BFCL function name or question (0 once the rows "
                              "that do are kept out); None: unknown, BFCL's data is not installed (see note).")
    kept_out: int = Field(default=0, description="Accepted rows kept out of train for holding one.")
    names: list[str] = Field(default_factory=list, description="The BFCL function names those rows held.")
    questions: list[str] = Field(default_factory=list, description="The BFCL items whose question they held.")
    note: str | None = Field(default=None, description="Why the count is unknown.")


class Deduplication(BaseModel):
    """Train rows dropped as near-copies (``synth.data.trajectory_dedup``), by reason."""

    enabled: bool = True
    threshold: float = Field(description="Estimated Jaccard similarity at or above which a row is a copy.")
    checked: int = Field(default=0, description="Train rows checked (accepted, not held out, not kept out for "
                         "BFCL).")
    within_run: int = Field(default=0, description="Near-copies of a train row of this run kept before them.")
    near_heldout: int = Field(default=0, description="Near-copies of a held-out row (of this run or an earlier "
                              "index): dropped from train, the held-out row stays.")
    against: dict[str, int] = Field(default_factory=dict, description="Near-copies of a train row of an earlier "
                                    "run or index, by its name (every index checked is listed, 0 included).")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dropped(self) -> int:
        return self.within_run + self.near_heldout + sum(self.against.values())


class DatasetSummary(BaseModel):
    path: str
    trajectories: int
    accepted: int
    rejected: int
    errored: int = Field(description="Trajectories that failed before the judge (not in either split).")
    heldout: int = Field(default=0, description="Judged trajectories of held-out tasks (split heldout).")
    heldout_tasks: int = Field(default=0, description="Held-out tasks among the run's tasks.")
    heldout_groups: int = Field(default=0, description="Tool groups (MCP servers, synthetic domain leaves) the "
                                "held-out tasks hold out.")
    heldout_tools: int = Field(default=0, description="Tools (by name) the held-out tasks hold out.")
    excluded: int = Field(default=0, description="Judged trajectories in no split: of tasks on neither side of "
                          "the held-out split, or training ones calling a tool named as a held-out tool.")
    excluded_tasks: dict[str, int] = Field(default_factory=dict, description="Tasks on neither side, by reason.")
    contamination: Contamination | None = Field(default=None, description="BFCL in the train split; None: a "
                                                "dataset built before it was measured.")
    dedup: Deduplication | None = Field(default=None, description="Near-duplicate trajectories dropped from "
                                        "train; None: a dataset built before they were.")
    accept_mode: str = "auto"
    accepted_by: dict[str, int] = Field(default_factory=dict, description="Accepted rows by what accepted them.")
    calibration: dict[str, Any] = Field(default_factory=dict, description="LLM judge vs code checks (agreement).")
    by_difficulty: dict[str, dict[str, int]] = Field(default_factory=dict)
