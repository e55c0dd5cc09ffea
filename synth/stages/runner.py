"""Run a stage as a Ray job: pending items split over Ray tasks, each an asyncio loop with many calls in flight.

Local Ray by default, a cluster when ``ray.address`` or ``RAY_ADDRESS`` is set (then ``runs_dir`` must be on
storage every node sees). ``ray.enabled: false`` runs the same shard function in-process (unit tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from synth.config import EndpointConfig, PipelineConfig
from synth.llm.client import EndpointUnavailable, LLMPool
from synth.schemas.usage import UsageByRole
from synth.stages.base import Stage, StageContext, StageSummary, WorkItem
from synth.stages.registry import get_stage
from synth.stages.store import JournalWriter, StageStore

log = logging.getLogger(__name__)
SUMMARY = "summary.json"


class StageIncomplete(RuntimeError):
    pass


async def _run_items(stage: Stage, ctx: StageContext, items: list[WorkItem], journal: JournalWriter,
                     concurrency: int) -> int:
    await stage.setup(ctx)
    limit = asyncio.Semaphore(concurrency)

    async def one(item: WorkItem) -> None:
        async with limit:
            usage = UsageByRole()
            try:
                row = await stage.process(item, ctx, usage)
            except EndpointUnavailable:
                raise  # no endpoint: every further item would fail the same way, so stop the stage
            except Exception as exc:  # a bad row never kills a stage
                row = stage.failed_row(item, exc, usage)
            journal.write(row)

    async with asyncio.TaskGroup() as group:
        for item in items:
            group.create_task(one(item))
    return len(items)


def run_shard(stage_name: str, config_json: str, endpoints_json: str, items_json: str, journal_path: str) -> int:
    """Entry point of one worker (a Ray task or in-process): its own event loop, pool and journal."""
    config = PipelineConfig.model_validate_json(config_json)
    endpoints = [EndpointConfig.model_validate(e) for e in json.loads(endpoints_json)]
    items = [WorkItem.model_validate(i) for i in json.loads(items_json)]
    stage = get_stage(stage_name)

    async def main() -> int:
        pool = LLMPool(endpoints, config.llm) if stage.uses_llm and endpoints else None
        ctx = StageContext(config=config, pool=pool)
        journal = JournalWriter(Path(journal_path))
        per_worker = max(1, sum(e.max_concurrency for e in endpoints) // max(1, config.ray.workers)) if endpoints \
            else 8
        try:
            return await _run_items(stage, ctx, items, journal, per_worker)
        finally:
            journal.close()
            if pool is not None:
                await pool.aclose()

    try:
        return asyncio.run(main())
    except* EndpointUnavailable as group:
        raise group.exceptions[0] from None


_ray_ready = False


def _ensure_ray(config: PipelineConfig) -> Any:
    global _ray_ready
    import ray

    if not _ray_ready and not ray.is_initialized():
        address = config.ray.address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                  "log_to_driver": True}
        if address is None and config.ray.num_cpus:
            kwargs["num_cpus"] = config.ray.num_cpus
        # The stage's code travels with the job so a cluster's workers run what this checkout has.
        ray.init(address=address, **kwargs)
    _ray_ready = True
    return ray


def run_stage(stage_name: str, config: PipelineConfig, endpoints: list[EndpointConfig],
              progress: bool = True) -> StageSummary:
    """Run (or resume) one stage to completion and write its summary; re-running a finished stage is cheap."""
    stage = get_stage(stage_name)
    ctx = StageContext(config=config)
    store = ctx.store(stage.name)
    started = time.monotonic()
    if stage.needs and not ctx.store(stage.needs).parquet.exists():
        raise StageIncomplete(f"stage {stage.name!r} reads {stage.needs!r}, which has not finished in "
                              f"{ctx.run_dir}; run `synth {stage.needs}` first (or `synth pipeline`)")
    items = stage.plan(ctx)
    done = store.done_ids()
    pending = [item for item in items if item.id not in done]
    resumed = len(items) - len(pending)
    if pending:
        if stage.uses_llm and not endpoints:
            raise EndpointUnavailable("no LLM endpoint configured; set SYNTH_BASE_URL or run `synth serve`")
        _dispatch(stage, config, endpoints, pending, store, total=len(items), initial=resumed, progress=progress)
    planned_ids = {item.id for item in items}
    rows = [row for row in store.read(stage.record) if row.id in planned_ids]
    if len(rows) < len(items):
        raise StageIncomplete(f"stage {stage.name}: {len(items) - len(rows)} of {len(items)} rows missing; re-run")
    store.compact(keep=planned_ids)
    summary = stage.summarize(rows, planned=len(items))
    summary.resumed = resumed
    stage.finish(ctx, rows, summary)
    summary.wall_s = round(time.monotonic() - started, 2)
    (store.dir / SUMMARY).write_text(summary.model_dump_json(indent=2))
    return summary


def _dispatch(stage: Stage, config: PipelineConfig, endpoints: list[EndpointConfig], pending: list[WorkItem],
              store: StageStore, total: int, initial: int, progress: bool) -> None:
    workers = max(1, min(config.ray.workers, len(pending)))
    shards = [pending[i::workers] for i in range(workers)]
    args = [(stage.name, config.model_dump_json(), json.dumps([e.model_dump() for e in endpoints]),
             json.dumps([item.model_dump() for item in shard]), str(store.new_journal())) for shard in shards]
    base = store.count_lines()
    # In a log file (CI, make > file) a bar that redraws twice a second buries everything else.
    bar = tqdm(total=total, initial=initial, desc=f"{stage.name:>9}", unit="row", disable=not progress,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
    try:
        if not config.ray.enabled:
            for a in args:
                run_shard(*a)
            return
        ray = _ensure_ray(config)
        remote = ray.remote(num_cpus=0, max_retries=0)(run_shard)
        refs = [remote.remote(*a) for a in args]
        remaining = list(refs)
        while remaining:
            _, remaining = ray.wait(remaining, timeout=0.5)
            bar.update(initial + store.count_lines() - base - bar.n)  # update() honours mininterval
        ray.get(refs)  # re-raises a worker's failure (e.g. EndpointUnavailable) here
    finally:
        bar.update(initial + store.count_lines() - base - bar.n)
        bar.close()


def read_summary(config: PipelineConfig, stage: str) -> StageSummary | None:
    path = config.run_dir / stage / SUMMARY
    return StageSummary.model_validate_json(path.read_text()) if path.exists() else None
