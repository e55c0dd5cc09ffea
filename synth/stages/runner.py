"""Run a stage as a Ray job: pending items split over Ray tasks, each an asyncio loop with many calls in flight.

Local Ray by default, a cluster when ``ray.address`` or ``RAY_ADDRESS`` is set (then ``runs_dir`` must be on
storage every node sees). ``ray.enabled: false`` runs the same shard function in-process (unit tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from synth.config import EndpointConfig, PipelineConfig
from synth.errors import DiskFull, SynthError, writing
from synth.llm.cache import CallCache, call_scope
from synth.llm.client import EndpointUnavailable, LLMPool
from synth.quota import budgeted, stop_reason
from synth.schemas.usage import UsageByRole
from synth.stages import fingerprint
from synth.stages.base import Stage, StageContext, StageSummary, StageWaiting, UndeclaredInput, Waiting, WorkItem
from synth.stages.lifeline import DriverGone, DriverRef, Lifeline, heartbeat, this_process
from synth.stages.outputs import RunOutputs, store_dir
from synth.stages.registry import direct_inputs, get_stage
from synth.stages.runlock import run_lock
from synth.stages.store import JournalWriter, StageStore
from synth.stages.summary import SUMMARY

log = logging.getLogger(__name__)


class StageIncomplete(SynthError, RuntimeError):
    """A stage cannot finish: a stage it reads has not finished, or rows are missing after it ran."""

    hint = "run the command again: finished rows are kept and only the missing ones are made"


class RunFolderUnusable(SynthError, OSError):
    """The run's folder cannot be made or written (a file in its path, no permission, a read-only disk)."""

    hint = "point runs_dir at a writable folder (--set runs_dir=DIR)"


def _make_run_folder(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderUnusable(f"cannot use the run folder {run_dir}: {exc.strerror or exc}") from exc


async def _run_items(stage: Stage, ctx: StageContext, items: list[WorkItem], journal: JournalWriter,
                     concurrency: int) -> int:
    await stage.setup(ctx)
    limit = asyncio.Semaphore(concurrency)
    waiting: list[Waiting] = []

    async def one(item: WorkItem) -> None:
        async with limit:
            if budgeted(ctx.config) and stop_reason(ctx.config, [ctx.pool, *ctx.role_pools.values()]):
                return  # quota budget spent: no new row starts; this item stays pending (synth.quota)
            usage = UsageByRole()
            call_scope.set(f"{stage.name}/{item.id}#{item.attempt}")  # this task's own context: its calls' keys
            try:
                row = await stage.process(item, ctx, usage)
            except Waiting as exc:  # made elsewhere, or later: no row now, the other items go on
                waiting.append(exc)
                return
            except (EndpointUnavailable, UndeclaredInput, DiskFull, *stage.stops):
                raise  # no endpoint, a full disk, a stage bug: every further item would fail alike, so stop
            except Exception as exc:  # a bad row never kills a stage
                row = stage.failed_row(item, exc, usage)
            journal.write(row)

    groups: dict[str, list[WorkItem]] = {}
    for item in items:
        groups.setdefault(stage.group(item), []).append(item)
    for key, members in groups.items():
        async with stage.grouped(key, ctx), asyncio.TaskGroup() as group:
            for item in members:
                group.create_task(one(item))
    if waiting:
        raise StageWaiting(stage.name, waiting)
    return len(items)


def run_shard(stage_name: str, config_json: str, endpoints_json: str, items_json: str, journal_path: str,
              driver_json: str | None = None, calls_dir: str | None = None) -> dict[str, Any]:
    """Entry point of one worker (a Ray task or in-process): its own event loop, pool and journal.

    ``driver_json`` names the driver process (``synth.stages.lifeline``): before each model request the worker
    checks it is alive, and a watcher ends the worker when it is gone. ``calls_dir`` holds the stage's call cache
    (``synth.llm.cache``): replies already paid for are answered from it, and every new one is kept there.
    Returns what the shard did and what it cost (rows, model calls sent and answered from the cache, CPU seconds
    of this process and of the children it waited for, the node).
    """
    cpu0, children0, wall0 = time.process_time(), _children_cpu(), time.monotonic()
    config = PipelineConfig.model_validate_json(config_json)
    endpoints = [EndpointConfig.model_validate(e) for e in json.loads(endpoints_json)]
    items = [WorkItem.model_validate(i) for i in json.loads(items_json)]
    stage = get_stage(stage_name)
    node_id = _node_id()
    lifeline = Lifeline(DriverRef.model_validate_json(driver_json), watch_parent=node_id is not None).start() \
        if driver_json else None
    sent = [0]  # model requests sent by this shard, retries included

    cache = CallCache(Path(calls_dir)) if calls_dir and stage.uses_llm else None

    async def main() -> int:
        pool = LLMPool(endpoints, config.llm, cache=cache) if stage.uses_llm and endpoints else None
        ctx = StageContext(config=config, pool=pool, stage=stage)
        if pool is not None and config.llm.roles:  # per-role endpoints (synth.llm.roles)
            from synth.llm.roles import role_pools

            ctx.role_pools = role_pools(config.llm, endpoints)
        for each in [pool, *ctx.role_pools.values()]:
            if each is not None:
                each.cache = cache  # one cache per shard: the served model is part of every key
            _guard(each, lifeline, sent)
        journal = _StampingJournal(Path(journal_path), node_id)
        per_worker = stage.concurrency(config) or (
            max(1, sum(e.max_concurrency for e in endpoints) // max(1, config.ray.workers)) if endpoints else 8)
        try:
            return await _run_items(stage, ctx, items, journal, per_worker)
        finally:
            journal.close()
            if pool is not None:
                await pool.aclose()
            for role_pool in ctx.role_pools.values():
                await role_pool.aclose()

    try:
        rows = asyncio.run(main())
    except* (EndpointUnavailable, UndeclaredInput, StageWaiting, DiskFull, *stage.stops) as group:
        raise group.exceptions[0] from None  # the error that stopped the stage, not the task group around it
    except* DriverGone:
        os._exit(3)  # the driver is gone: nobody reads a result, and nothing more may be sent
    finally:
        if lifeline is not None:
            lifeline.stop()
        if cache is not None:
            cache.close()
    return {"rows": rows, "calls": sent[0], "cached_calls": cache.hits if cache is not None else 0,
            "cpu_s": round(time.process_time() - cpu0, 4),
            "children_cpu_s": round(_children_cpu() - children0, 4), "wall_s": round(time.monotonic() - wall0, 3),
            "node_id": node_id, "pid": os.getpid()}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _node_id() -> str | None:
    """The Ray node this process runs on (None outside a Ray worker: the stage ran in the driver's process)."""
    if "ray" not in sys.modules:
        return None
    import ray

    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def _guard(pool: Any, lifeline: Lifeline | None, sent: list[int]) -> None:
    """Count every request the pool sends (retries included) and, with a lifeline, check the driver first.

    Wraps the instance's ``_call`` so every pool (the default one and each role's) is covered without the LLM
    layer knowing about drivers."""
    if pool is None or getattr(pool, "_guarded", False):
        return
    send = pool._call

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        if lifeline is not None:
            lifeline.check()
        sent[0] += 1
        return await send(*args, **kwargs)

    pool._call = guarded
    pool._guarded = True


class _StampingJournal(JournalWriter):
    """The shard's journal; each row is stamped with the node that produced it."""

    def __init__(self, path: Path, node_id: str | None) -> None:
        super().__init__(path)
        self.node_id = node_id

    def write(self, record: Any) -> None:
        if self.node_id is not None and "node_id" in type(record).model_fields:
            record.node_id = self.node_id
        super().write(record)


# Shipped to a cluster's nodes with the code (working_dir keeps the layout synth.paths expects: rubrics/,
# tools_registry/, pipelines/ beside synth/); nothing that is local state or large.
RUNTIME_EXCLUDES = [".git", ".venv", "runs", "bench", "tests", "docs", "**/__pycache__", "*.egg-info", ".ruff_cache",
                    ".pytest_cache"]


def runtime_env(config: PipelineConfig) -> dict[str, Any] | None:
    """What a cluster's workers need to run this checkout: the project as ``working_dir`` and the settings that
    are not in the config (the endpoints travel as task arguments). None when synth runs from an installed
    package rather than a checkout: then the nodes must have the same synth installed."""
    from synth.paths import REPO_ROOT

    if not ((REPO_ROOT / "pyproject.toml").exists() and (REPO_ROOT / "rubrics").is_dir()):
        log.warning("synth is not running from a checkout (%s): no code is shipped to the cluster; the nodes "
                    "must have this synth installed", REPO_ROOT)
        return None
    env_vars = {k: v for k, v in os.environ.items() if k in ("SYNTH_CACHE", "HF_HOME")}
    return {"working_dir": str(REPO_ROOT), "excludes": RUNTIME_EXCLUDES, **({"env_vars": env_vars} if env_vars else {})}


def _ensure_ray(config: PipelineConfig) -> Any:
    """Connect to (or start) Ray once per process.

    On a cluster (``ray.address`` / ``RAY_ADDRESS``) the project travels with the job as a ``runtime_env``, so
    every node runs this checkout's code. Inside ``ray job submit`` the job's own runtime_env already carries it
    (Ray sets ``RAY_JOB_CONFIG_JSON_ENV_VAR`` for the entrypoint), and a second one would replace it.
    """
    import ray

    if not ray.is_initialized():
        address = config.ray.address or os.environ.get("RAY_ADDRESS") or None
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
        if address is None:
            kwargs["include_dashboard"] = False
            if config.ray.num_cpus:
                kwargs["num_cpus"] = config.ray.num_cpus
        elif "RAY_JOB_CONFIG_JSON_ENV_VAR" not in os.environ and (env := runtime_env(config)):
            kwargs["runtime_env"] = env
        ray.init(address=address, **kwargs)
    return ray


def _upstream_digest(stage: Stage, inputs: RunOutputs) -> str | None:
    """The upstream part of ``stage``'s fingerprint, from its declared inputs: each input's fingerprint chains
    through its own inputs, so only those no other input depends on count (one input: its digest, as before
    stages declared several)."""
    digests = {name: fingerprint.digest(fp) for name in direct_inputs(stage.name)
               if (fp := inputs.fingerprint(name)) is not None}
    if not digests:
        return None
    return next(iter(digests.values())) if len(digests) == 1 else fingerprint.digest(digests)


def _check_settings(stage: Stage, ctx: StageContext, endpoints: list[EndpointConfig]) -> str:
    """Refuse (or recompute) a stage whose rows were made with other settings (synth.stages.fingerprint);
    returns the digest of the settings."""
    served = fingerprint.served_model(ctx.config, endpoints[0].base_url, endpoints[0].api_key) \
        if stage.uses_llm and endpoints else None
    parts = fingerprint.compute(stage.name, ctx.config, served, _upstream_digest(stage, ctx.inputs),
                                uses_llm=stage.uses_llm)
    # A derived stage's rows cost no model call: recomputing them is always the right answer to a change.
    on_change = "recompute" if stage.derived else ctx.config.on_change
    fingerprint.reconcile(stage.name, store_dir(ctx.run_dir, stage.name), parts, on_change, ctx.config.run)
    return fingerprint.digest(parts)


def _refresh_derived(stage: Stage, ctx: StageContext, endpoints: list[EndpointConfig]) -> None:
    """Bring the derived stages this one reads up to date first: they cost no model call, and one whose inputs
    did not change does nothing. One whose own inputs have not finished is left alone, for the check that says
    what to run."""
    every = RunOutputs(ctx.run_dir)  # the runner's view, to see what could run; the stage reads none of it
    for name in stage.inputs:
        source = get_stage(name)
        if source.derived and all(i in source.optional or every.finished(i) for i in source.inputs):
            run_stage(name, ctx.config, endpoints, progress=False)


def run_stage(stage_name: str, config: PipelineConfig, endpoints: list[EndpointConfig],
              progress: bool = True) -> StageSummary:
    """Run (or resume) one stage to completion and write its summary; re-running a finished stage is cheap.

    The run's lock (``synth.stages.runlock``) is held meanwhile: a second process on the same run refuses at once
    instead of doing (and paying for) every row again."""
    stage = get_stage(stage_name)
    _make_run_folder(config.run_dir)
    # A full disk met by any write of the stage (the journal, the call cache and the Parquet file name their own
    # file) is said as such, naming the stage's folder at least.
    with run_lock(config.run_dir), writing(store_dir(config.run_dir, stage.name), "the stage's folder"):
        return _run_stage(stage, config, endpoints, progress)


def _run_stage(stage: Stage, config: PipelineConfig, endpoints: list[EndpointConfig],
               progress: bool) -> StageSummary:
    ctx = StageContext(config=config, stage=stage)
    store = StageStore(store_dir(ctx.run_dir, stage.name))
    started = time.monotonic()
    _refresh_derived(stage, ctx, endpoints)
    for name in stage.inputs:
        if name not in stage.optional and not ctx.inputs.finished(name):
            raise StageIncomplete(f"stage {stage.name!r} reads {name!r}, which has not finished in {ctx.run_dir}",
                                  hint=f"run `synth {name}` first (or `synth pipeline`)")
    settings = _check_settings(stage, ctx, endpoints)
    items = stage.plan(ctx)
    done = store.done_ids(max_failures=config.row_attempts)  # a row that failed fewer times is tried again
    done -= stage.lost(ctx, done)
    pending = [item for item in items if item.id not in done]
    failures = {row["id"]: row["failures"] for row in store.raw_rows()} if pending else {}
    for item in pending:
        item.attempt = failures.get(item.id, 0)
    resumed = len(items) - len(pending)
    if pending:
        if stage.uses_llm and not endpoints:
            raise EndpointUnavailable("no LLM endpoint is configured")
        calls = calls_dir(ctx.run_dir, stage.name, settings)  # a change of settings never replays a reply
        _dispatch(stage, config, endpoints, pending, store, total=len(items), initial=resumed, progress=progress,
                  calls=calls)
    planned_ids = {item.id for item in items}
    rows = [row for row in store.read(stage.record) if row.id in planned_ids]
    budget_stop = None
    if len(rows) < len(items):
        if not budgeted(config):
            raise StageIncomplete(f"stage {stage.name}: {len(items) - len(rows)} of {len(items)} rows missing")
        # Quota mode: the workers stopped starting rows when the budget ran out (synth.quota); keep what exists.
        budget_stop = f"quota budget spent: {len(items) - len(rows)} of {len(items)} rows not started"
    store.compact(keep=None if stage.retains else planned_ids)
    summary = stage.summarize(rows, planned=len(items))
    summary.resumed = resumed
    stage.finish(ctx, rows, summary)
    if budget_stop:
        summary.extra["budget_stop"] = budget_stop
    summary.wall_s = round(time.monotonic() - started, 2)
    (store.dir / SUMMARY).write_text(summary.model_dump_json(indent=2))
    return summary


MAX_LOST = 3
"""Times one shard's work may be lost to a dead node or worker and sent again before the stage gives up."""
WORKERS_FILE = "workers.json"


def calls_dir(run_dir: Path, stage: str, settings: str) -> Path:
    """Where a stage's call cache lives (``synth.llm.cache``), by the digest of the settings its rows follow."""
    return run_dir / "calls" / stage / settings


def _dispatch(stage: Stage, config: PipelineConfig, endpoints: list[EndpointConfig], pending: list[WorkItem],
              store: StageStore, total: int, initial: int, progress: bool,
              calls: Path | None = None) -> list[dict[str, Any]]:
    """Run ``pending`` over ``ray.workers`` shards; returns each shard's report (also in ``workers.json``).

    A shard lost with its node or worker (not an error the stage raised) is sent again with only its items that
    have no row yet, so the stage finishes on the nodes left and no finished row is redone.
    """
    workers = 1 if stage.local else max(1, min(config.ray.workers, len(pending)))
    if not stage.local:  # workers may run elsewhere with another working directory: every path they get is absolute
        config = config.model_copy(update={"runs_dir": config.runs_dir.resolve()})
        store = StageStore(store.dir.resolve())
    shards = [pending[i::workers] for i in range(workers)]
    config_json, endpoints_json = config.model_dump_json(), json.dumps([e.model_dump() for e in endpoints])

    def args(shard: list[WorkItem], driver: str | None = None) -> tuple:
        return (stage.name, config_json, endpoints_json, json.dumps([item.model_dump() for item in shard]),
                str(store.new_journal()), driver, str(calls.resolve()) if calls is not None else None)

    base = store.count_lines()
    reports: list[dict[str, Any]] = []
    # In a log file (CI, make > file) a bar that redraws twice a second buries everything else.
    bar = tqdm(total=total, initial=initial, desc=f"{stage.name:>9}", unit="row", disable=not progress,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30)
    try:
        if not config.ray.enabled or stage.local:
            reports = [run_shard(*args(shard)) for shard in shards]
            return reports
        ray = _ensure_ray(config)
        # A shard is one asyncio loop: it uses one CPU, and asking for it is what makes Ray spread shards over
        # nodes instead of piling them on the driver's. SPREAD breaks ties toward nodes with fewer shards.
        remote = ray.remote(run_shard).options(num_cpus=config.ray.shard_cpus, max_retries=0,
                                               scheduling_strategy="SPREAD")
        with heartbeat(store.journal_dir / f".driver-{os.getpid()}.alive") as beat:
            driver = this_process(beat).model_dump_json()
            running = {remote.remote(*args(shard, driver)): (shard, 0) for shard in shards}
            failure: BaseException | None = None
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                bar.update(initial + store.count_lines() - base - bar.n)  # update() honours mininterval
                for ref in ready:
                    shard, lost = running.pop(ref)
                    try:
                        reports.append(ray.get(ref))
                    except ray.exceptions.RayTaskError as exc:  # the stage's own error (e.g. EndpointUnavailable)
                        failure = failure or exc
                    except ray.exceptions.RayError as exc:  # the node or the worker died under the shard
                        left = _without_rows(shard, store)
                        if lost + 1 > MAX_LOST:
                            raise StageIncomplete(
                                f"stage {stage.name}: a shard was lost {lost + 1} times ({type(exc).__name__}: "
                                f"{exc}); {len(left)} items have no row",
                                hint="check the cluster's nodes, then run again: finished rows are kept") from exc
                        log.warning("stage %s: a shard was lost (%s); sending its %d unfinished items again",
                                    stage.name, type(exc).__name__, len(left))
                        if left:
                            running[remote.remote(*args(left, driver))] = (left, lost + 1)
            if failure is not None:
                raise failure
        return reports
    finally:
        bar.update(initial + store.count_lines() - base - bar.n)
        bar.close()
        if reports:
            (store.dir / WORKERS_FILE).write_text(json.dumps(reports, indent=1))


def _without_rows(items: list[WorkItem], store: StageStore) -> list[WorkItem]:
    done = store.done_ids()
    return [item for item in items if item.id not in done]
