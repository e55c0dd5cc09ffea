"""Resume: a stage killed part-way keeps every finished row; a re-run does only the rest, with no duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
from tests.fixtures.chatty import CHATTY, ChattyStage, cache_lines, start_chatty


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


class SlowStage(Stage):
    """Ten rows, one at a time, slowly enough to be killed with -9 in the middle."""

    name = "slow"
    record = AgentRecord
    uses_llm = False
    calls: ClassVar[list[str]] = []

    def plan(self, ctx: StageContext) -> list[WorkItem]:
        return [WorkItem(id=f"agent-{i:03d}", seed=i) for i in range(10)]

    async def process(self, item: WorkItem, ctx: StageContext, usage: UsageByRole) -> Row:
        time.sleep(0.3)  # blocking on purpose: rows finish one by one
        SlowStage.calls.append(item.id)
        return AgentRecord(id=item.id, seed=item.seed, name=f"agent {item.seed}")


_SLOW_MAIN = """
import sys
from synth.config import PipelineConfig
from synth.stages import registry
from synth.stages.runner import run_stage
registry.STAGES["slow"] = "tests.stages.test_resume:SlowStage"
run_stage("slow", PipelineConfig(runs_dir=sys.argv[1], run="r", ray={"enabled": False}), endpoints=[], progress=False)
"""


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


def test_rerun_retries_only_failed_rows_and_only_up_to_row_attempts(cfg: PipelineConfig) -> None:
    run_stage("counting", cfg, endpoints=[], progress=False)
    n = len(CountingStage.calls)
    summary = run_stage("counting", cfg, endpoints=[], progress=False)  # row_attempts=2: agent-007 once more
    assert CountingStage.calls[n:] == ["agent-007"]
    assert summary.resumed == 9 and summary.failed == 1
    summary = run_stage("counting", cfg, endpoints=[], progress=False)  # it has failed twice: left as it is
    assert len(CountingStage.calls) == n + 1
    assert summary.resumed == 10
    rows = [r for r in StageStore(cfg.run_dir / "counting").raw_rows() if r["id"] == "agent-007"]
    assert len(rows) == 1 and rows[0]["failures"] == 2  # the count survives compaction into Parquet


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
    with pytest.raises(StageIncomplete, match="'tasks', which has not finished") as err:
        run_stage("rollouts", cfg, endpoints=[], progress=False)
    assert "synth tasks" in err.value.hint


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


def test_stage_killed_with_sigkill_resumes_with_finished_rows_kept_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real kill -9 of a real process (the Crash above still lets `finally` blocks run; SIGKILL does not).
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_MAIN, str(tmp_path)], cwd=repo, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    store = StageStore(tmp_path / "r" / "slow")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(store.done_ids()) < 3:
        time.sleep(0.05)
    assert proc.poll() is None, f"the stage ended before the kill: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    finished = {r["id"]: r["record"] for r in store.raw_rows()}
    assert 3 <= len(finished) < 10 and not store.parquet.exists()

    monkeypatch.setitem(registry.STAGES, "slow", f"{__name__}:SlowStage")
    SlowStage.calls = []
    summary = run_stage("slow", PipelineConfig(runs_dir=tmp_path, run="r", ray={"enabled": False}),
                        endpoints=[], progress=False)  # fmt: skip
    assert summary.resumed == len(finished) and summary.planned == 10
    assert sorted(SlowStage.calls) == sorted(set(f"agent-{i:03d}" for i in range(10)) - set(finished))
    rows = {r["id"]: r["record"] for r in store.raw_rows()}
    assert sorted(rows) == [f"agent-{i:03d}" for i in range(10)]
    assert len(list(store.raw_rows())) == 10  # no duplicates
    assert all(rows[i] == text for i, text in finished.items())  # finished rows kept byte for byte


def test_row_digest_does_not_depend_on_the_node_that_made_the_rows(tmp_path: Path) -> None:
    from synth.stages.outputs import RunOutputs
    from synth.stages.runner import _StampingJournal

    digests = []
    for run, node in (("a", "node-1"), ("b", "node-2"), ("c", None)):
        store = StageStore(tmp_path / run / "agents")
        journal = _StampingJournal(store.new_journal(), node)
        journal.write(AgentRecord(id="agent-000", name="été"))
        journal.close()
        digests.append(RunOutputs(tmp_path / run).digest("agents"))
    rows = StageStore(tmp_path / "a" / "agents").read(AgentRecord)
    assert rows[0].node_id == "node-1"  # still kept in the row, for the cluster's tests and a reader
    assert digests[0] == digests[1] == digests[2]


def test_killed_stage_pays_no_answered_call_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 at several points of a stage against a request-counting endpoint: each re-run sends exactly the
    requests whose answers were not kept before the kill, and its usage tells paid from cached calls."""
    from synth.bench import instant_server
    from synth.config import EndpointConfig
    from tests.fixtures.cluster import free_port

    monkeypatch.setitem(registry.STAGES, "chatty", CHATTY)
    port = free_port()
    url = instant_server.base_url(port)
    endpoints = [EndpointConfig(base_url=url, max_concurrency=4)]

    def config(root: Path) -> PipelineConfig:
        return PipelineConfig(runs_dir=root, run="r", ray={"enabled": False}, llm={"max_tokens": 64})

    with instant_server.running(port, delay_ms=60):
        baseline = run_stage("chatty", config(tmp_path / "baseline"), endpoints, progress=False)
        calls = instant_server.get_stats(port)["requests"]
        assert calls == 3 * ChattyStage.items and baseline.usage.total().cached_calls == 0
        expected = {r.id: r.name for r in StageStore(tmp_path / "baseline" / "r" / "chatty").read(AgentRecord)}
        for kill_at in (1, 8, 20, 33):
            root = tmp_path / f"kill{kill_at}"
            before = instant_server.get_stats(port)["requests"]
            proc = start_chatty(root, url)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None and cache_lines(root / "r") < kill_at:
                time.sleep(0.005)
            assert proc.poll() is None, f"ended before the kill: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            time.sleep(0.2)  # requests the dead process sent arrive and are counted
            kept = cache_lines(root / "r")
            assert kill_at <= kept < calls
            sent_before = instant_server.get_stats(port)["requests"] - before
            summary = run_stage("chatty", config(root), endpoints, progress=False)
            resent = instant_server.get_stats(port)["requests"] - before - sent_before
            assert resent == calls - kept, f"killed at {kill_at}: {kept} answers kept, {resent} requests sent again"
            total = summary.usage.total()
            assert total.calls + total.cached_calls == calls  # each row's calls counted once: paid or cached
            assert total.cached_calls <= kept
            rows = {r.id: r.name for r in StageStore(root / "r" / "chatty").read(AgentRecord)}
            assert rows == expected  # the same rows as a run never killed
        assert total.cached_calls > 0  # the last kill lands inside rows: their answered calls came from the cache

    from rich.console import Console

    from synth.report.summary import usage_table

    console = Console(record=True, width=200)
    console.print(usage_table([summary]))
    table = console.export_text()
    assert "cached calls" in table
    cells = next([c.strip() for c in row.split("│") if c.strip()] for row in table.splitlines() if "generator" in row)
    assert (cells[1], cells[4]) == (str(total.calls), str(total.cached_calls))  # paid and cached, apart


def test_failed_row_keeps_the_body_the_server_sent_not_a_traceback() -> None:
    import httpx
    import openai

    body = '{"error": {"message": "prompt too long: 9000 tokens > 8192"}}' + " " * 30_000
    response = httpx.Response(400, text=body, request=httpx.Request("POST", "http://127.0.0.1:1/v1/chat"))
    exc = openai.BadRequestError("Error code: 400", response=response, body=None)
    row = CountingStage().failed_row(WorkItem(id="agent-000"), exc)
    assert row.error is not None and row.error.kind == "http_400"
    raw = row.error.raw or ""
    assert raw.startswith(body[:60]) and "Traceback" not in raw
    assert raw.endswith(f"[... cut at 20000 of {len(body)} characters]")


_PIPELINE_MAIN = """
import sys
from synth.config import EndpointConfig, load_config
from synth.pipeline import run_pipeline
cfg = load_config(overrides=[*sys.argv[3:], f"runs_dir={sys.argv[1]}", "run=p"])
run_pipeline(cfg, [EndpointConfig(base_url=sys.argv[2])], progress=False)
"""
_SMALL = ["agents.count=2", "tasks.per_agent=1", "rollouts.samples=2", "tools.evolve_leaves=1",
          "rollouts.real_exec=false", "ray.enabled=false", "llm.probe_rate=false"]


def test_killed_pipeline_pays_no_answered_call_twice_and_builds_the_same_rows(tmp_path: Path) -> None:
    """The whole pipeline (every model stage) killed with -9 at several points and run again: each re-run sends
    exactly the requests whose answers were not kept, and every stage's rows hash as in a run never killed."""
    from synth.bench import instant_server
    from synth.config import EndpointConfig, load_config
    from synth.pipeline import run_pipeline
    from synth.stages.outputs import RunOutputs
    from synth.stages.registry import ORDER
    from tests.fixtures.cluster import free_port

    port = free_port()
    endpoints = [EndpointConfig(base_url=instant_server.base_url(port))]
    repo = Path(__file__).resolve().parents[2]
    with instant_server.running(port, delay_ms=20):
        run_pipeline(load_config(overrides=[*_SMALL, f"runs_dir={tmp_path / 'clean'}", "run=p"]), endpoints,
                     progress=False)  # fmt: skip
        calls = instant_server.get_stats(port)["requests"]
        clean = RunOutputs(tmp_path / "clean" / "p")
        for kill_at in (2, calls // 2, calls - 3):
            root = tmp_path / f"kill{kill_at}"
            before = instant_server.get_stats(port)["requests"]
            proc = subprocess.Popen([sys.executable, "-c", _PIPELINE_MAIN, str(root), endpoints[0].base_url, *_SMALL],
                                    cwd=repo, start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)  # fmt: skip
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None and cache_lines(root / "p") < kill_at:
                time.sleep(0.005)
            assert proc.poll() is None, f"ended before the kill: {proc.stderr.read()[-2000:] if proc.stderr else ''}"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            time.sleep(0.2)
            kept = cache_lines(root / "p")
            sent_before = instant_server.get_stats(port)["requests"] - before
            report = run_pipeline(load_config(overrides=[*_SMALL, f"runs_dir={root}", "run=p"]), endpoints,
                                  progress=False)  # fmt: skip
            resent = instant_server.get_stats(port)["requests"] - before - sent_before
            assert resent == calls - kept, f"killed after {kept} answers: {resent} requests sent again"
            resumed = RunOutputs(root / "p")
            assert {s: resumed.digest(s) for s in ORDER} == {s: clean.digest(s) for s in ORDER}
            paid = sum(s.usage.total().calls for s in report.stages)
            cached = sum(s.usage.total().cached_calls for s in report.stages)
            assert paid + cached == calls and cached <= kept


def test_an_error_caused_by_a_bad_reply_keeps_the_reply() -> None:
    class SimulatorGaveUp(RuntimeError):
        pass

    try:
        try:
            raise ReplyInvalid("ToolSimReply: reply does not fit", raw='{"result": ')
        except ReplyInvalid as inner:
            raise SimulatorGaveUp("the tool simulator gave up") from inner
    except SimulatorGaveUp as exc:
        row = CountingStage().failed_row(WorkItem(id="agent-000"), exc)
    assert row.error is not None and row.error.kind == "SimulatorGaveUp"
    assert row.error.raw == '{"result": '
