"""Resume: a stage killed part-way keeps every finished row; a re-run does only the rest, with no duplicates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from synth.config import PipelineConfig
from synth.llm.client import ReplyInvalid
from synth.schemas.records import AgentRecord, Row
from synth.schemas.usage import UsageByRole
from synth.stages import registry
from synth.stages.base import Stage, StageContext, WorkItem
from synth.stages.runner import run_stage
from synth.stages.store import StageStore


class Crash(BaseException):
    """Stands for kill -9: not an Exception, so the runner cannot turn it into a row."""


class CountingStage(Stage):
    name = "counting"
    record = AgentRecord
    uses_llm = False
    calls: ClassVar[list[str]] = []
    crash_after: ClassVar[int | None] = None
    items: ClassVar[int] = 10

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"agent-{i:03d}", seed=i) for i in range(self.items)]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        if self.crash_after is not None and len(self.calls) >= self.crash_after:
            raise Crash
        self.calls.append(item.id)
        if item.seed == 7:
            raise ReplyInvalid("AgentDraft: reply does not fit: name: field required", raw='{"nam": 1}')
        return AgentRecord(id=item.id, seed=item.seed, name=f"agent {item.seed}")


def _crash(cfg: PipelineConfig) -> None:
    with pytest.raises(BaseExceptionGroup) as err:
        run_stage("counting", cfg, endpoints=[], progress=False)
    assert err.value.subgroup(Crash) is not None


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    monkeypatch.setitem(registry.STAGES, "counting", f"{__name__}:CountingStage")
    CountingStage.calls = []
    CountingStage.crash_after = None
    return PipelineConfig(runs_dir=tmp_path, run="r", ray={"enabled": False})


def test_bad_row_is_recorded_not_fatal(cfg: PipelineConfig) -> None:
    summary = run_stage("counting", cfg, endpoints=[], progress=False)
    assert (summary.planned, summary.ok, summary.failed) == (10, 9, 1)
    assert summary.errors == {"validation": 1}
    rows = {r.id: r for r in StageStore(cfg.run_dir / "counting").read(AgentRecord)}
    assert rows["agent-007"].error.raw == '{"nam": 1}'
    assert "field required" in rows["agent-007"].error.message


def test_killed_run_resumes_without_redoing_work(cfg: PipelineConfig) -> None:
    CountingStage.crash_after = 4
    _crash(cfg)
    store = StageStore(cfg.run_dir / "counting")
    assert not store.parquet.exists()  # not compacted: the stage did not finish
    done_before = store.done_ids()
    assert len(done_before) == 4
    CountingStage.crash_after = None
    first_calls = list(CountingStage.calls)
    summary = run_stage("counting", cfg, endpoints=[], progress=False)
    redone = CountingStage.calls[len(first_calls):]
    assert set(redone).isdisjoint(done_before)  # no finished item was processed again
    assert summary.resumed == 4 and summary.planned == 10
    ids = [r.id for r in store.read(AgentRecord)]
    assert sorted(ids) == [f"agent-{i:03d}" for i in range(10)]  # same ids as an uninterrupted run
    assert len(ids) == len(set(ids))
    assert store.parquet.exists() and not list(store.journal_dir.glob("*.jsonl"))


def test_rerun_of_finished_stage_does_nothing(cfg: PipelineConfig) -> None:
    run_stage("counting", cfg, endpoints=[], progress=False)
    n = len(CountingStage.calls)
    summary = run_stage("counting", cfg, endpoints=[], progress=False)
    assert len(CountingStage.calls) == n
    assert summary.resumed == 10


def test_torn_journal_line_is_ignored(cfg: PipelineConfig) -> None:
    CountingStage.crash_after = 3
    _crash(cfg)
    store = StageStore(cfg.run_dir / "counting")
    journal = next(store.journal_dir.glob("*.jsonl"))
    row = json.dumps({"id": "agent-009", "ok": True, "error_kind": None, "record": "{}"})
    with journal.open("a") as fh:
        fh.write(row[:25])  # a write cut short by kill -9
    assert "agent-009" not in store.done_ids()
    CountingStage.crash_after = None
    summary = run_stage("counting", cfg, endpoints=[], progress=False)
    assert summary.ok + summary.failed == 10


def test_stage_needs_previous_stage(tmp_path: Path) -> None:
    from synth.stages.runner import StageIncomplete

    cfg = PipelineConfig(runs_dir=tmp_path, run="empty", ray={"enabled": False})
    with pytest.raises(StageIncomplete, match="synth tasks"):
        run_stage("rollouts", cfg, endpoints=[], progress=False)


def test_unknown_stage_lists_valid_ones() -> None:
    with pytest.raises(KeyError, match="tools, agents, tasks, rollouts, judge"):
        registry.get_stage("rolout")


def test_rows_no_longer_planned_are_dropped(cfg: PipelineConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    run_stage("counting", cfg, endpoints=[], progress=False)
    monkeypatch.setattr(CountingStage, "items", 6)  # e.g. agents.count lowered: the next stage must not see 6-9
    summary = run_stage("counting", cfg, endpoints=[], progress=False)
    ids = sorted(r.id for r in StageStore(cfg.run_dir / "counting").read(AgentRecord))
    assert ids == [f"agent-{i:03d}" for i in range(6)]
    assert summary.planned == 6 and summary.resumed == 6
