"""Quota mode: growth at most doubles a round; budgets stop new rows inside a round."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from synth.config import PipelineConfig
from synth.quota import next_agent_count, stop_reason
from synth.schemas.records import Row
from synth.schemas.usage import Usage, UsageByRole
from synth.stages import registry
from synth.stages.base import Stage, StageContext, WorkItem
from synth.stages.runner import StageIncomplete, run_stage
from synth.stages.store import StageStore


def test_growth_at_most_doubles() -> None:
    # 0 accepted of 6 agents, quota 500: extrapolating from a zero rate would plan thousands of agents for round 2.
    assert next_agent_count(6, 0, 500, 2.0) == 12
    assert next_agent_count(12, 0, 500, 2.0) == 24
    # With a known rate, what is needed when that is less than doubling.
    assert next_agent_count(10, 8, 10, 2.0) == 13
    assert next_agent_count(1, 0, 3, 2.0) == 2  # always at least one more


class _Counter:
    """Stands in for a pool's usage counter (the only part the budget reads)."""

    def __init__(self) -> None:
        self.usage = UsageByRole()


class ProbeRow(Row):
    n: int = 0


class ProbeStage(Stage):
    """A stage whose every row spends 100 tokens, recorded as it starts."""

    name = "quota_probe"
    record = ProbeRow
    uses_llm = False

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"probe-{i:02d}", seed=i) for i in range(20)]

    async def setup(self, ctx: StageContext) -> None:
        ctx.pool = _Counter()  # type: ignore[assignment]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        ctx.pool.usage.record("agent", Usage(prompt_tokens=60, completion_tokens=40, calls=1))  # type: ignore[union-attr]
        await asyncio.sleep(0.01)
        return ProbeRow(id=item.id, seed=item.seed, n=item.seed)


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> PipelineConfig:
    monkeypatch.setitem(registry.STAGES, "quota_probe", f"{__name__}:ProbeStage")
    return PipelineConfig(runs_dir=tmp_path, run="q", ray={"enabled": False})


def _with_quota(cfg: PipelineConfig, **quota: Any) -> PipelineConfig:
    return cfg.model_copy(update={"quota": cfg.quota.model_copy(update=quota)})


def test_token_budget_stops_new_rows_inside_a_stage(probe: PipelineConfig) -> None:
    summary = run_stage("quota_probe", _with_quota(probe, max_tokens=450, tokens_left=450), [], progress=False)
    # Rows 1-5 start with 0..400 tokens spent; the 6th sees 500 >= 450 and nothing more starts.
    assert summary.ok == 5 and summary.planned == 20
    assert summary.extra["budget_stop"] == "quota budget spent: 15 of 20 rows not started"
    # The rest stays pending: a run without the budget resumes it and redoes nothing.
    again = run_stage("quota_probe", probe, [], progress=False)
    assert (again.ok, again.resumed) == (20, 5)
    assert sorted(r["id"] for r in StageStore(probe.run_dir / "quota_probe").raw_rows()) == \
        [f"probe-{i:02d}" for i in range(20)]


def test_time_budget_stops_new_rows(probe: PipelineConfig) -> None:
    summary = run_stage("quota_probe", _with_quota(probe, stop_at=time.time() - 1), [], progress=False)
    assert summary.ok == 0 and "20 of 20" in summary.extra["budget_stop"]
    assert stop_reason(_with_quota(probe, stop_at=time.time() - 1), []).startswith("time budget spent")
    assert stop_reason(_with_quota(probe, stop_at=time.time() + 60), []) is None


def test_missing_rows_without_a_budget_still_fail_loudly(probe: PipelineConfig, monkeypatch) -> None:
    # Workers skip every row (as if a budget stopped them), but the driver's config has no budget: a row that
    # never appeared outside quota mode is an error, not a budget stop.
    calls = {"worker": 0}

    def budgeted(cfg: PipelineConfig) -> bool:
        calls["worker"] += 1
        return calls["worker"] <= 20  # the 20 per-row checks in the worker, then the driver's

    monkeypatch.setattr("synth.stages.runner.budgeted", budgeted)
    monkeypatch.setattr("synth.stages.runner.stop_reason", lambda cfg, pools: "spent")
    with pytest.raises(StageIncomplete, match="rows missing"):
        run_stage("quota_probe", probe, [], progress=False)
