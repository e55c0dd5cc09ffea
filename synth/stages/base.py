"""The contract every stage follows: plan work items with stable ids, process one item into one row.

A stage never parses another stage's internals: it reads the previous stage's rows through ``StageStore`` and
writes its own. ``process`` may fail for one item; the runner turns that into an error row and goes on.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from synth.config import PipelineConfig
from synth.llm.client import LLMPool, ReplyInvalid
from synth.schemas.records import Row, RowError
from synth.schemas.usage import UsageByRole
from synth.stages.store import StageStore


class WorkItem(BaseModel):
    id: str = Field(description="The id of the row this item produces; the resume key.")
    seed: int = 0
    payload: dict[str, Any] = Field(default_factory=dict)


@dataclass
class StageContext:
    config: PipelineConfig
    pool: LLMPool | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    role_pools: dict[str, LLMPool] = field(default_factory=dict)  # llm.roles: per-role endpoints/models

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def store(self, stage: str) -> StageStore:
        return StageStore(self.run_dir / stage)

    def llm(self, role: str | None = None) -> LLMPool:
        """The pool of ``role`` (its own endpoints/model from ``llm.roles``, else the default pool); without a
        role, a pool that routes every request by the role it names (an episode's agent, user and tools)."""
        if self.pool is None:
            raise RuntimeError("this stage was started without an LLM pool; it needs one")
        if role is not None:
            return self.role_pools.get(role, self.pool)
        if self.role_pools:
            from synth.llm.roles import RoutedPool

            return RoutedPool(self.pool, self.role_pools)  # type: ignore[return-value]
        return self.pool


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


class Stage(ABC):
    name: ClassVar[str]
    needs: ClassVar[str | None] = None
    record: ClassVar[type[Row]]
    uses_llm: ClassVar[bool] = True

    @abstractmethod
    def plan(self, ctx: StageContext) -> list[WorkItem]:
        """Every item this stage must produce, with ids that depend only on inputs, config and seed."""

    async def setup(self, ctx: StageContext) -> None:
        """Load inputs once per worker (e.g. the previous stage's rows) into ``ctx.cache``."""

    @abstractmethod
    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        """Produce the row for ``item``, recording tokens in ``usage``; a raised exception becomes an error row
        that still carries the tokens spent on it."""

    def failed_row(self, item: WorkItem, exc: BaseException, usage: UsageByRole | None = None) -> Row:
        if isinstance(exc, ReplyInvalid):
            error = RowError(kind=exc.kind, message=str(exc), raw=exc.raw)
        else:
            error = RowError(kind=type(exc).__name__, message=str(exc),
                             raw="".join(traceback.format_exception(exc))[-2000:])
        return self.record(id=item.id, seed=item.seed, error=error, usage=usage or UsageByRole())

    def finish(self, ctx: StageContext, rows: list[Row], summary: StageSummary) -> None:
        """After every row exists: stage-wide work (dedup, outputs for users) and extra summary fields."""

    def summarize(self, rows: list[Row], planned: int) -> StageSummary:
        usage = UsageByRole()
        for row in rows:
            usage.merge(row.usage)
        errors = Counter(row.error.kind for row in rows if row.error)
        return StageSummary(stage=self.name, planned=planned, ok=sum(r.error is None for r in rows),
                            failed=sum(errors.values()), errors=dict(errors), usage=usage)
