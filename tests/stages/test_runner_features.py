"""What the runner gives the train, eval and card stages: optional inputs outside the fingerprint, items that wait
for work done elsewhere, groups of items around a shared resource, a per-stage concurrency, rows kept outside the
plan, and derived inputs brought up to date before a stage reads them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from synth.config import PipelineConfig, load_config
from synth.schemas.records import AgentRecord, Row
from synth.schemas.usage import UsageByRole
from synth.stages import registry
from synth.stages.base import Stage, StageContext, StageWaiting, Waiting, WorkItem
from synth.stages.outputs import RunOutputs
from synth.stages.runner import run_stage


class Source(Stage):
    name = "source"
    record = AgentRecord
    uses_llm = False
    count: ClassVar[int] = 2

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"{self.name}-{i}", seed=i) for i in range(Source.count)]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        return AgentRecord(id=item.id, seed=item.seed, name=item.id)


class Extra(Source):
    name = "extra"


class ReadsOptional(Source):
    """Reads ``source``, and ``extra`` when it has run (item ids carry what it read of it)."""

    name = "reader"
    inputs = ("source", "extra")
    optional = ("extra",)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        extra = ctx.rows("extra", AgentRecord) if ctx.inputs.finished("extra") else []
        return [WorkItem(id=f"reader-{r.id}", seed=r.seed) for r in ctx.rows("source", AgentRecord) + extra]


class Waits(Source):
    """Item 1 waits (its work is done elsewhere) until ``ready`` says so."""

    name = "waits"
    ready: ClassVar[bool] = False

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"waits-{i}", seed=i) for i in range(3)]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        if item.seed == 1 and not Waits.ready:
            raise Waiting(f"item {item.id} is trained elsewhere", hint="copy it back")
        return await super().process(item, ctx, usage)


class Grouped(Source):
    """Four items in two groups; records what ran inside which group, and how many ran at once."""

    name = "grouped"
    log: ClassVar[list[str]] = []
    running: ClassVar[int] = 0
    most: ClassVar[int] = 0
    keep: ClassVar[list[str]] = ["a", "b"]

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"{g}-{i}", seed=i, payload={"group": g}) for g in Grouped.keep for i in range(2)]

    def concurrency(self, config: PipelineConfig) -> int | None:
        return 1

    def group(self, item: WorkItem) -> str:
        return item.payload["group"]

    @contextlib.asynccontextmanager
    async def grouped(self, key: str, ctx: StageContext) -> AsyncIterator[None]:
        Grouped.log.append(f"start {key}")
        ctx.cache["served"] = key
        yield
        Grouped.log.append(f"stop {key}")

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        Grouped.running += 1
        Grouped.most = max(Grouped.most, Grouped.running)
        await asyncio.sleep(0)  # let another item start if the limit allowed it
        Grouped.log.append(f"{item.id} on {ctx.cache['served']}")
        Grouped.running -= 1
        return await super().process(item, ctx, usage)


class Retains(Grouped):
    name = "retains"
    retains = True


class Derived(Source):
    """Derived from ``source``: one row per source row."""

    name = "derived"
    inputs = ("source",)
    derived = True

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"derived-{r.id}", seed=r.seed) for r in ctx.rows("source", AgentRecord)]


class ReadsDerived(Source):
    name = "reads_derived"
    inputs = ("derived",)

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"r-{r.id}", seed=r.seed) for r in ctx.rows("derived", AgentRecord)]


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PipelineConfig:
    for cls in (Source, Extra, ReadsOptional, Waits, Grouped, Retains, Derived, ReadsDerived):
        monkeypatch.setitem(registry.STAGES, cls.name, f"{__name__}:{cls.__name__}")
    Source.count, Waits.ready, Grouped.log, Grouped.most, Grouped.keep = 2, False, [], 0, ["a", "b"]
    return load_config(overrides=[f"runs_dir={tmp_path}", "run=r", "ray.enabled=false"])


def test_an_optional_input_is_read_when_it_ran_and_is_not_fingerprinted(cfg: PipelineConfig) -> None:
    run_stage("source", cfg, [], progress=False)
    alone = run_stage("reader", cfg, [], progress=False)  # `extra` has not run: no refusal, no rows of it
    assert alone.planned == 2
    before = RunOutputs(cfg.run_dir).fingerprint("reader")
    run_stage("extra", cfg, [], progress=False)
    both = run_stage("reader", cfg, [], progress=False)  # on_change=refuse: an input that came is not a change
    assert (both.planned, both.resumed) == (4, 2)
    assert RunOutputs(cfg.run_dir).fingerprint("reader") == before


def test_waiting_items_get_no_row_and_the_stage_stops_naming_them(cfg: PipelineConfig) -> None:
    with pytest.raises(StageWaiting, match="waits-1 is trained elsewhere") as stopped:
        run_stage("waits", cfg, [], progress=False)
    assert stopped.value.hint == "copy it back" and len(stopped.value.waiting) == 1
    rows = RunOutputs(cfg.run_dir).rows("waits", AgentRecord)
    assert sorted(r.id for r in rows) == ["waits-0", "waits-2"]  # the others went on; no error row for item 1
    Waits.ready = True
    again = run_stage("waits", cfg, [], progress=False)
    assert (again.ok, again.resumed, again.failed) == (3, 2, 0)


def test_groups_run_one_after_another_inside_their_context(cfg: PipelineConfig) -> None:
    run_stage("grouped", cfg, [], progress=False)
    assert Grouped.log == ["start a", "a-0 on a", "a-1 on a", "stop a", "start b", "b-0 on b", "b-1 on b", "stop b"]
    assert Grouped.most == 1  # the stage's own concurrency, not the endpoints'
    Grouped.log = []
    run_stage("grouped", cfg, [], progress=False)
    assert Grouped.log == []  # nothing pending: no group is entered (no model served for nothing)


def test_a_retaining_stage_keeps_rows_outside_its_plan(cfg: PipelineConfig) -> None:
    run_stage("retains", cfg, [], progress=False)
    Grouped.keep = ["b"]
    only_b = run_stage("retains", cfg, [], progress=False)
    assert (only_b.planned, only_b.resumed) == (2, 2)
    assert len(RunOutputs(cfg.run_dir).rows("retains", AgentRecord)) == 4  # a's rows stay on disk
    Grouped.keep, Grouped.log = ["a", "b"], []
    both = run_stage("retains", cfg, [], progress=False)
    assert (both.planned, both.resumed) == (4, 4) and Grouped.log == []
    # A stage that does not retain drops them, as before.
    run_stage("grouped", cfg, [], progress=False)
    Grouped.keep = ["b"]
    run_stage("grouped", cfg, [], progress=False)
    assert len(RunOutputs(cfg.run_dir).rows("grouped", AgentRecord)) == 2


def test_a_derived_input_is_brought_up_to_date_before_it_is_read(cfg: PipelineConfig) -> None:
    run_stage("source", cfg, [], progress=False)
    first = run_stage("reads_derived", cfg, [], progress=False)  # `derived` never ran: it runs first
    assert first.planned == 2
    Source.count = 3
    run_stage("source", cfg, [], progress=False)
    again = run_stage("reads_derived", cfg, [], progress=False)  # the source grew: the derived stage is redone
    assert (again.planned, again.resumed) == (3, 2)
